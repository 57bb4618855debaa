"""The backends one proxy runs: started on demand, restarted on reload, stopped when idle, and their status."""
from __future__ import annotations

import asyncio
import collections
import os
import shlex
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp

from modelreg.errors import InvalidRegistry, RegistryError
from modelreg.launch.planning.plan import LaunchPlan, exclusive_group, idle_ttl, launch_plan
from modelreg.launch.running.supervisor import Backend, BackendStartError, Supervisor
from modelreg.proxy.errors import ProxyError
from modelreg.proxy.routing import EMPTY_ROUTES, Routes
from modelreg.registry import Registry, Snapshot
from modelreg.settings_view import load_settings
from modelreg.store import SETTINGS_FILE
from modelreg.watch import REGISTRY_FILES, RegistryWatcher

EVENTS_KEPT = 100


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds") if stamp else None


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
    upstream_auth: str | None = None  # the Authorization header the backend wants (from api_key_env)
    broken: str | None = None  # why it stopped answering (its process may still be on its way out)

    def __post_init__(self) -> None:
        self.drained.set()
        key = self.handle.plan.api_key()
        self.upstream_auth = f"Bearer {key}" if key else None

    @property
    def state(self) -> str:
        return "stopping" if self.stopping else "ready" if self.ready else "starting"

    def usable(self) -> bool:
        return (self.ready and not self.stale and not self.stopping and not self.broken
                and self.handle.exit_code() is None)


@dataclass
class Failure:
    """The last failed start of a model: requests that waited for that start get the same answer."""

    signature: str
    at: float
    error: ProxyError


