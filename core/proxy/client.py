"""A client for the running proxy's admin endpoints, and what a reload after a save means for the user."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelreg.errors import RegistryError
from modelreg.proxy.token import admin_token, token_source


class ProxyUnreachable(RegistryError):
    """No proxy answered at the configured URL (or it refused the token)."""


class ProxyAdmin:
    """`GET /admin/status` and `POST /admin/reload` of one proxy."""

    def __init__(self, url: str, config_dir: str | os.PathLike, timeout: float = 5.0, token: str | None = None,
                 token_from: str | None = None):
        """The admin token is `token` (read from `token_from`, for messages) when given, else the local one
        (`$MODELREG_ADMIN_TOKEN`, else `<config_dir>/.admin-token`)."""
        self.url = url.rstrip("/")
        self.config_dir = Path(config_dir)
        self.timeout = timeout
        self.token, self.token_from = token, token_from

    @property
    def token_source(self) -> str:
        return (self.token_from or "the given token") if self.token else token_source(self.config_dir)

    def _call(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        token = self.token or admin_token(self.config_dir)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            reply = httpx.request(method, self.url + path, headers=headers, params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ProxyUnreachable(f"proxy not reachable at {self.url} ({type(exc).__name__}); "
                                   "start it with `modelreg proxy`") from exc
        if reply.status_code in (401, 403):
            raise ProxyUnreachable(f"proxy at {self.url} refused the admin token from {self.token_source} "
                                   f"(HTTP {reply.status_code}); use the token the proxy was started with")
        if reply.status_code >= 400:
            raise ProxyUnreachable(f"proxy at {self.url}{path} answered HTTP {reply.status_code}: {reply.text[:300]}")
        return reply.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/status")

    def reload(self, restart_now: bool = False) -> dict[str, Any]:
        return self._call("POST", "/admin/reload", **({"restart": "now"} if restart_now else {}))


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
