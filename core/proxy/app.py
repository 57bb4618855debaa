"""The OpenAI-compatible proxy's HTTP side: authentication, routing a request to its backend, relaying the answer."""
from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from typing import AsyncIterator
from urllib.parse import quote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from modelreg.errors import UnknownModel
from modelreg.launch.plan import served_context
from modelreg.launch.supervisor import Supervisor
from modelreg.paths import get_path
from modelreg.proxy.errors import ProxyError
from modelreg.proxy.pool import BackendPool, Running
from modelreg.proxy.routing import roles_of, with_generation_defaults
from modelreg.proxy.token import ensure_admin_token
from modelreg.registry import Registry

# what /v1/models says each model can do (a gateway such as LiteLLM reads it into its model_info)
CAPABILITIES = ("vision", "tools", "embedding")
ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# Not passed on from a backend's response: hop-by-hop, or set again by our own server.
DROPPED_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})


class Proxy:
    """Serves the merged snapshot of exactly one Registry object; the ASGI app is `create_app(proxy)`."""

    def __init__(self, registry: Registry, supervisor: Supervisor | None = None, debounce: float = 0.05,
                 reap_interval: float = 1.0):
        self.registry = registry
        self.settings = registry.settings
        self.admin_token = ensure_admin_token(registry.config_dir)
        self.pool = BackendPool(registry, supervisor, debounce, reap_interval)

    # ---- HTTP -------------------------------------------------------------------------------------------------------
    def _require_bearer(self, request: Request, secret: str, what: str) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret.encode()):
            raise ProxyError(401, f"{what} required: send `Authorization: Bearer <{what}>`", "unauthorized",
                             headers={"WWW-Authenticate": "Bearer"})

    def is_admin(self, request: Request) -> bool:
        try:
            self._require_bearer(request, self.admin_token, "admin token")
        except ProxyError:
            return False
        return True

    def _check_api_key(self, request: Request) -> None:
        if self.settings.proxy_api_key:
            self._require_bearer(request, self.settings.proxy_api_key, "API key")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length", "")
        too_large = ProxyError(413, f"request body over the limit of {limit} bytes (setting max_request_bytes)",
                               "request_too_large")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def list_models(self, request: Request) -> Response:
        self._check_api_key(request)
        routes = self.pool.routes
        data = []
        for entry in routes.snapshot.entries:
            if entry.get("deprecated"):
                continue
            name = entry["name"]
            run = self.pool.running.get(name)
            data.append({"id": name, "object": "model", "created": int(self.pool.loaded_at or 0),
                         "owned_by": "modelreg",
                         "aliases": routes.aliases_of.get(name, []), "roles": roles_of(entry),
                         "backend": entry.get("backend"), "display_name": entry.get("display_name"),
                         "running": bool(run and run.ready), "context_length": served_context(entry),
                         "capabilities": {key: bool(get_path(entry, f"capabilities.{key}")) for key in CAPABILITIES}})
        return JSONResponse({"object": "list", "data": data}, headers={"x-modelreg-revision": routes.revision})

    async def forward(self, request: Request) -> Response:
        """Route one OpenAI request to its model's backend and relay the answer (SSE chunk by chunk)."""
        self._check_api_key(request)
        body = await self._read_body(request)
        try:
            payload = json.loads(body)
        except ValueError:
            raise ProxyError(400, "the request body is not valid JSON", "invalid_request_error") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
            raise ProxyError(400, "the request needs a string `model` (a name, an alias or role:<role>)",
                             "invalid_request_error")
        routes = self.pool.routes
        try:
            name = routes.resolve(payload["model"])
        except UnknownModel as exc:
            raise ProxyError(404, str(exc), "model_not_found", close=exc.close) from None
        run = await self.pool.acquire(name)
        plan = run.handle.plan
        outgoing = payload if request.url.path.endswith("/embeddings") else \
            with_generation_defaults(payload, routes.by_name[name])
        if outgoing is not payload or payload["model"] != plan.served_model_id:
            # the backend knows its served name only (the request may name an alias or a role)
            body = json.dumps({**outgoing, "model": plan.served_model_id}).encode()
        headers = {"content-type": "application/json", "accept": request.headers.get("accept", "*/*")}
        upstream_request = self.pool.client.build_request("POST", plan.base_url + request.url.path, content=body,
                                                     headers=headers)
        try:
            upstream = await self.pool.client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            self.pool.release(run)
            raise ProxyError(502, f"backend of {name!r} at {plan.base_url} failed: {type(exc).__name__}: {exc}",
                             "backend_error", model=name) from exc
        reply_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in DROPPED_HEADERS}
        reply_headers["x-modelreg-model"] = quote(name, safe="()[]:/@+,;=!*'")
        reply_headers["x-modelreg-revision"] = routes.revision
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(self._relay(upstream, run), status_code=upstream.status_code,
                                     headers=reply_headers)
        try:
            data = b"".join([chunk async for chunk in upstream.aiter_raw()])
        except httpx.HTTPError as exc:
            raise ProxyError(502, f"backend of {name!r} broke off its answer: {type(exc).__name__}: {exc}",
                             "backend_error", model=name) from exc
        finally:
            await upstream.aclose()
            self.pool.release(run)
        return Response(data, status_code=upstream.status_code, headers=reply_headers)

    async def _relay(self, upstream: httpx.Response, run: Running) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            self.pool.release(run)

    async def status_endpoint(self, request: Request) -> Response:
        self._require_bearer(request, self.admin_token, "admin token")
        return JSONResponse(self.pool.status())

    async def reload_endpoint(self, request: Request) -> Response:
        self._require_bearer(request, self.admin_token, "admin token")
        restart = request.query_params.get("restart")
        if restart not in (None, "", "idle", "now"):
            raise ProxyError(400, f"restart={restart!r}: use restart=now (or leave it out: restart when idle)",
                             "invalid_request_error")
        return JSONResponse(await self.pool.reload("admin", restart_now=restart == "now"))  # `ok` says how it went

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "revision": self.pool.routes.revision})


def create_app(proxy: Proxy) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.pool.startup()
        try:
            yield
        finally:
            await proxy.pool.shutdown()

    async def on_proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return exc.response(admin=proxy.is_admin(request))

    routes = [Route("/v1/models", proxy.list_models, methods=["GET"]),
              *(Route(path, proxy.forward, methods=["POST"]) for path in ROUTED_PATHS),
              Route("/admin/status", proxy.status_endpoint, methods=["GET"]),
              Route("/admin/reload", proxy.reload_endpoint, methods=["POST"]),
              Route("/health", proxy.health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={ProxyError: on_proxy_error})


def serve(registry: Registry, host: str = "127.0.0.1", port: int = 8100) -> None:
    """Run the proxy until SIGINT/SIGTERM; every backend it started is stopped on the way out."""
    uvicorn.run(create_app(Proxy(registry)), host=host, port=port, log_level="info", access_log=False,
                timeout_graceful_shutdown=5)
