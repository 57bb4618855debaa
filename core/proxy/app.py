"""The OpenAI-compatible proxy's HTTP side: authentication, routing a request to its backend, relaying the answer."""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, AsyncIterator, Awaitable, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive
from yarl import URL

from modelreg.errors import BadInput, UnknownModel
from modelreg.launch.planning.plan import per_request_context, served_context
from modelreg.launch.running.logs import read_tail
from modelreg.launch.running.supervisor import Supervisor
from modelreg.paths import get_path
from modelreg.proxy.activity import SEEN_BYTES, Activity
from modelreg.proxy.errors import ProxyError, error_body
from modelreg.proxy.guard import HostGuard, SiteGuard
from modelreg.proxy.loading import LoadingEvents, LoadWatch, loading_state
from modelreg.proxy.log_streams import follow_log
from modelreg.proxy.pool import BackendPool, Running
from modelreg.proxy.relay import DROPPED_REQUEST_HEADERS, Exchange, RelayResponse, reply_headers
from modelreg.proxy.routing import roles_of, with_generation_defaults
from modelreg.proxy.token import ensure_admin_token
from modelreg.registry import Registry
from modelreg.settings import Settings

log = logging.getLogger("modelreg.proxy")
T = TypeVar("T")

# what /v1/models says each model can do (a gateway such as LiteLLM reads it into its model_info)
CAPABILITIES = ("vision", "tools", "embedding")
# Routed by the request's `model` field to that model's backend (started on demand).
ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/reranking",
                "/v1/responses", "/v1/messages", "/v1/messages/count_tokens")
ROUTED_PREFIXES = ("/v1/audio/", "/v1/images/")
DEFAULTS_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})  # where generation_defaults apply
# seconds until a non-streamed request starts watching for its client to leave (a client gone sooner is noticed then)
CLIENT_WATCH_DELAY = 0.2


