"""One relayed request's hold on its backend, and the response that gives it back when it ends."""
from __future__ import annotations

from typing import AsyncIterator, Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from modelreg.proxy.activity import Activity, Measured
from modelreg.proxy.pool import BackendPool, Running

# Not passed on: hop-by-hop, set again by the server or the upstream client, or the proxy's own credentials.
DROPPED_REQUEST_HEADERS = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
                                     "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
                                     "authorization", "x-api-key", "cookie", "origin", "referer"})
DROPPED_REPLY_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date",
                                   "server", "set-cookie"})


def reply_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A backend's reply headers as the proxy passes them on. CORS is the proxy's own say only (llama-server allows
    any origin); a cookie would land on every port of the host (the GUI's too), and the proxy sends backends none."""
    return {k: v for k, v in headers.items()
            if k.lower() not in DROPPED_REPLY_HEADERS and not k.lower().startswith("access-control-")}


class Exchange(Measured):
    """One request's hold on its model: counted against max_concurrency from the start, then its backend and upstream
    response; `close` gives everything back exactly once (also when the client leaves or a stream breaks) and
    records what the request did in `activity`."""

    def __init__(self, pool: BackendPool, name: str, activity: Activity | None = None, path: str = ""):
        pool.admit(name)
        super().__init__(name, path)
        self.pool, self.activity = pool, activity
        self.run: Running | None = None
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.upstream is not None:
            if self.upstream.content.at_eof():
                self.upstream.release()
            else:
                self.upstream.close()  # drops the connection: the backend sees its client leave and aborts
        if self.run is not None:
            self.pool.release(self.run)
        self.pool.leave(self.name)
        if self.activity is not None:
            self.activity.record(self)


class RelayResponse(StreamingResponse):
    """A relayed stream whose Exchange is closed when the response ends, however it ends (even before its first
    chunk, when the client left at once)."""

    def __init__(self, exchange: Exchange, content: AsyncIterator[bytes], status_code: int, headers: dict[str, str]):
        super().__init__(content, status_code=status_code, headers=headers)
        self.exchange = exchange

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:  # ASGI 2.4 servers: the client left while a chunk was sent
            self.exchange.cancelled = True
            raise
        finally:
            self.exchange.close()

    async def listen_for_disconnect(self, receive: Receive) -> None:
        await super().listen_for_disconnect(receive)  # the client left, or the answer just ended
        upstream = self.exchange.upstream
        if self.exchange.status is None and (upstream is None or not upstream.content.at_eof()):
            self.exchange.cancelled = True
