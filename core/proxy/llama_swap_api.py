"""llama-swap's paths on the proxy (`/running`, `/unload`, `/logs`, `/upstream/...`) and llama-server's native
routes."""
from __future__ import annotations

import time
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from yarl import URL

from modelreg.errors import UnknownModel
from modelreg.launch.backends import OLLAMA
from modelreg.proxy.activity import SEEN_BYTES
from modelreg.proxy.errors import ProxyError
from modelreg.proxy.log_streams import LogStreams
from modelreg.proxy.relay import DROPPED_REQUEST_HEADERS, Exchange, RelayResponse, reply_headers

# llama-server's own routes: routed by the body's `model`, or by `?model=` (then passed through as they are)
NATIVE_POST_PATHS = ("/infill", "/completion", "/tokenize", "/detokenize", "/rerank", "/reranking")
NATIVE_GET_PATHS = ("/props", "/v1/audio/voices")
PASSED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def llama_swap_routes(proxy: Any) -> list[Route]:  # modelreg.proxy.app.Proxy, which registers these routes
    """The routes, each taking the proxy's API keys as /v1 does (the /admin/* equivalents keep the admin token)."""
    api, logs = LlamaSwapApi(proxy), LogStreams(proxy)
    return [*(Route(path, api.native, methods=["POST"]) for path in NATIVE_POST_PATHS),
            *(Route(path, api.native, methods=["GET"]) for path in NATIVE_GET_PATHS),
            Route("/running", api.running, methods=["GET"]),
            Route("/unload", api.unload, methods=["GET", "POST"]),
            Route("/api/models/unload", api.unload, methods=["POST"]),
            Route("/api/models/unload/{model:path}", api.unload, methods=["POST"]),
            Route("/logs", logs.logs, methods=["GET"]),
            Route("/logs/stream", logs.stream, methods=["GET"]),
            Route("/logs/stream/{source:path}", logs.stream, methods=["GET"]),
            Route("/upstream/{rest:path}", api.upstream, methods=PASSED_METHODS)]


class LlamaSwapApi:
    def __init__(self, proxy: Any):
        self.proxy = proxy

    async def running(self, request: Request) -> Response:
        """llama-swap's `{"running": [{"model", "state", ...}]}`."""
        self.proxy._check_api_key(request)
        entries = self.proxy.pool.routes.by_name
        running = [{"model": b["name"], "state": b["state"], "name": (entries.get(b["name"]) or {}).get(
                        "display_name") or b["name"], "proxy": b["base_url"], "ttl": b["idle_ttl"] or 0,
                    "cmd": " ".join(b["argv"])} for b in self.proxy.pool.running_status()]
        return Response(orjson.dumps({"running": running}), media_type="application/json")

    async def unload(self, request: Request) -> Response:
        """Stop every backend (or the one named), answering llama-swap's `OK`."""
        self.proxy._check_api_key(request)
        if "model" in request.path_params:
            await self.proxy.pool.unload(self.proxy._resolve(self.proxy.pool.routes, request.path_params["model"]))
        else:
            await self.proxy.pool.unload_all()
        return PlainTextResponse("OK")

    async def native(self, request: Request) -> Response:
        """`?model=` picks the model and passes the request through; else the body's `model` routes it as /v1 does."""
        model = request.query_params.get("model")
        if model is None:
            if request.method != "POST":
                raise ProxyError(400, f"{request.url.path} needs `?model=` (a name, an alias or role:<role>)",
                                 "invalid_request_error", param="model")
            return await self.proxy.forward(request)
        self.proxy._check_api_key(request)
        name = self.proxy._resolve(self.proxy.pool.routes, model)
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "model"])
        return await self._pass(request, name, request.url.path + (f"?{query}" if query else ""))

    async def upstream(self, request: Request) -> Response:
        """`/upstream/{model}/{path}`: start the model and pass the path through (its web UI, /slots, /metrics)."""
        self.proxy._check_api_key(request)
        name, path = self._split(request.path_params["rest"])
        if self.proxy.pool.routes.by_name[name].get("backend") == OLLAMA:
            raise ProxyError(403, f"{name!r} runs in the Ollama daemon, whose own API serves every Ollama model (and "
                                  "pulls, creates and deletes them): /upstream passes a model's own server only",
                             "invalid_request_error", model=name)
        query = request.url.query
        return await self._pass(request, name, "/" + path + (f"?{query}" if query else ""))

    def _split(self, rest: str) -> tuple[str, str]:
        """The longest leading part of `rest` that names a model (names may hold `/`), and the path after it."""
        parts = rest.split("/")
        for cut in range(len(parts), 0, -1):
            try:
                return self.proxy.pool.routes.resolve("/".join(parts[:cut])), "/".join(parts[cut:])
            except UnknownModel:
                continue
        return self.proxy._resolve(self.proxy.pool.routes, parts[0]), "/".join(parts[1:])  # its 404

    async def _pass(self, request: Request, name: str, path: str) -> Response:
        body = await self.proxy._read_body(request)
        exchange = Exchange(self.proxy.pool, name, self.proxy.activity, request.url.path)
        relaying = False
        try:
            run = exchange.run = await self.proxy.pool.acquire(name)
            headers = {k: v for k, v in request.headers.items() if k not in DROPPED_REQUEST_HEADERS}
            if run.upstream_auth:
                headers["authorization"] = run.upstream_auth
            session = self.proxy.pool.session
            assert session is not None  # opened when the app starts
            try:
                exchange.upstream = upstream = await session.request(
                    request.method, URL(run.handle.plan.base_url + path, encoded=True), data=body or None,
                    headers=headers, allow_redirects=False)
            except (aiohttp.ClientError, OSError) as exc:
                raise self.proxy._unreachable(name, run.handle.plan.base_url, exc) from exc
            answer_headers = {**reply_headers(upstream.headers), "x-modelreg-model": name}

            async def relay() -> AsyncIterator[bytes]:
                async for chunk in upstream.content.iter_any():
                    if exchange.first_at is None:
                        exchange.first_at = time.perf_counter()
                    exchange.seen = (exchange.seen + chunk)[-SEEN_BYTES:]
                    yield chunk
            relaying = True
            return RelayResponse(exchange, relay(), upstream.status, answer_headers)
        except ProxyError as exc:
            exchange.status = exc.status
            raise
        finally:
            if not relaying:
                exchange.close()