def json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def proxy_keys(settings: Settings) -> list[str]:
    """Every key `/v1/*` accepts: `proxy_api_keys` and the older single `proxy_api_key`."""
    return [key for key in (settings.proxy_api_key, *settings.proxy_api_keys) if key]


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Binding beyond loopback (a docker bridge, a LAN address, 0.0.0.0) exposes every model: only with proxy keys
    set."""
    if not is_loopback(host) and not proxy_keys(settings):
        raise BadInput(f"refusing to listen on {host}: anyone who reaches that address could use every model. Set "
                       f"`proxy_api_keys` in settings.json (clients then send one of them as their API key), or "
                       f"keep the default 127.0.0.1")


def presented_keys(request: Request) -> list[str]:
    """The API keys a request carries: `Authorization: Bearer`, `x-api-key`, or Basic (user or password)."""
    keys = []
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        keys.append(value)
    elif scheme == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            keys += [password, user]
        except (binascii.Error, UnicodeDecodeError):
            pass
    if "x-api-key" in request.headers:
        keys.append(request.headers["x-api-key"].strip())
    return [key for key in keys if key]


def _matches(given: list[str], accepted: tuple[bytes, ...]) -> bool:
    return any(hmac.compare_digest(g.encode(), key) for g in given for key in accepted)


@lru_cache(maxsize=4096)
def _header_name(name: str) -> str:
    return quote(name, safe="()[]:/@+,;=!*'")


@lru_cache(maxsize=4096)
def _upstream_url(base_url: str, path: str) -> URL:
    return URL(base_url + path, encoded=True)  # parsed once per backend and route


async def _client_left(receive: Receive) -> None:
    """Returns when the client disconnects (the request body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass
class Call:
    """One routed request, read and resolved: what it asks, and of which model."""

    path: str
    name: str  # the registry model the request's `model` means
    entry: dict
    revision: str
    body: bytes
    headers: dict[str, str]
    payload: dict | None = None  # the JSON body
    form: FormData | None = None  # the multipart body (audio)
    model: str = ""  # as the client wrote it
    stream: bool = False


class Proxy:
    """Serves the merged snapshot of exactly one Registry object; the ASGI app is `create_app(proxy)`."""

    def __init__(self, registry: Registry, supervisor: Supervisor | None = None, debounce: float = 0.05,
                 reap_interval: float = 1.0, loading_interval: float = 1.0):
        self.registry = registry
        self.settings = registry.settings
        self.admin_token = ensure_admin_token(registry.config_dir)
        self.api_keys = tuple(key.encode() for key in proxy_keys(self.settings))
        self.pool = BackendPool(registry, supervisor, debounce, reap_interval)
        self.activity = Activity(self.pool.supervisor.log_dir, self.settings.activity_limit,
                                 self.settings.activity_max_bytes, self.pool)
        self.loading_interval = loading_interval  # seconds between `: loading` comments of a cold streamed request

    # ---- authentication ---------------------------------------------------------------------------------------------
    def is_admin(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.admin_token.encode())

    def _require_admin(self, request: Request) -> None:
        if not self.is_admin(request):
            raise ProxyError(401, "admin token required: send `Authorization: Bearer <admin token>`",
                             "invalid_admin_token", headers={"WWW-Authenticate": "Bearer"})

    def _check_api_key(self, request: Request) -> None:
        if self.api_keys and not _matches(presented_keys(request), self.api_keys):
            raise ProxyError(401, "API key required: send one of the proxy's keys (setting proxy_api_keys) as "
                                  "`Authorization: Bearer <key>` or `x-api-key: <key>`", "invalid_api_key",
                             headers={"WWW-Authenticate": "Bearer"})

    # ---- models -----------------------------------------------------------------------------------------------------
    def _model_object(self, entry: dict, listed_as: str | None = None) -> dict[str, Any]:
        """The model as /v1/models lists it; `listed_as`: an alias listed as a model of its own."""
        name = entry["name"]
        run = self.pool.running.get(name)
        return {"id": listed_as or name, "object": "model", "created": int(self.pool.loaded_at or 0),
                "owned_by": "modelreg", "name": entry.get("display_name") or name,
                "aliases": self.pool.routes.aliases_of.get(name, []), "roles": roles_of(entry),
                "backend": entry.get("backend"), "display_name": entry.get("display_name"),
                "running": bool(run and run.ready), "context_length": per_request_context(entry),
                "max_context": served_context(entry),
                "capabilities": {key: bool(get_path(entry, f"capabilities.{key}")) for key in CAPABILITIES}}

    async def list_models(self, request: Request) -> Response:
        self._check_api_key(request)
        routes = self.pool.routes
        listed = [entry for entry in routes.snapshot.entries if not entry.get("deprecated")]
        data = [self._model_object(entry) for entry in listed]
        if self.settings.list_aliases:
            data += [self._model_object(entry, alias) for entry in listed
                     for alias in routes.aliases_of.get(entry["name"], [])]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json",
                        headers={"x-modelreg-revision": routes.revision})

    async def retrieve_model(self, request: Request) -> Response:
        self._check_api_key(request)
        routes = self.pool.routes
        name = self._resolve(routes, request.path_params["model"])
        return Response(orjson.dumps(self._model_object(routes.by_name[name])), media_type="application/json",
                        headers={"x-modelreg-revision": routes.revision})

    @staticmethod
    def _resolve(routes: Any, model: str) -> str:
        try:
            return routes.resolve(model)
        except UnknownModel as exc:
            raise ProxyError(404, str(exc), "model_not_found", close=exc.close) from None

    # ---- routed requests --------------------------------------------------------------------------------------------
    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length", "")
        too_large = ProxyError(413, f"request body over the limit of {limit} bytes (setting max_request_bytes)",
                               "request_too_large")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size, more = [], 0, True
        while more:  # the ASGI messages themselves: Starlette's stream() costs more per request
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _incoming(self, request: Request) -> Call:
        """Check the key, read the body and find the model it names (JSON `model`, or the multipart form's)."""
        self._check_api_key(request)
        body = await self._read_body(request)
        headers = {k: v for k, v in request.headers.items() if k not in DROPPED_REQUEST_HEADERS}
        payload, form = None, None
        if headers.get("content-type", "").startswith("multipart/form-data"):
            async def replay() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}
            try:
                form = await Request(request.scope, replay).form()
            except Exception as exc:  # python-multipart's parse errors have no common base
                raise ProxyError(400, f"the multipart body cannot be read: {exc}", "invalid_request_error") from None
            model = form.get("model")
        else:
            if not json_media_type(headers.get("content-type", "")):
                # a web page's fetch() may send text/plain (or no type) without asking first: no preflight, so only
                # this keeps another site from starting models
                raise ProxyError(415, "send the body as JSON with `Content-Type: application/json` (or "
                                 "multipart/form-data for audio)", "unsupported_media_type")
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ProxyError(400, "the request body is not valid JSON", "invalid_request_error") from None
            model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str):
            raise ProxyError(400, "the request needs a string `model` (a name, an alias or role:<role>)",
                             "invalid_request_error", param="model")
        routes = self.pool.routes
        name = self._resolve(routes, model)
        return Call(request.scope["path"], name, routes.by_name[name], routes.revision, body, headers, payload, form,
                    model, stream=bool(payload and payload.get("stream") is True))

    async def forward(self, request: Request) -> Response:
        """Route one request to its model's backend and relay the answer (SSE chunk by chunk). A client that leaves
        closes the upstream request (a non-streamed one's CLIENT_WATCH_DELAY after it came at the latest), so the
        backend stops generating."""
        try:
            call = await self._incoming(request)
        except ClientGone:
            return Response(status_code=499)
        exchange = Exchange(self.pool, call.name, self.activity, call.path)
        streaming = False
        try:
            run = self.pool.running.get(call.name)
            if call.stream and not (run and run.usable()) and \
                    (state := loading_state(call.entry, self.settings, call.path)) != "off":
                streaming = True  # cold start: answer at once, with loading notes until the first token
                return RelayResponse(exchange, self._cold_stream(exchange, call, state), 200, self._headers(call, {
                    "content-type": "text/event-stream", "cache-control": "no-cache"}))
            response = await self._unless_client_leaves(request, self._answer(exchange, call))
            streaming = isinstance(response, RelayResponse)
            return response
        except ClientGone:
            exchange.status, exchange.cancelled = 499, True
            return Response(status_code=499)  # nobody reads it
        except ProxyError as exc:
            exchange.status = exc.status
            raise
        finally:
            if not streaming:
                exchange.close()

    @staticmethod
    async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
        """The result of `work`; cancels it and raises ClientGone when the client disconnects (noticed at once, or
        CLIENT_WATCH_DELAY after the request came where it left before). One watcher task cancels this one, and
        only a request not answered by then gets one: most are, and a task per request cost the proxy ~20 us."""
        this = asyncio.current_task()
        assert this is not None  # a request handler runs in a task
        gone = False
        watcher: asyncio.Future | None = None

        async def watch() -> None:
            nonlocal gone
            await _client_left(request.receive)
            gone = True
            this.cancel()

        def start_watching() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(watch())

        timer = asyncio.get_running_loop().call_later(CLIENT_WATCH_DELAY, start_watching)
        try:
            return await work
        except asyncio.CancelledError:
            if gone:
                this.uncancel()
                raise ClientGone() from None
            raise
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()

    async def _open(self, exchange: Exchange, call: Call) -> aiohttp.ClientResponse:
        """Acquire the backend (starting it if needed) and send the request; returns once its headers arrived. A
        backend that no longer listens (it died a moment ago) is marked broken and started again, once."""
        session = self.pool.session
        assert session is not None  # opened when the app starts
        for attempt in (1, 2):
            run = exchange.run = await self.pool.acquire(call.name)
            plan = run.handle.plan
            data, headers = await self._outgoing(call, run)
            try:
                exchange.upstream = await session.request(
                    "POST", _upstream_url(plan.base_url, call.path), data=data, headers=headers,
                    allow_redirects=False)
                return exchange.upstream
            except aiohttp.ClientConnectorError as exc:
                if attempt == 2:
                    raise self._unreachable(call.name, plan.base_url, exc) from exc
                run.broken = f"{type(exc).__name__}: {exc}"
                self.pool.note(call.name, "not answering", run.broken)
                exchange.run = None
                self.pool.release(run)
            except (aiohttp.ClientError, OSError) as exc:
                raise self._unreachable(call.name, plan.base_url, exc) from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _unreachable(name: str, base_url: str, exc: Exception) -> ProxyError:
        return ProxyError(502, f"backend of {name!r} at {base_url} failed: {type(exc).__name__}: {exc}",
                          "backend_error", model=name)

    async def _outgoing(self, call: Call, run: Running) -> tuple[Any, dict[str, str]]:
        """The body and headers for the backend: `model` set to its served name, generation defaults filled in,
        its API key instead of the client's."""
        served = run.handle.plan.served_model_id
        headers = call.headers
        if run.upstream_auth:
            headers = {**headers, "authorization": run.upstream_auth}
        data: Any = call.body
        if call.payload is not None:
            outgoing = with_generation_defaults(call.payload, call.entry) if call.path in DEFAULTS_PATHS \
                else call.payload
            if outgoing is not call.payload or call.model != served:
                # the backend knows its served name only (the request may name an alias or a role)
                data = orjson.dumps({**outgoing, "model": served})
        elif call.form is not None and call.model != served:
            data = await self._form_for(call.form, served)
            headers = {k: v for k, v in headers.items() if k != "content-type"}  # a new boundary
        return data, headers

    @staticmethod
    async def _form_for(form: FormData, model: str) -> aiohttp.FormData:
        """The multipart form again, with `model` set to the backend's served name."""
        rebuilt = aiohttp.FormData()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                rebuilt.add_field(key, await value.read(), filename=value.filename, content_type=value.content_type)
            else:
                rebuilt.add_field(key, model if key == "model" else value)
        return rebuilt

    def _headers(self, call: Call, headers: dict[str, str]) -> dict[str, str]:
        headers["x-modelreg-model"] = _header_name(call.name)
        headers["x-modelreg-revision"] = call.revision
        return headers

    async def _answer(self, exchange: Exchange, call: Call) -> Response:
        upstream = await self._open(exchange, call)
        headers = self._headers(call, reply_headers(upstream.headers))
        if upstream.content_type == "text/event-stream":
            return RelayResponse(exchange, self._relay(exchange, call.path in DEFAULTS_PATHS), upstream.status,
                                 headers)
        try:
            data = await upstream.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ProxyError(502, f"backend of {call.name!r} broke off its answer: {type(exc).__name__}: {exc}",
                             "backend_error", model=call.name) from exc
        exchange.seen = data
        return Response(data, status_code=upstream.status, headers=headers)

    async def _relay(self, exchange: Exchange, ends_with_done: bool, first: bytes = b"") -> AsyncIterator[bytes]:
        """The upstream stream chunk by chunk; a backend that breaks off ends it with an error event and [DONE]. An
        OpenAI stream (`ends_with_done`) that closes without its `[DONE]` was cut too: its backend was stopped
        (unload, restart, idle) or died between two chunks."""
        upstream = exchange.upstream
        assert upstream is not None  # _open sent the request
        tail = first[-SEEN_BYTES:]
        if first:
            exchange.first_at = time.perf_counter()
            yield first
        try:
            async for chunk in upstream.content.iter_any():
                if exchange.first_at is None:
                    exchange.first_at = time.perf_counter()
                tail = (tail + chunk)[-SEEN_BYTES:]
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            exchange.status = 502
            yield self._broken(exchange.name, exc).sse()
            return
        exchange.seen = tail
        if ends_with_done and b"[DONE]" not in tail[-16:]:
            exchange.status = 502
            yield self._broken(exchange.name, ConnectionResetError("the stream ended without [DONE]")).sse()

    def _broken(self, name: str, exc: BaseException) -> ProxyError:
        why = f"{type(exc).__name__}: {exc}".rstrip(": ")
        log.warning("backend of %s broke off a streamed answer (%s)", name, why)
        self.pool.note(name, "stream broken", why)
        return ProxyError(502, f"the backend of {name!r} broke off the answer ({why})", "backend_error", model=name)

    async def _cold_stream(self, exchange: Exchange, call: Call, state: str) -> AsyncIterator[bytes]:
        """A streamed request to a model that is not ready: loading notes while it starts and until its first chunk
        (`reasoning`: progress chunks; `comments`: `: loading <model>` lines), then the relayed stream; a failed
        start ends the stream with its error event."""
        opening = asyncio.ensure_future(self._open(exchange, call))
        first: asyncio.Future | None = None
        events: LoadingEvents | None = None
        if state == "reasoning":
            run = self.pool.running.get(call.name)  # a start under way: its log so far is this start's
            watch = LoadWatch(self.pool.supervisor.log_path(call.name), from_start=bool(run and not run.ready))
            events = LoadingEvents(call.path, call.model or call.name, call.name, watch)
        try:
            if events is not None:
                yield events.opening()
            async for note in self._loading(opening, call.name, events):
                yield note
            try:
                upstream = opening.result()
            except ProxyError as exc:
                exchange.status = exc.status
                yield exc.sse()
                return
            if events is not None:
                yield events.ready()
            if upstream.content_type != "text/event-stream":  # an error (or a backend that does not stream)
                data = await upstream.read()
                if upstream.status >= 400:
                    yield self._upstream_error(call.name, upstream.status, data).sse()
                else:
                    yield b"data: " + data + b"\n\ndata: [DONE]\n\n"
                return
            first = asyncio.ensure_future(upstream.content.readany())
            async for note in self._loading(first, call.name, events):
                yield note
            try:
                head = first.result()
            except (aiohttp.ClientError, OSError) as exc:
                yield self._broken(call.name, exc).sse()
                return
            async for chunk in self._relay(exchange, call.path in DEFAULTS_PATHS, head):
                yield chunk
        finally:
            for pending in (opening, first):
                if pending is not None and not pending.done():
                    pending.cancel()

    async def _loading(self, pending: asyncio.Future, name: str, events: LoadingEvents | None) -> AsyncIterator[bytes]:
        """Until `pending` is done: a progress chunk (`events`) or a `: loading` comment every loading_interval."""
        comment = f": loading {name}\n\n".encode()
        if events is None and not pending.done():
            yield comment
        while not pending.done():
            await asyncio.wait((pending,), timeout=self.loading_interval)
            if not pending.done():
                yield events.tick() if events is not None else comment

    @staticmethod
    def _upstream_error(name: str, status: int, data: bytes) -> ProxyError:
        message = data.decode("utf-8", "replace")[:2000]
        try:
            found = orjson.loads(data)
            detail = found.get("error") or found.get("detail") or found.get("message") if isinstance(found, dict) \
                else None
            message = (detail.get("message") if isinstance(detail, dict) else detail) or message
        except orjson.JSONDecodeError:
            pass
        return ProxyError(status, f"backend of {name!r} answered HTTP {status}: {message}", "backend_error",
                          model=name)

    # ---- admin ------------------------------------------------------------------------------------------------------
    def _admin_target(self, request: Request) -> str:
        """The running (or registry) model an admin path names, by name or alias."""
        model = request.path_params["model"]
        if model in self.pool.running:
            return model
        return self._resolve(self.pool.routes, model)

    async def status_endpoint(self, request: Request) -> Response:
        self._require_admin(request)
        return Response(orjson.dumps(self.pool.status()), media_type="application/json")

    async def reload_endpoint(self, request: Request) -> Response:
        self._require_admin(request)
        restart = request.query_params.get("restart")
        if restart not in (None, "", "idle", "now"):
            raise ProxyError(400, f"restart={restart!r}: use restart=now (or leave it out: restart when idle)",
                             "invalid_request_error", param="restart")
        reply = await self.pool.reload("admin", restart_now=restart == "now")  # `ok` says how it went
        return Response(orjson.dumps(reply), media_type="application/json")

    async def running_endpoint(self, request: Request) -> Response:
        self._require_admin(request)
        return Response(orjson.dumps({"running": self.pool.running_status()}), media_type="application/json")

    async def unload_endpoint(self, request: Request) -> Response:
        self._require_admin(request)
        if "model" not in request.path_params:
            stopped = await self.pool.unload_all()
        else:
            name = self._admin_target(request)
            if not await self.pool.unload(name):
                raise ProxyError(404, f"model {name!r} is not running", "model_not_running", model=name)
            stopped = [name]
        return Response(orjson.dumps({"stopped": stopped}), media_type="application/json")

    async def restart_endpoint(self, request: Request) -> Response:
        self._require_admin(request)
        name = self._admin_target(request)
        run = await self.pool.restart(name)
        return Response(orjson.dumps(self.pool.backend_status(name, run)), media_type="application/json")

    async def logs_endpoint(self, request: Request) -> Response:
        """The backend's log: its last `lines` lines (default 200), then with `follow=1` what it appends."""
        self._require_admin(request)
        name = self._admin_target(request)
        path = self.pool.supervisor.log_path(name)
        lines = request.query_params.get("lines", "200")
        if not lines.isdigit():
            raise ProxyError(400, f"lines={lines!r}: give a whole number", "invalid_request_error", param="lines")
        follow = request.query_params.get("follow", "") in ("1", "true", "yes")
        if not follow:
            if not path.exists():
                raise ProxyError(404, f"model {name!r} has no log yet ({path})", "log_not_found", model=name)
            text = read_tail(path, int(lines), max_bytes=4 << 20)
            return PlainTextResponse(text + "\n" if text else "")
        return StreamingResponse(follow_log(path, int(lines)), media_type="text/plain; charset=utf-8")

    # ---- activity ---------------------------------------------------------------------------------------------------
    def _check_reader(self, request: Request) -> None:
        """/metrics and /api/activity: the proxy's API keys, as llama-swap's paths take them, or the admin token."""
        if not self.is_admin(request):
            self._check_api_key(request)

    async def metrics_endpoint(self, request: Request) -> Response:
        """Prometheus' text format: requests, tokens, latency histograms, backend starts and backends running."""
        self._check_reader(request)
        return Response(self.activity.metrics(), media_type=CONTENT_TYPE_LATEST)

    async def activity_endpoint(self, request: Request) -> Response:
        """`{"activity": [...]}`, oldest first: the kept records after `?since=<id>`, the last `?limit=N`, of
        `?model=` only."""
        self._check_reader(request)
        numbers = {}
        for key in ("since", "limit"):
            value = request.query_params.get(key, "0")
            if not value.isdigit():
                raise ProxyError(400, f"{key}={value!r}: give a whole number", "invalid_request_error", param=key)
            numbers[key] = int(value)
        model = request.query_params.get("model")
        found = self.activity.recent(numbers["since"], numbers["limit"] or None, model)
        return Response(orjson.dumps({"activity": found}), media_type="application/json")

    async def health(self, request: Request) -> Response:
        return Response(orjson.dumps({"ok": True, "revision": self.pool.routes.revision}),
                        media_type="application/json")


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message, code = f"no route {request.method} {request.url.path}", "route_not_found"
    elif exc.status_code == 405:
        message, code = f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"
    else:
        message, code = str(exc.detail), "http_error"
    return Response(orjson.dumps(error_body(exc.status_code, message, code)), status_code=exc.status_code,
                    headers=exc.headers, media_type="application/json")


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return Response(orjson.dumps(error_body(500, f"internal error: {type(exc).__name__}: {exc}", "internal_error")),
                    status_code=500, media_type="application/json")


