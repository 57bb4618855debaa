"""A client for the running proxy's admin endpoints, and what a reload after a save means for the user."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Literal
from urllib.parse import quote

import httpx

from modelreg.errors import RegistryError
from modelreg.proxy.token import admin_token, token_source


class ProxyUnreachable(RegistryError):
    """No proxy answered at the configured URL (or it refused the token)."""


class ProxyRefused(ProxyUnreachable):
    """The proxy answered but refused the request (a model that is not running, a failed start); says why."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _Default(Enum):
    TIMEOUT = "the client's timeout"


DEFAULT = _Default.TIMEOUT


class ProxyAdmin:
    """The admin endpoints of one proxy: status, reload, and live control of its backends."""

    def __init__(self, url: str, config_dir: str | os.PathLike, timeout: float = 5.0, token: str | None = None,
                 token_from: str | None = None):
        """The admin token is `token` (read from `token_from`, for messages) when given, else the local one
        (`$MODELREG_ADMIN_TOKEN`, else `<config_dir>/.admin-token`)."""
        self.url = url.rstrip("/")
        self.config_dir = Path(config_dir)
        self.timeout = timeout
        self.token, self.token_from = token, token_from
        self._http: httpx.Client | None = None
        self._http_guard = threading.Lock()

    def _client(self) -> httpx.Client:
        """One connection pool per client: a call costs a request, not a new client's set-up (its SSL context alone
        took 20-50 ms of every GUI page run that asked the proxy's status)."""
        with self._http_guard:
            if self._http is None:
                self._http = httpx.Client()
            return self._http

    @property
    def token_source(self) -> str:
        return (self.token_from or "the given token") if self.token else token_source(self.config_dir)

    def _headers(self) -> dict[str, str]:
        token = self.token or admin_token(self.config_dir)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _unreachable(self, exc: Exception) -> ProxyUnreachable:
        return ProxyUnreachable(f"proxy not reachable at {self.url} ({type(exc).__name__}); "
                                "start it with `modelreg proxy`")

    def _check(self, reply: httpx.Response, path: str) -> None:
        if reply.status_code in (401, 403):
            raise ProxyUnreachable(f"proxy at {self.url} refused the admin token from {self.token_source} "
                                   f"(HTTP {reply.status_code}); use the token the proxy was started with")
        if reply.status_code >= 400:
            reply.read()
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = f"proxy at {self.url}{path} answered HTTP {reply.status_code}: {reply.text[:300]}"
            raise ProxyRefused(message, reply.status_code)

    def _call(self, method: str, path: str, params: dict[str, str] | None = None,
              timeout: float | None | Literal[_Default.TIMEOUT] = DEFAULT) -> Any:
        try:
            reply = self._client().request(method, self.url + path, headers=self._headers(), params=params,
                                           timeout=self.timeout if timeout is DEFAULT else timeout)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check(reply, path)
        try:
            return reply.json()
        except ValueError:  # another program on that port (a backend, a GUI): not a modelreg proxy
            raise ProxyUnreachable(f"what answers at {self.url}{path} is not a modelreg proxy (HTTP "
                                   f"{reply.status_code}, not JSON); check proxy_url") from None

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/status")

    def reload(self, restart_now: bool = False) -> dict[str, Any]:
        return self._call("POST", "/admin/reload", {"restart": "now"} if restart_now else None)

    def running(self) -> list[dict[str, Any]]:
        """Every backend the proxy runs or is starting: name, state, backend, pid, port, in_flight, started_at..."""
        return self._call("GET", "/admin/running")["running"]

    def unload(self, name: str | None = None) -> dict[str, Any]:
        """Stop one model (ProxyRefused when it is not running), or every model: {"stopped": [names]}."""
        return self._call("POST", "/admin/unload" + (f"/{quote(name, safe='')}" if name else ""), timeout=None)

    def restart(self, name: str) -> dict[str, Any]:
        """Stop the model if it runs and start it again; returns once it is ready (its running entry), or raises
        ProxyRefused with the start's diagnosis."""
        return self._call("POST", f"/admin/restart/{quote(name, safe='')}", timeout=None)

    def activity(self, since: int = 0, limit: int = 0, model: str | None = None) -> list[dict[str, Any]]:
        """The proxy's recent request records, oldest first: after id `since`, the last `limit` (0: all it keeps), of
        `model` only if given."""
        params = {"since": str(since), "limit": str(limit), **({"model": model} if model else {})}
        return self._call("GET", "/api/activity", params)["activity"]

    def logs(self, name: str, follow: bool = False, lines: int = 200) -> Iterator[str]:
        """The backend's log line by line (without line ends): its last `lines` lines, then with `follow` every line
        it writes until the caller stops iterating."""
        params = {"lines": str(lines), **({"follow": "1"} if follow else {})}
        path = f"/admin/logs/{quote(name, safe='')}"
        try:
            with self._client().stream("GET", self.url + path, headers=self._headers(), params=params,
                                       timeout=httpx.Timeout(self.timeout, read=None if follow else self.timeout)
                                       ) as reply:
                self._check(reply, path)
                yield from reply.iter_lines()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc


@dataclass
class ReloadReport:
    """The proxy's answer to a reload after a save, checked against the revision the save produced."""

    reachable: bool
    expected_revision: str
    served_revision: str | None = None
    stale: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.reachable and self.served_revision == self.expected_revision

    @property
    def message(self) -> str:
        if not self.reachable:
            return f"saved; {self.error} (the save stands; the proxy reads it when it next starts or reloads)"
        if not self.confirmed:
            return (f"saved, but the proxy serves revision {str(self.served_revision)[:12]}, not "
                    f"{self.expected_revision[:12]}" + (f": {self.error}" if self.error else ""))
        parts = [f"saved; the proxy serves revision {self.expected_revision[:12]}"]
        if self.restarted:
            parts.append(f"restarted: {', '.join(self.restarted)}")
        if self.stale:
            parts.append(f"stale (restart when idle): {', '.join(self.stale)}")
        return "; ".join(parts)


def reload_report(admin: ProxyAdmin, expected_revision: str, restart_now: bool = False) -> ReloadReport:
    """Ask the proxy to reload and say whether it now serves `expected_revision`, and what became stale."""
    try:
        reply = admin.reload(restart_now)
    except ProxyUnreachable as exc:
        return ReloadReport(False, expected_revision, error=str(exc))
    return ReloadReport(True, expected_revision, served_revision=reply.get("revision"),
                        stale=list(reply.get("stale") or []), restarted=list(reply.get("restarted") or []),
                        error=reply.get("error"))
