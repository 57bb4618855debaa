"""What each host's `modelreg proxy` serves: reachability, revision, models and running backends."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelreg.errors import RegistryError
from modelreg.proxy.client import ProxyAdmin, ProxyUnreachable
from modelreg.settings import Host, Settings

REVISION_HEADER = "x-modelreg-revision"


class HostsUnreachable(RegistryError):
    """A host's proxy did not answer, so nothing can be said (or exported) about what it serves."""


@dataclass(frozen=True)
class HostModel:
    """One model as a host's /v1/models lists it."""

    name: str
    aliases: tuple[str, ...] = ()
    running: bool = False
    context_length: int | None = None
    vision: bool = False
    tools: bool = False
    embedding: bool = False

    @classmethod
    def from_listing(cls, item: dict[str, Any]) -> "HostModel":
        caps = item.get("capabilities") or {}
        context = item.get("context_length")
        return cls(name=item["id"], aliases=tuple(sorted(a for a in item.get("aliases") or [] if isinstance(a, str))),
                   running=bool(item.get("running")),
                   context_length=context if isinstance(context, int) and context > 0 else None,
                   vision=bool(caps.get("vision")), tools=bool(caps.get("tools")),
                   embedding=bool(caps.get("embedding")))


@dataclass
class HostStatus:
    """One host as its proxy answered (or why it did not)."""

    name: str
    url: str
    profile: str | None  # the profile the hosts setting says it runs
    reachable: bool = False
    error: str | None = None
    revision: str | None = None
    models: list[HostModel] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    served_profile: str | None = None  # the profile its proxy reports (from /admin/status)
    admin: str = ""  # where running backends came from: /admin/status, or why only /v1/models

    @property
    def profile_mismatch(self) -> bool:
        return bool(self.reachable and self.admin == "/admin/status" and self.profile
                    and self.served_profile != self.profile)

    def row(self) -> dict[str, Any]:
        """The line `modelreg hosts` and the GUI show."""
        note = self.error or ""
        if self.profile_mismatch:
            note = (f"serves profile {self.served_profile or 'none'}, the hosts setting says {self.profile}; "
                    "restart its proxy with the right profile or fix the setting")
        return {"host": self.name, "url": self.url, "reachable": "yes" if self.reachable else "NO",
                "revision": (self.revision or "")[:12], "models": len(self.models) if self.reachable else None,
                "running": ", ".join(self.running), "profile": self.served_profile or self.profile or "",
                "note": note or (f"running backends from /v1/models ({self.admin})" if self.admin not in
                                 ("", "/admin/status") else "")}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = [asdict(m) for m in self.models]
        return data


def api_key_header(name: str, host: Host) -> dict[str, str]:
    """The Authorization header for the host's /v1 routes, from the variable its api_key_env names."""
    if not host.api_key_env:
        return {}
    key = os.environ.get(host.api_key_env, "").strip()
    if not key:
        raise HostsUnreachable(f"host {name}: ${host.api_key_env} (its api_key_env) is not set; export the host's "
                               "proxy_api_key in it")
    return {"Authorization": f"Bearer {key}"}


def _admin_for(host: Host, local_url: str, config_dir: Path, timeout: float) -> ProxyAdmin | str:
    """A client for the host's /admin routes, or why there is none. The local admin token is only sent to the
    local proxy (`local_url`): another host gets the token its admin_token_env holds."""
    if host.admin_token_env:
        token = os.environ.get(host.admin_token_env, "").strip()
        if not token:
            return f"${host.admin_token_env} is not set"
        return ProxyAdmin(host.url, config_dir, timeout, token=token, token_from=f"${host.admin_token_env}")
    if host.url == local_url.rstrip("/"):
        return ProxyAdmin(host.url, config_dir, timeout)
    return "no admin_token_env"


def host_status(name: str, host: Host, local_url: str, config_dir: Path, timeout: float = 5.0) -> HostStatus:
    """Ask one host's proxy: /v1/models for its revision and models, /admin/status for its backends and profile."""
    status = HostStatus(name, host.url, host.profile)
    try:
        reply = httpx.get(f"{host.url}/v1/models", headers=api_key_header(name, host), timeout=timeout)
    except HostsUnreachable as exc:
        status.error = str(exc)
        return status
    except httpx.HTTPError as exc:
        status.error = f"not reachable at {host.url} ({type(exc).__name__}: {exc}); is its `modelreg proxy` up?"
        return status
    if reply.status_code in (401, 403):
        status.error = (f"{host.url} refused the API key (HTTP {reply.status_code}); set api_key_env to the "
                        "variable holding the host's proxy_api_key")
        return status
    if reply.status_code != 200 or REVISION_HEADER not in reply.headers:
        status.error = (f"{host.url}/v1/models answered HTTP {reply.status_code} without a modelreg revision; "
                        "is that URL a modelreg proxy?")
        return status
    try:
        status.models = sorted((HostModel.from_listing(item) for item in reply.json()["data"]), key=lambda m: m.name)
    except (ValueError, KeyError, TypeError) as exc:
        status.error = f"{host.url}/v1/models is not a model list ({type(exc).__name__}: {exc})"
        return status
    status.reachable, status.revision = True, reply.headers[REVISION_HEADER]
    status.running = [m.name for m in status.models if m.running]
    admin = _admin_for(host, local_url, config_dir, timeout)
    if isinstance(admin, str):
        status.admin = admin
        return status
    try:
        served = admin.status()
    except ProxyUnreachable as exc:
        status.admin = f"/admin/status failed: {exc}"
        return status
    status.admin, status.served_profile = "/admin/status", served.get("profile")
    status.running = sorted(b["name"] + ("" if b.get("ready") else " (starting)") for b in served.get("backends") or [])
    return status


def hosts_status(settings: Settings, config_dir: str | os.PathLike, timeout: float = 5.0,
                 local_url: str | None = None) -> list[HostStatus]:
    """Every host of the hosts setting, asked at once (a host that does not answer costs `timeout`, not more).
    `local_url`: where this machine's proxy runs (default: the proxy_url setting)."""
    local = local_url or settings.proxy_url
    hosts = sorted(settings.hosts.items())
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return list(pool.map(lambda item: host_status(item[0], item[1], local, Path(config_dir), timeout), hosts))


def require_reachable(statuses: list[HostStatus]) -> list[HostStatus]:
    """The statuses, or HostsUnreachable naming every host that did not answer."""
    down = [s for s in statuses if not s.reachable]
    if down:
        raise HostsUnreachable("; ".join(f"host {s.name}: {s.error}" for s in down)
                               + " (nothing written: start the host's proxy, or remove it from the hosts setting)")
    return statuses
