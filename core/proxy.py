"""The OpenAI-compatible proxy: one Registry, routing by name, alias or role, backends started on demand, hot reload."""
from __future__ import annotations

import asyncio
import collections
import difflib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import BadInput, InvalidRegistry, RegistryError, UnknownModel
from core.launch import LaunchPlan, launch_plan
from core.proxy_admin import TOKEN_ENV, TOKEN_FILE
from core.registry import Registry, Snapshot
from core.supervisor import Backend, BackendStartError, Supervisor
from core.watch import RegistryWatcher

ROLE_PREFIX = "role:"
ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# Not passed on from a backend's response: hop-by-hop, or set again by our own server.
DROPPED_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})
EVENTS_KEPT = 100


def ensure_admin_token(config_dir: str | os.PathLike) -> str:
    """$MODELREG_ADMIN_TOKEN when set, else `<config-dir>/.admin-token`, created (mode 0600) on first run."""
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    path = Path(config_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TOKEN_FILE}.", dir=path.parent)  # mkstemp creates mode 0600
        try:
            os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)  # create-if-absent with its content: a proxy starting at once keeps ours
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise BadInput(f"{path} is empty; delete it so the proxy creates a new token, or set ${TOKEN_ENV}")
    return token


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds") if stamp else None


def _exclusive_group(entry: dict | None) -> str | None:
    group = ((entry or {}).get("backend_config") or {}).get("exclusive_group")
    return group if isinstance(group, str) and group else None


class ProxyError(Exception):
    """An answer other than success, in OpenAI's error shape: {"error": {"message", "type", ...details}}."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers, self.details = status, message, kind, headers, details

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "code": self.status,
                                       **self.details}}, status_code=self.status, headers=self.headers)


@dataclass(frozen=True)
class Routes:
    """One merged snapshot and the alias index built from it; a reload swaps the whole object in one step."""

    snapshot: Snapshot
    by_name: dict[str, dict]
    aliases: dict[str, str]
    warnings: tuple[str, ...]
    aliases_of: dict[str, list[str]] = field(default_factory=dict)  # model name -> its aliases, for /v1/models
    role_model: dict[str, str] = field(default_factory=dict)  # role -> the model `role:<role>` routes to

    @classmethod
    def build(cls, snapshot: Snapshot) -> "Routes":
        by_name = snapshot.by_name
        aliases: dict[str, str] = {}
        warnings = []
        for entry in snapshot.entries:
            for alias in entry.get("model_aliases") or []:
                if not isinstance(alias, str) or not alias or alias == entry["name"]:
                    continue
                if alias in by_name:
                    warnings.append(f"alias {alias!r} of {entry['name']!r} is also a model's name; the model wins")
                elif alias in aliases:
                    warnings.append(f"alias {alias!r} is claimed by {aliases[alias]!r} and {entry['name']!r}; "
                                    f"{aliases[alias]!r} wins")
                else:
                    aliases[alias] = entry["name"]
        aliases_of: dict[str, list[str]] = {}
        for alias, name in aliases.items():
            aliases_of.setdefault(name, []).append(alias)
        return cls(snapshot, by_name, aliases, tuple(warnings), aliases_of, _role_models(snapshot.entries))

    @property
    def revision(self) -> str:
        return self.snapshot.revision

    def resolve(self, model: str) -> str:
        """The model name a request's `model` means: a name, an alias, or `role:<role>`; UnknownModel otherwise."""
        if model in self.by_name:
            return model
        if model in self.aliases:
            return self.aliases[model]
        if model.startswith(ROLE_PREFIX):
            chosen = self.for_role(model[len(ROLE_PREFIX):])
            if chosen:
                return chosen
        close = difflib.get_close_matches(model, self.choices(), n=5, cutoff=0.4)
        raise UnknownModel(model, close)

    def for_role(self, role: str) -> str | None:
        """The usable model with this role and the highest role_priority for it (ties: by name)."""
        return self.role_model.get(role)

    def choices(self) -> list[str]:
        roles = {f"{ROLE_PREFIX}{role}" for e in self.snapshot.entries for role in _roles(e)}
        return [*self.by_name, *self.aliases, *sorted(roles)]