def create_app(proxy: Proxy, bound: str = "127.0.0.1") -> Starlette:
    """The proxy's ASGI app; `bound` is the address it listens on (a Host it answers for)."""
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.pool.startup()
        try:
            yield
        finally:
            await proxy.pool.shutdown()
            proxy.activity.close()

    routed = [Route(path, proxy.forward, methods=["POST"]) for path in ROUTED_PATHS]
    routed += [Route(prefix + "{rest:path}", proxy.forward, methods=["POST"]) for prefix in ROUTED_PREFIXES]
    routes = [*routed,  # first: the routes matched most often
              Route("/v1/models", proxy.list_models, methods=["GET"]),
              Route("/v1/models/{model:path}", proxy.retrieve_model, methods=["GET"]),
              Route("/admin/status", proxy.status_endpoint, methods=["GET"]),
              Route("/admin/reload", proxy.reload_endpoint, methods=["POST"]),
              Route("/admin/running", proxy.running_endpoint, methods=["GET"]),
              Route("/admin/unload", proxy.unload_endpoint, methods=["POST"]),
              Route("/admin/unload/{model:path}", proxy.unload_endpoint, methods=["POST"]),
              Route("/admin/restart/{model:path}", proxy.restart_endpoint, methods=["POST"]),
              Route("/admin/logs/{model:path}", proxy.logs_endpoint, methods=["GET"]),
              Route("/health", proxy.health, methods=["GET"]),
              Route("/metrics", proxy.metrics_endpoint, methods=["GET"]),
              Route("/api/activity", proxy.activity_endpoint, methods=["GET"])]
    from modelreg.proxy.llama_swap_api import llama_swap_routes  # it builds on this module's Proxy
    routes += llama_swap_routes(proxy)
    middleware = [Middleware(HostGuard, bound=bound, allowed=proxy.settings.allowed_hosts),
                  Middleware(SiteGuard, allowed_origins=proxy.settings.cors_origins)]
    if proxy.settings.cors_origins:  # without it a preflight gets no CORS headers (405)
        middleware.append(Middleware(CORSMiddleware, allow_origins=proxy.settings.cors_origins, allow_methods=["*"],
                                     allow_headers=["*"], expose_headers=["x-modelreg-model", "x-modelreg-revision"],
                                     max_age=600))
    async def on_proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return exc.response(admin=proxy.is_admin(request))  # a failed start's argv and log: the admin's only

    handlers = {ProxyError: on_proxy_error, HTTPException: _on_http_error, Exception: _on_unexpected}
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=handlers)


def serve(registry: Registry, host: str, port: int) -> None:
    """Run the proxy until SIGINT/SIGTERM; every backend it started is stopped on the way out. uvicorn picks uvloop
    and httptools (installed with modelreg) over asyncio and h11."""
    check_bind(host, registry.settings)
    uvicorn.run(create_app(Proxy(registry), bound=host), host=host, port=port, log_level="info", access_log=False,
                proxy_headers=False, timeout_graceful_shutdown=5)
