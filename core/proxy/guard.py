"""The Host check in front of every proxy and GUI route: a web page that rebinds its own name to 127.0.0.1 gets 403."""
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            host = host_name(header) if header is not None else None
            if host is not None and not host_allowed(host, self.bound, self.allowed):
                if scope["type"] == "websocket":  # closed before it is accepted: the handshake gets 403
                    await receive()
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await _forbidden(host, send)
                return
        await self.app(scope, receive, send)


async def _forbidden(host: str, send: Send) -> None:
    body = orjson.dumps(error_body(
        403, f"this proxy does not answer for the host name {host!r} (a web page can point a name it owns at "
             f"127.0.0.1: DNS rebinding). If you reach the proxy by that name (a Docker bridge, a LAN name), add it to "
             f"`allowed_hosts` in settings.json", "host_not_allowed"))
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