# generation_defaults keys -> the request field each fills when the client leaves it out
REQUEST_DEFAULTS = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                    "min_p": "min_p", "frequency_penalty": "frequency_penalty",
                    "presence_penalty": "presence_penalty", "repetition_penalty": "repetition_penalty",
                    "seed": "seed", "stop_sequences": "stop"}


def with_generation_defaults(payload: dict, entry: dict) -> dict:
    """The request with the model's curated generation_defaults filled in where the client set nothing."""
    defaults = entry.get("generation_defaults") or {}
    added = {field: defaults[key] for key, field in REQUEST_DEFAULTS.items()
             if defaults.get(key) not in (None, []) and field not in payload}
    return {**payload, **added} if added else payload


def _role_models(entries: list[dict]) -> dict[str, str]:
    """For every role, the usable (not deprecated, not missing) model with the highest role_priority (ties: name)."""
    best: dict[str, tuple[float, str]] = {}
    for entry in entries:
        if entry.get("deprecated") or entry.get("missing"):
            continue
        for role in _roles(entry):
            value = (entry.get("role_priority") or {}).get(role, 0)
            priority = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
            rank = (-priority, entry["name"])
            if role not in best or rank < best[role]:
                best[role] = rank
    return {role: rank[1] for role, rank in best.items()}


def _roles(entry: dict) -> list[str]:
    roles = entry.get("roles")
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


EMPTY_ROUTES = Routes(Snapshot([], ""), {}, {}, ())


@dataclass
class Running:
    """A backend the proxy started, with what the proxy knows about its use."""

    handle: Backend
    revision: str  # the snapshot revision it was started under
    ready: bool = False
    stale: str | None = None  # why it must restart to match the registry (None: it matches)
    stopping: bool = False
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    last_request_at: float | None = None
    # set while no request is in flight, and when a restart is forced (`?restart=now`)
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.drained.set()

    def usable(self) -> bool:
        return self.ready and not self.stale and not self.stopping and self.handle.exit_code() is None


@dataclass
class Failure:
    """The last failed start of a model: requests that waited for that start get the same answer."""

    signature: str
    at: float
    error: ProxyError


