"""llama-swap's `/logs` and `/logs/stream[/{proxy|upstream|model}]`: the proxy's events as `[proxy]` lines and each
backend's log as `[model]` lines, as plain text, streamed until the client leaves."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from modelreg.errors import UnknownModel
from modelreg.launch.running.logs import LogFollower, read_tail
from modelreg.proxy.errors import ProxyError

LOG_LINES = 200  # lines of each log that /logs and a stream's history show
LOG_POLL_SECONDS = 0.25
# as llama-swap sends its streams: plain text, not sniffed, not buffered by a reverse proxy in front
LOG_STREAM_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no", "Cache-Control": "no-cache"}


async def follow_log(path: Path, lines: int) -> AsyncIterator[str]:
    """One log's last `lines` lines, then what is appended to it (into its new file when a restart rotates it), until
    the client leaves."""
    text = read_tail(path, lines, max_bytes=4 << 20)
    follower = LogFollower(path, offset=path.stat().st_size if path.exists() else 0)
    yield text + "\n" if text else ""
    while True:
        await asyncio.sleep(LOG_POLL_SECONDS)
        new = follower.read_new()
        if new:
            yield new


class LogStreams:
    """The routes' handlers; each takes the proxy's API keys, as llama-swap's paths do."""

    def __init__(self, proxy: Any):  # modelreg.proxy.app.Proxy
        self.proxy = proxy

    def _logged_models(self) -> list[str]:
        """The registry's and the running models that have a log (one listing of the log folder, not a look per
        model: registries hold thousands)."""
        supervisor = self.proxy.pool.supervisor
        try:
            present = set(os.listdir(supervisor.log_dir))
        except FileNotFoundError:
            return []
        return sorted(name for name in {*self.proxy.pool.routes.by_name, *self.proxy.pool.running}
                      if supervisor.log_path(name).name in present)

    def _proxy_line(self, event: dict) -> str:
        detail = f": {event['detail']}" if event.get("detail") else ""
        return f"[proxy] {event['at']} {event['model']}: {event['event']}{detail}\n"

    def _history(self, proxy: bool, models: list[str], prefixed: bool) -> str:
        text = "".join(self._proxy_line(event) for event in self.proxy.pool.events) if proxy else ""
        for name in models:
            tail = read_tail(self.proxy.pool.supervisor.log_path(name), LOG_LINES, max_bytes=1 << 20)
            text += "".join(f"[{name}] {line}\n" if prefixed else f"{line}\n" for line in tail.splitlines())
        return text

    async def logs(self, request: Request) -> Response:
        """llama-swap's `/logs`: the proxy's events, then the last lines of each backend's log, as plain text."""
        self.proxy._check_api_key(request)
        return PlainTextResponse(self._history(True, self._logged_models(), prefixed=True))

    async def stream(self, request: Request) -> Response:
        """llama-swap's `/logs/stream[/{proxy|upstream|model}]`: the history (unless `?no-history`), then what is
        logged from then on, as plain text until the client leaves."""
        self.proxy._check_api_key(request)
        source = request.path_params.get("source", "")
        models: list[str] | None = None  # every model's
        if source in ("", "proxy", "upstream"):
            proxy, prefixed = source != "upstream", True
            if source == "proxy":
                models = []
        else:
            try:
                models, proxy, prefixed = [self.proxy.pool.routes.resolve(source)], False, False
            except UnknownModel:
                raise ProxyError(400, f"no log {source!r}: use /logs/stream/proxy, /logs/stream/upstream or "
                                      f"/logs/stream/<model>", "invalid_request_error") from None
        history = "no-history" not in request.query_params
        return StreamingResponse(self._follow(proxy, models, prefixed, history), headers=LOG_STREAM_HEADERS,
                                 media_type="text/plain; charset=utf-8")

    def _follow(self, proxy: bool, models: list[str] | None, prefixed: bool, history: bool) -> AsyncIterator[str]:
        """`models` None: every model's log, also of models added later. A log that a restart rotates is followed
        into its new file. Where each log stands is taken here, before the answer starts: whatever is logged once the
        client has the headers is sent."""
        pool = self.proxy.pool
        followers: dict[str, LogFollower] = {}
        for name in self._logged_models() if models is None else models:
            followers[name] = LogFollower.at_end(pool.supervisor.log_path(name))
        last = pool.events[-1] if pool.events else None
        text = self._history(proxy, list(followers), prefixed) if history else ""
        return self._lines(proxy, models is None, prefixed, followers, last, text)

    async def _lines(self, proxy: bool, every_model: bool, prefixed: bool, followers: dict[str, LogFollower],
                     last: dict | None, history: str) -> AsyncIterator[str]:
        pool = self.proxy.pool
        if history:
            yield history
        while True:
            await asyncio.sleep(LOG_POLL_SECONDS)
            new = ""
            if proxy:
                events = list(pool.events)
                seen = next((i for i in range(len(events) - 1, -1, -1) if events[i] is last), -1)
                new += "".join(self._proxy_line(event) for event in events[seen + 1:])
                last = events[-1] if events else last
            if every_model:  # a model added to the registry since: its log from its start
                for name in self._logged_models():
                    followers.setdefault(name, LogFollower(pool.supervisor.log_path(name)))
            for name, follower in followers.items():
                text = follower.read_new()
                new += "".join(f"[{name}] {line}\n" for line in text.splitlines()) if prefixed else text
            if new:
                yield new
