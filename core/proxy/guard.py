"""The checks in front of every route: the Host check (proxy and GUI: a web page that rebinds its own name to 127.0.0.1
gets 403) and the proxy's site check (a request another site's web page makes gets 403)."""
from __future__ import annotations

import ipaddress
from typing import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from modelreg.proxy.errors import error_body

UNSPECIFIED = frozenset({"0.0.0.0", "::", ""})


def host_name(header: str) -> str:
    """The name or address of a Host header, without its port and brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(host: str, bound: str, allowed: Iterable[str]) -> bool:
    """Loopback names and addresses, the bound address, and the `allowed_hosts` setting. When bound to every
    interface, any address literal too: an address cannot be rebound, only a name can."""
    if host == "localhost" or host.endswith(".localhost") or host in {h.lower() for h in allowed}:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or host == host_name(bound) or bound in UNSPECIFIED


class HostGuard:
    """Answers 403 (JSON, naming the setting to change) to a request whose Host header this proxy does not serve."""

    def __init__(self, app: ASGIApp, bound: str, allowed: Iterable[str]):
        self.app, self.bound, self.allowed = app, bound, tuple(allowed)
        self.passed: set[bytes] = set()  # Host headers found allowed: parsed once, not on every request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((v for k, v in scope["headers"] if k == b"host"), None)
            if header is not None and header not in self.passed:
                host = host_name(header.decode("latin-1"))
                if not host_allowed(host, self.bound, self.allowed):
                    if scope["type"] == "websocket":  # closed before it is accepted: the handshake gets 403
                        await receive()
                        await send({"type": "websocket.close", "code": 1008})
                    else:
                        await _forbidden(send, f"this proxy does not answer for the host name {host!r} (a web page "
                                               f"can point a name it owns at 127.0.0.1: DNS rebinding). If you reach "
                                               f"the proxy by that name (a Docker bridge, a LAN name), add it to "
                                               f"`allowed_hosts` in settings.json", "host_not_allowed")
                    return
                if len(self.passed) < 64:  # any client can send any Host: the first few allowed ones are kept
                    self.passed.add(header)
        await self.app(scope, receive, send)


def foreign_site(headers: dict[bytes, bytes], allowed_origins: Iterable[str]) -> str | None:
    """The site a request came from when a browser sent it from another site's page (its `Origin`, or its
    `Sec-Fetch-Site` where a plain GET or an image sends no Origin), unless `cors_origins` lets it in; else None."""
    allowed = set(allowed_origins)
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    if origin:
        host = headers.get(b"host", b"").decode("latin-1").lower()
        own = "://" in origin and origin.split("://", 1)[1].lower() == host
        return None if own or origin in allowed or "*" in allowed else origin
    site = headers.get(b"sec-fetch-site", b"none").decode("latin-1").lower()
    return None if site in ("none", "same-origin") or "*" in allowed else f"a {site} page"


class SiteGuard:
    """Answers 403 to a browser's request from another site's page: a form POST, an image or a no-cors fetch needs no
    preflight and would otherwise start or stop models (and reach the backends' own routes) whenever no key is set."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]):
        self.app, self.allowed_origins = app, tuple(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            site = foreign_site(dict(scope["headers"]), self.allowed_origins)
            if site is not None:
                await _forbidden(send, f"this proxy does not answer web pages of other sites (this request came from "
                                       f"{site}). To let a browser app call it, add its origin to `cors_origins` in "
                                       f"settings.json", "cross_site_request")
                return
        await self.app(scope, receive, send)


async def _forbidden(send: Send, message: str, code: str) -> None:
    body = orjson.dumps(error_body(403, message, code))
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