class Proxy:
    """Serves the merged snapshot of exactly one Registry object; the ASGI app is `create_app(proxy)`."""

    def __init__(self, registry: Registry, supervisor: Supervisor | None = None, debounce: float = 0.05,
                 reap_interval: float = 1.0):
        self.registry = registry
        self.settings = registry.settings
        self.supervisor = supervisor or Supervisor.for_registry(registry)
        self.admin_token = ensure_admin_token(registry.config_dir)
        self.routes: Routes = EMPTY_ROUTES
        self.loaded_at: float | None = None
        self.last_reload: dict[str, Any] = {}
        self.running: dict[str, Running] = {}
        self.failures: dict[str, Failure] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.debounce = debounce
        self.reap_interval = reap_interval
        self.client: httpx.AsyncClient | None = None
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._reload_lock = asyncio.Lock()
        self._restarts: dict[str, asyncio.Task] = {}
        self._reaping: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._cancel = threading.Event()
        self._watcher: RegistryWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0),
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))
        for orphan in await asyncio.to_thread(self.supervisor.stop_orphans):
            self._event(orphan.name, "orphan stopped", f"pid {orphan.pid} left by a proxy that is gone")
        await self.reload("startup")
        if self.routes is EMPTY_ROUTES:
            try:  # the layers are invalid: serve the last good snapshot on disk, the error shows in status
                self._swap(await asyncio.to_thread(self.registry.snapshot))
            except RegistryError:
                pass
        self._watcher = RegistryWatcher(self.registry.config_dir, self._files_changed, self.debounce).start()
        self._spawn(self._reap_forever())

    async def shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self._cancel.set()  # a start still waiting for readiness gives up and stops its process
        for task in [*self._tasks, *self._restarts.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._restarts.values(), return_exceptions=True)
        await asyncio.to_thread(self.supervisor.stop_all)
        self.running.clear()
        if self.client is not None:
            await self.client.aclose()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _files_changed(self, names: set[str]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.reload("watch: " + ", ".join(sorted(names))), self._loop)

    def _event(self, model: str, event: str, detail: str = "") -> None:
        self.events.append({"at": _iso(time.time()), "model": model, "event": event, "detail": detail})

    # ---- reload ----------------------------------------------------------------------------------------------------
    async def reload(self, source: str, restart_now: bool = False) -> dict[str, Any]:
        """Rebuild the merged snapshot through the registry and serve it; invalid layers keep the previous one."""
        async with self._reload_lock:
            began = time.perf_counter()
            try:
                snapshot = await asyncio.to_thread(self.registry.rebuild)
            except (RegistryError, OSError) as exc:
                problems = exc.problems if isinstance(exc, InvalidRegistry) else [str(exc)]
                self.last_reload = {"ok": False, "at": _iso(time.time()), "source": source,
                                    "revision": self.routes.revision, "changed": False, "error": str(exc),
                                    "errors": problems, "stale": [], "restarted": [],
                                    "ms": round((time.perf_counter() - began) * 1000, 2)}
                return self.last_reload
            changed = snapshot.revision != self.routes.revision
            if changed:
                self._swap(snapshot)
            stale = self._mark_stale()
            restarted = self._schedule_restarts(restart_now)
            self.last_reload = {"ok": True, "at": _iso(time.time()), "source": source,
                                "revision": self.routes.revision, "changed": changed, "error": None, "errors": [],
                                "stale": [n for n in stale if n not in restarted], "restarted": restarted,
                                "ms": round((time.perf_counter() - began) * 1000, 2)}
            return self.last_reload

    def _swap(self, snapshot: Snapshot) -> None:
        self.routes = Routes.build(snapshot)
        self.loaded_at = time.time()

    def _mark_stale(self) -> list[str]:
        """Mark every running backend whose launch changed under the served snapshot; returns their names."""
        for name, run in self.running.items():
            entry = self.routes.by_name.get(name)
            if entry is None:
                run.stale = "removed from the registry"
                continue
            try:
                plan = launch_plan(entry, self.settings)
            except RegistryError as exc:
                run.stale = f"its entry no longer launches: {exc}"
                continue
            run.stale = "launch command changed" if plan.signature != run.handle.plan.signature else None
        return sorted(name for name, run in self.running.items() if run.stale)

    def _schedule_restarts(self, now: bool) -> list[str]:
        """Restart stale backends: those idle (or all, with `now`) at once, the others when their requests end.
        Returns the names restarted at once."""
        at_once = []
        for name, run in self.running.items():
            if not run.stale:
                continue
            if now:
                run.drained.set()
            if run.drained.is_set():
                at_once.append(name)
            if name not in self._restarts:
                self._restarts[name] = self._spawn(self._restart(name))
        return sorted(at_once)

    async def _restart(self, name: str) -> None:
        try:
            async with self._lock(name):
                run = self.running.get(name)
                if run is None or not run.stale:
                    return
                await run.drained.wait()
                if self.running.get(name) is not run or not run.stale:
                    return
                reason = run.stale
                await self._stop(name, drain=False, why=f"restart: {reason}")
                if name not in self.routes.by_name:
                    return
                try:
                    plan = self._plan(name)
                    await self._start_exclusive(plan)
                except ProxyError:
                    return  # recorded in failures; the next request tries again and gets the diagnosis
                self._event(name, "restarted", reason)
        finally:
            self._restarts.pop(name, None)

    # ---- backends ---------------------------------------------------------------------------------------------------
    def _lock(self, name: str) -> asyncio.Lock:
        """Starts and stops of one exclusive group (or of one model outside groups) happen one at a time."""
        group = _exclusive_group(self.routes.by_name.get(name))
        return self._locks[f"group:{group}" if group else f"model:{name}"]

    def _plan(self, name: str) -> LaunchPlan:
        entry = self.routes.by_name.get(name)
        if entry is None:
            raise ProxyError(404, f"model {name!r} is no longer in the registry", "model_not_found")
        try:
            return launch_plan(entry, self.settings)
        except RegistryError as exc:
            raise ProxyError(503, f"model {name!r} cannot be started: {exc}", "backend_config_error",
                             model=name) from exc

    async def acquire(self, name: str) -> Running:
        """A ready backend for `name` with this request counted in flight; starts it (or restarts it) if needed."""
        waiting_since = time.monotonic()
        while True:
            run = self.running.get(name)
            if run is not None and run.usable():
                run.in_flight += 1
                run.drained.clear()
                run.last_request_at = time.time()
                return run
            await self._ensure(name, waiting_since)

    def release(self, run: Running) -> None:
        run.in_flight -= 1
        run.last_used = time.monotonic()
        if run.in_flight == 0:
            run.drained.set()

    async def _ensure(self, name: str, waiting_since: float) -> None:
        self._plan(name)  # an entry that cannot launch fails before waiting for anything
        async with self._lock(name):
            run = self.running.get(name)
            if run is not None and run.usable():
                return
            plan = self._plan(name)  # the served snapshot may have changed while we waited
            failure = self.failures.get(name)
            if failure and failure.at >= waiting_since and failure.signature == plan.signature:
                raise failure.error  # the start this request waited for failed: same answer, no second try
            if run is not None:
                await self._stop(name, drain=True, why=run.stale or "not answering")
            await self._start_exclusive(plan)

    async def _start_exclusive(self, plan: LaunchPlan) -> None:
        """Stop the other running members of the plan's exclusive group, then start it (caller holds the lock)."""
        group = _exclusive_group(plan.entry)
        if group:
            for other in [n for n, r in self.running.items() if n != plan.name
                          and _exclusive_group(self.routes.by_name.get(n) or r.handle.plan.entry) == group]:
                await self._stop(other, drain=True, why=f"exclusive group {group!r}: starting {plan.name}")
        await self._start(plan)

    async def _start(self, plan: LaunchPlan) -> None:
        run: Running | None = None
        try:
            handle = await asyncio.to_thread(self._launch, plan)
            run = self.running[plan.name] = Running(handle, self.routes.revision)
            self._event(plan.name, "starting", " ".join(plan.argv) or f"Ollama model {plan.ollama_model}")
            await asyncio.to_thread(self.supervisor.wait_ready, handle, None, None, self._cancel)
        except BackendStartError as exc:
            if run is not None and self.running.get(plan.name) is run:
                del self.running[plan.name]
            error = ProxyError(503, str(exc), "backend_start_failed", model=plan.name, **exc.to_dict())
            self.failures[plan.name] = Failure(plan.signature, time.monotonic(), error)
            self._event(plan.name, "start failed", exc.reason)
            raise error from exc
        run.ready = True
        run.last_used = time.monotonic()
        self.failures.pop(plan.name, None)
        self._event(plan.name, "ready", f"pid {handle.pid}, {handle.seconds_to_ready or 0:.2f} s")
        if self._mark_stale():  # a reload while it started may already have changed its entry
            self._schedule_restarts(now=False)

    def _launch(self, plan: LaunchPlan) -> Backend:
        handle = self.supervisor.start(plan)
        if self._cancel.is_set():  # shutdown began while it spawned: stop_all may have missed it
            self.supervisor.stop(handle)
            raise BackendStartError("the proxy is shutting down", plan, diagnosis=[])
        return handle

    async def _stop(self, name: str, drain: bool, why: str) -> None:
        run = self.running.get(name)
        if run is None:
            return
        run.stopping = True
        if drain:
            await run.drained.wait()
        await asyncio.to_thread(self.supervisor.stop, run.handle)
        if self.running.get(name) is run:
            del self.running[name]
        self._event(name, "stopped", why)

    def _idle_ttl(self, name: str, run: Running) -> float | None:
        entry = self.routes.by_name.get(name) or run.handle.plan.entry
        ttl = (entry.get("backend_config") or {}).get("idle_ttl")
        ttl = self.settings.idle_ttl if ttl is None else ttl
        return float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0 else None

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            await self.reap()

    async def reap(self) -> None:
        """Forget backends that exited on their own; stop those idle longer than their time-to-live."""
        for name, run in list(self.running.items()):
            if name not in self._reaping and self._reap_reason(name, run):
                self._reaping.add(name)
                self._spawn(self._reap_one(name, run))

    def _reap_reason(self, name: str, run: Running) -> str | None:
        if not run.ready or run.stopping or self.running.get(name) is not run:
            return None
        code = run.handle.exit_code()
        if code is not None:
            return f"exited on its own with code {code}"
        ttl = self._idle_ttl(name, run)
        if ttl is not None and run.in_flight == 0 and time.monotonic() - run.last_used >= ttl:
            return f"idle for {ttl:g} s"
        return None

    async def _reap_one(self, name: str, run: Running) -> None:
        try:
            async with self._lock(name):
                reason = self._reap_reason(name, run)  # a request may have come in while we waited
                if reason:
                    await self._stop(name, drain=False, why=reason)
        finally:
            self._reaping.discard(name)

    # ---- status -----------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "revision": self.routes.revision,
            "loaded_at": _iso(self.loaded_at),
            "last_reload": self.last_reload,
            "backends": [self._backend_status(name, run) for name, run in sorted(self.running.items())],
            "failures": {name: {"message": f.error.message, **f.error.details}
                         for name, f in sorted(self.failures.items())},
            "warnings": list(self.routes.warnings),
            "events": list(self.events),
            "models": len(self.routes.by_name),
            "config_dir": str(self.registry.config_dir),
            "profile": self.registry.profile,
            "pid": os.getpid(),
        }

    @staticmethod
    def _backend_status(name: str, run: Running) -> dict[str, Any]:
        plan = run.handle.plan
        return {"name": name, "backend": plan.backend, "pid": run.handle.pid, "port": plan.port, "argv": plan.argv,
                "started_at": _iso(run.handle.started_at), "ready": run.ready, "stopping": run.stopping,
                "stale": bool(run.stale),
                "stale_reason": run.stale, "in_flight": run.in_flight,
                "last_request_at": _iso(run.last_request_at), "revision": run.revision, "base_url": plan.base_url,
                "served_model_id": plan.served_model_id, "log_path": str(run.handle.log_path)}

    # ---- HTTP -------------------------------------------------------------------------------------------------------
    def _require_bearer(self, request: Request, secret: str, what: str) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret.encode()):
            raise ProxyError(401, f"{what} required: send `Authorization: Bearer <{what}>`", "unauthorized",
                             headers={"WWW-Authenticate": "Bearer"})

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
        routes = self.routes
        data = []
        for entry in routes.snapshot.entries:
            if entry.get("deprecated"):
                continue
            name = entry["name"]
            run = self.running.get(name)
            data.append({"id": name, "object": "model", "created": int(self.loaded_at or 0), "owned_by": "modelreg",
                         "aliases": routes.aliases_of.get(name, []), "roles": _roles(entry),
                         "backend": entry.get("backend"), "display_name": entry.get("display_name"),
                         "running": bool(run and run.ready)})
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
        routes = self.routes
        try:
            name = routes.resolve(payload["model"])
        except UnknownModel as exc:
            raise ProxyError(404, str(exc), "model_not_found", close=exc.close) from None
        run = await self.acquire(name)
        plan = run.handle.plan
        outgoing = payload if request.url.path.endswith("/embeddings") else \
            with_generation_defaults(payload, routes.by_name[name])
        if outgoing is not payload or payload["model"] != plan.served_model_id:
            # the backend knows its served name only (the request may name an alias or a role)
            body = json.dumps({**outgoing, "model": plan.served_model_id}).encode()
        headers = {"content-type": "application/json", "accept": request.headers.get("accept", "*/*")}
        upstream_request = self.client.build_request("POST", plan.base_url + request.url.path, content=body,
                                                     headers=headers)
        try:
            upstream = await self.client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            self.release(run)
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
            self.release(run)
        return Response(data, status_code=upstream.status_code, headers=reply_headers)

    async def _relay(self, upstream: httpx.Response, run: Running) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            self.release(run)

    async def status_endpoint(self, request: Request) -> Response:
        self._require_bearer(request, self.admin_token, "admin token")
        return JSONResponse(self.status())

    async def reload_endpoint(self, request: Request) -> Response:
        self._require_bearer(request, self.admin_token, "admin token")
        restart = request.query_params.get("restart")
        if restart not in (None, "", "idle", "now"):
            raise ProxyError(400, f"restart={restart!r}: use restart=now (or leave it out: restart when idle)",
                             "invalid_request_error")
        return JSONResponse(await self.reload("admin", restart_now=restart == "now"))  # `ok` says how it went

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "revision": self.routes.revision})


def create_app(proxy: Proxy) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.startup()
        try:
            yield
        finally:
            await proxy.shutdown()

    async def on_proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        return exc.response()

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