class BackendPool:
    """The merged snapshot one Registry serves, and the backends started for it: on demand, restarted when their
    launch changes, stopped when idle; starts and stops of one exclusive group happen one at a time."""

    def __init__(self, registry: Registry, supervisor: Supervisor | None = None, debounce: float = 0.05,
                 reap_interval: float = 1.0):
        self.registry = registry
        self.settings = registry.settings
        self.supervisor = supervisor or Supervisor.for_registry(registry)
        self.routes: Routes = EMPTY_ROUTES
        self.loaded_at: float | None = None
        self.last_reload: dict[str, Any] = {}
        self.running: dict[str, Running] = {}
        self.failures: dict[str, Failure] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.debounce = debounce
        self.reap_interval = reap_interval
        self.session: aiohttp.ClientSession | None = None  # one pool of upstream connections, reused
        self.admitted: collections.Counter[str] = collections.Counter()  # requests per model, waiting or in flight
        self.starts: collections.Counter[str] = collections.Counter()  # backend starts per model (for /metrics)
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
        # aiohttp: a fifth of httpx's CPU per relayed request; bodies and encodings pass through untouched
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), skip_auto_headers=("User-Agent",),
            cookie_jar=aiohttp.DummyCookieJar())
        for orphan in await asyncio.to_thread(self.supervisor.stop_orphans):
            self.note(orphan.name, "orphan stopped", f"pid {orphan.pid} left by a proxy that is gone")
        await self.reload("startup")
        if self.routes is EMPTY_ROUTES:
            try:  # the layers are invalid: serve the last good snapshot on disk, the error shows in status
                self._swap(await asyncio.to_thread(self.registry.snapshot))
            except RegistryError:
                pass
        self._watcher = RegistryWatcher(self.registry.config_dir, self._files_changed, self.debounce,
                                        names=(*REGISTRY_FILES, SETTINGS_FILE)).start()
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
        if self.session is not None:
            await self.session.close()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _files_changed(self, names: set[str]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.reload("watch: " + ", ".join(sorted(names))), self._loop)

    def note(self, model: str, event: str, detail: str = "") -> None:
        self.events.append({"at": _iso(time.time()), "model": model, "event": event, "detail": detail})

    # ---- reload ----------------------------------------------------------------------------------------------------
    def _reread_settings(self) -> None:
        """Take settings.json as it is now (for the registry's profile); a file that cannot be used raises
        RegistryError and the last good settings stay."""
        try:
            settings = load_settings(self.registry.config_dir).for_profile(self.registry.profile)
        except RegistryError as exc:
            raise RegistryError(f"{exc} (the proxy keeps its last good settings)") from exc
        self.settings = self.registry.settings = settings

    async def reload(self, source: str, restart_now: bool = False) -> dict[str, Any]:
        """Reread settings.json, rebuild the merged snapshot through the registry and serve it; an unusable
        settings file or invalid layers keep the previous ones. Backends whose launch (argv, environment) changed
        under either are restarted; other setting changes apply at the next start."""
        async with self._reload_lock:
            began = time.perf_counter()
            try:
                await asyncio.to_thread(self._reread_settings)
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
                    plan = await self._plan(name)
                    await self._start_exclusive(plan)
                except ProxyError:
                    return  # recorded in failures; the next request tries again and gets the diagnosis
                self.note(name, "restarted", reason)
        finally:
            self._restarts.pop(name, None)

    # ---- backends ---------------------------------------------------------------------------------------------------
    def _lock(self, name: str) -> asyncio.Lock:
        """Starts and stops of one exclusive group (or of one model outside groups) happen one at a time."""
        group = exclusive_group(self.routes.by_name.get(name))
        return self._locks[f"group:{group}" if group else f"model:{name}"]

    async def _plan(self, name: str) -> LaunchPlan:
        """The model's launch plan, made in a worker thread: on a cache miss it runs the program's `--help` (seconds;
        22 s for vLLM), during which every other request, `/health` and the admin calls must still be answered."""
        entry = self.routes.by_name.get(name)
        if entry is None:
            raise ProxyError(404, f"model {name!r} is no longer in the registry", "model_not_found")
        try:
            return await asyncio.to_thread(launch_plan, entry, self.settings)
        except RegistryError as exc:
            raise ProxyError(503, f"model {name!r} cannot be started: {exc}", "backend_config_error",
                             model=name) from exc

    def admit(self, name: str) -> None:
        """Count one more request for `name` (call `leave` when it ends); 429 when its max_concurrency is reached."""
        limit = ((self.routes.by_name.get(name) or {}).get("backend_config") or {}).get("max_concurrency")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 and self.admitted[name] >= limit:
            raise ProxyError(429, f"model {name!r} already has {limit} requests in flight (its "
                                  f"backend_config.max_concurrency); retry shortly", "concurrency_limit",
                             headers={"Retry-After": "1"}, model=name)
        self.admitted[name] += 1

    def leave(self, name: str) -> None:
        self.admitted[name] -= 1
        if self.admitted[name] <= 0:
            del self.admitted[name]

    async def acquire(self, name: str) -> Running:
        """A ready backend for `name` with this request counted in flight; starts it (or restarts it) if needed.
        A caller that gives up (its client left) does not cancel the start: later requests want it too."""
        waiting_since = time.monotonic()
        while True:
            run = self.running.get(name)
            if run is not None and run.usable():
                run.in_flight += 1
                run.drained.clear()
                run.last_request_at = time.time()
                return run
            await asyncio.shield(self._spawn(self._ensure(name, waiting_since)))

    def release(self, run: Running) -> None:
        run.in_flight -= 1
        run.last_used = time.monotonic()
        if run.in_flight == 0:
            run.drained.set()

    async def _ensure(self, name: str, waiting_since: float) -> None:
        await self._plan(name)  # an entry that cannot launch fails before waiting for anything
        async with self._lock(name):
            run = self.running.get(name)
            if run is not None and run.usable():
                return
            plan = await self._plan(name)  # the served snapshot may have changed while we waited
            failure = self.failures.get(name)
            if failure and failure.at >= waiting_since and failure.signature == plan.signature:
                raise failure.error  # the start this request waited for failed: same answer, no second try
            if run is not None:
                await self._stop(name, drain=True, why=run.stale or run.broken or "not answering")
            await self._start_exclusive(plan)

    async def _start_exclusive(self, plan: LaunchPlan) -> None:
        """Stop the other running members of the plan's exclusive group, then start it (caller holds the lock)."""
        group = exclusive_group(plan.entry)
        if group:
            for other in [n for n, r in self.running.items() if n != plan.name
                          and exclusive_group(self.routes.by_name.get(n) or r.handle.plan.entry) == group]:
                await self._stop(other, drain=True, why=f"exclusive group {group!r}: starting {plan.name}")
        await self._start(plan)

    async def _start(self, plan: LaunchPlan) -> None:
        run: Running | None = None
        try:
            handle = await asyncio.to_thread(self._launch, plan)
            run = self.running[plan.name] = Running(handle, self.routes.revision)
            self.note(plan.name, "starting", shlex.join(plan.argv) or f"Ollama model {plan.ollama_model}")
            self.starts[plan.name] += 1
            await asyncio.to_thread(self.supervisor.wait_ready, handle, None, None, self._cancel)
        except BackendStartError as exc:
            if run is not None and self.running.get(plan.name) is run:
                del self.running[plan.name]
            # the reason and modelreg's diagnosis for every client; the argv, the log and the log lines the
            # diagnosis quotes for the admin token only
            details = exc.to_dict()
            public = {k: details[k] for k in ("name", "reason", "exit_code", "timed_out")}
            public["diagnosis"] = [{k: v for k, v in f.items() if k != "evidence"} for f in details["diagnosis"]]
            error = ProxyError(503, str(exc), "backend_start_failed", private=details, model=plan.name, **public)
            self.failures[plan.name] = Failure(plan.signature, time.monotonic(), error)
            self.note(plan.name, "start failed", exc.reason)
            raise error from exc
        run.ready = True
        run.last_used = time.monotonic()
        self.failures.pop(plan.name, None)
        self.note(plan.name, "ready", f"pid {handle.pid}, {handle.seconds_to_ready or 0:.2f} s")
        if self._mark_stale():  # a reload while it started may already have changed its entry
            self._schedule_restarts(now=False)

    def _launch(self, plan: LaunchPlan) -> Backend:
        handle = self.supervisor.start(plan)
        if self._cancel.is_set():  # shutdown began while it spawned: stop_all may have missed it
            self.supervisor.stop(handle)
            raise BackendStartError("the proxy is shutting down", plan, diagnosis=[])
        return handle

    # ---- live control ---------------------------------------------------------------------------------------------
    async def unload(self, name: str) -> bool:
        """Stop `name` now (requests in flight end with an error); a start in progress is stopped too.
        False when it was not running."""
        run = self.running.get(name)
        if run is None:
            return False
        if not run.ready:  # starting: the start holds the lock; stopping its process ends the start
            run.stopping = True
            await asyncio.to_thread(self.supervisor.stop, run.handle)
            self.note(name, "stopped", "unloaded while starting")
            return True
        async with self._lock(name):
            if self.running.get(name) is not run:
                return False
            await self._stop(name, drain=False, why="unloaded")
        return True

    async def unload_all(self) -> list[str]:
        names = sorted(self.running)
        stopped = await asyncio.gather(*(self.unload(name) for name in names))
        return [name for name, done in zip(names, stopped) if done]

    async def restart(self, name: str) -> Running:
        """Stop `name` if it runs, start it again and wait until it is ready (starts it when it was not running)."""
        async with self._lock(name):
            plan = await self._plan(name)
            if name in self.running:
                await self._stop(name, drain=False, why="restart requested")
            await self._start_exclusive(plan)
            self.note(name, "restarted", "requested")
            return self.running[name]

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
        self.note(name, "stopped", why)

    def _idle_ttl(self, name: str, run: Running) -> float | None:
        return idle_ttl(self.routes.by_name.get(name) or run.handle.plan.entry, self.settings)

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
            "backends": self.running_status(),
            "failures": {name: {"message": f.error.message, **f.error.details, **f.error.private}
                         for name, f in sorted(self.failures.items())},
            "warnings": list(self.routes.warnings),
            "events": list(self.events),
            "models": len(self.routes.by_name),
            "config_dir": str(self.registry.config_dir),
            "profile": self.registry.profile,
            "pid": os.getpid(),
        }

    def running_status(self) -> list[dict[str, Any]]:
        """What `GET /admin/running` (and `modelreg ps`) shows: every backend this proxy runs or is starting."""
        return [self.backend_status(name, run) for name, run in sorted(self.running.items())]

    def backend_status(self, name: str, run: Running) -> dict[str, Any]:
        plan = run.handle.plan
        return {"name": name, "backend": plan.backend, "pid": run.handle.pid, "port": plan.port, "argv": plan.argv,
                "state": run.state, "idle_ttl": self._idle_ttl(name, run),
                "started_at": _iso(run.handle.started_at), "ready": run.ready, "stopping": run.stopping,
                "stale": bool(run.stale),
                "stale_reason": run.stale, "in_flight": run.in_flight,
                "last_request_at": _iso(run.last_request_at), "revision": run.revision, "base_url": plan.base_url,
                "served_model_id": plan.served_model_id, "api_key_env": plan.api_key_env,
                "log_path": str(run.handle.log_path)}
