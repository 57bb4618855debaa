"""One relayed request's hold on its backend, and the response that gives it back when it ends."""
from __future__ import annotations

from typing import AsyncIterator

import aiohttp
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from modelreg.proxy.pool import BackendPool, Running

# Not passed on: hop-by-hop, set again by the server or the upstream client, or the proxy's own credentials.
DROPPED_REQUEST_HEADERS = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
                                     "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
                                     "authorization", "x-api-key", "cookie", "origin", "referer"})
DROPPED_REPLY_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date",
                                   "server"})


class Exchange:
    """One request's hold on its model: counted against max_concurrency from the start, then its backend and upstream
    response; `close` gives everything back exactly once (also when the client leaves or a stream breaks)."""

    def __init__(self, pool: BackendPool, name: str):
        pool.admit(name)
        self.pool, self.name = pool, name
        self.run: Running | None = None
        self.upstream: aiohttp.ClientResponse | None = None
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


class RelayResponse(StreamingResponse):
    """A relayed stream whose Exchange is closed when the response ends, however it ends (even before its first
    chunk, when the client left at once)."""

    def __init__(self, exchange: Exchange, content: AsyncIterator[bytes], status_code: int, headers: dict[str, str]):
        super().__init__(content, status_code=status_code, headers=headers)
        self.exchange = exchange

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.exchange.close()
