"""Runs backends: one process group each, a log and a state file per backend, readiness, stop, orphans."""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import httpx
import psutil

from modelreg.errors import BadInput, RegistryError
from modelreg.launch.advice.diagnose import Finding, api_key_refused, diagnose
from modelreg.launch.backends import OLLAMA, SPECS
from modelreg.launch.lifetime import process_alive, tied_popen
from modelreg.launch.planning.plan import LaunchPlan
from modelreg.launch.running.logs import LogFollower, read_tail, resolve_log_dir, safe_name
from modelreg.store import atomic_write

if TYPE_CHECKING:
    from modelreg.registry import Registry

STATE_SUFFIX = ".state.json"
LogCallback = Callable[[str], None]


def backend_env(backend: str) -> dict[str, str]:
    """This process's environment, less the variables that would make the backend listen or load other than its
    argv says (llama_cpp.server reads HOST, PORT and CONFIG_FILE over its argv)."""
    unset = SPECS[backend].unset_env if backend in SPECS else ()
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "PYTHONUNBUFFERED": "1"}


def ready_poll_delay(elapsed: float) -> float:
    """Seconds until the next readiness probe of a backend started `elapsed` seconds ago: 5 ms at first (a small
    model is ready in a fraction of a second), growing with the wait to 1/100 of it, at most 20 ms. A start is then
    seen at most 1 % (and 20 ms) late: with a 50 ms cap `make bench` measured a real vLLM start seen 37 ms late
    (median), where a script polling every 10 ms sees it at once; a probe of a port that refuses costs well under a
    millisecond."""
    return min(0.02, max(0.005, elapsed / 100))


def port_holder(host: str, port: int) -> str | None:
    """None when `host:port` can be bound; else who holds it (pid and command when they can be seen)."""
    bind_host = "0.0.0.0" if host in ("", "0.0.0.0") else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not "in use"
        try:
            probe.bind((bind_host, port))
            return None
        except OSError:
            pass
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({shlex.join(proc.cmdline()[:4]) or proc.name()})"
    except (psutil.Error, OSError):
        pass
    return "another process"


@dataclass
class BackendState:
    """What a state file records about one running backend, so that a later run can find and stop it."""

    name: str
    backend: str
    pid: int
    pgid: int
    host: str
    port: int | None
    argv: list[str]
    started_at: float
    create_time: float
    log_path: str
    ready_url: str | None
    base_url: str
    signature: str
    owner_pid: int
    owner_create_time: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> "BackendState | None":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None


class BackendStartError(RegistryError):
    """A backend did not become ready; says why, with the argv, exit code, log tail and diagnosis."""

    def __init__(self, reason: str, plan: LaunchPlan, *, log_path: str | None = None, exit_code: int | None = None,
                 timed_out: bool = False, diagnosis: list[Finding] | None = None):
        self.reason, self.plan, self.log_path = reason, plan, log_path
        self.exit_code, self.timed_out = exit_code, timed_out
        self.log_tail = read_tail(log_path)
        self.diagnosis = diagnosis if diagnosis is not None else diagnose(
            read_tail(log_path, lines=2000, max_bytes=1 << 20), plan.entry, argv=plan.argv, timed_out=timed_out,
            fit_max_context=plan.fit_max_context)
        hint = f"; {self.diagnosis[0].summary}: {self.diagnosis[0].suggestion}" if self.diagnosis else ""
        super().__init__(f"model {plan.name!r} did not start: {reason}{hint}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.plan.name, "reason": self.reason, "argv": self.plan.argv, "exit_code": self.exit_code,
                "timed_out": self.timed_out, "log_path": self.log_path, "log_tail": self.log_tail,
                "diagnosis": [f.to_dict() for f in self.diagnosis]}


@dataclass
class Backend:
    """A backend this supervisor started (or runs through the Ollama daemon)."""

    plan: LaunchPlan
    log_path: Path
    started_at: float
    state: BackendState | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)
    ready: bool = False
    seconds_to_ready: float | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def pid(self) -> int | None:
        return self.state.pid if self.state else None

    def exit_code(self) -> int | None:
        """The exit code once the process has exited (None while it runs, and for Ollama)."""
        return self.popen.poll() if self.popen else None

    def to_dict(self) -> dict[str, Any]:
        """What a status page shows about it."""
        return {"name": self.name, "backend": self.plan.backend, "pid": self.pid, "port": self.plan.port,
                "argv": self.plan.argv, "started_at": self.started_at, "ready": self.ready,
                "seconds_to_ready": self.seconds_to_ready, "log_path": str(self.log_path),
                "signature": self.plan.signature}


def _group_members(pgid: int, since: float) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group that were started no earlier than `since`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for proc in psutil.process_iter(["pid", "status", "create_time"]):
        try:
            if (os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE
                    and proc.info["create_time"] >= since - 1):
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return members


_SELF_CREATE_TIME = psutil.Process().create_time()


class Supervisor:
    """Starts, watches and stops backends whose logs and state files live in `log_dir`."""

    def __init__(self, log_dir: str | os.PathLike, stop_grace: float = 10.0):
        self.log_dir = Path(log_dir)
        self.stop_grace = stop_grace
        self._backends: dict[str, Backend] = {}
        self._lock = threading.RLock()

    @classmethod
    def for_registry(cls, registry: Registry) -> "Supervisor":
        return cls(resolve_log_dir(registry.config_dir, registry.settings), registry.settings.stop_grace)

    # ---- paths and state files -------------------------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{safe_name(name)}.log"

    def state_path(self, name: str) -> Path:
        return self.log_dir / f"{safe_name(name)}{STATE_SUFFIX}"

    def states(self) -> list[BackendState]:
        """Every state file's content (live or not)."""
        if not self.log_dir.is_dir():
            return []
        return [s for p in sorted(self.log_dir.glob(f"*{STATE_SUFFIX}")) if (s := BackendState.load(p))]

    def is_alive(self, state: BackendState) -> bool:
        return bool(_group_members(state.pgid, state.create_time)) or process_alive(state.pid, state.create_time)

    def running(self) -> list[BackendState]:
        """Backends with a state file whose process group still runs (started by any supervisor)."""
        return [s for s in self.states() if self.is_alive(s)]

    def backend(self, name: str) -> Backend | None:
        """The backend this supervisor started under `name`, while it runs."""
        with self._lock:
            found = self._backends.get(name)
        if found is None:
            return None
        if found.plan.backend == OLLAMA or (found.state and self.is_alive(found.state)):
            return found
        self.stop(found, grace=0)  # it died on its own: reap it, clear its state file
        return None

    def backends(self) -> list[Backend]:
        with self._lock:
            names = list(self._backends)
        return [b for n in names if (b := self.backend(n))]

    def orphans(self) -> list[BackendState]:
        """Backends still running whose supervisor is gone (crashed or killed); state files of dead ones are removed."""
        found = []
        for state in self.states():
            if not self.is_alive(state):
                self.state_path(state.name).unlink(missing_ok=True)
            elif not process_alive(state.owner_pid, state.owner_create_time):
                found.append(state)
        return found

    def stop_orphans(self, grace: float | None = None) -> list[BackendState]:
        """Stop every orphan; returns what was stopped."""
        orphans = self.orphans()
        for state in orphans:
            self._stop_group(state, grace)
            self.state_path(state.name).unlink(missing_ok=True)
        return orphans

    # ---- start -------------------------------------------------------------------------------------------------
    def start(self, plan: LaunchPlan) -> Backend:
        """Start a backend without waiting for it (call wait_ready next); raises BackendStartError at once when the
        port is taken, the executable is missing, or the same model already runs."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(plan.name)
        with self._lock:
            self._refuse_duplicate(plan, log_path)
            self._rotate(log_path)
            if plan.backend == OLLAMA:
                _append(log_path, f"modelreg: loading {plan.ollama_model} on the Ollama daemon at {plan.base_url} "
                                  f"with options {json.dumps(plan.ollama_options, sort_keys=True)}\n")
                backend = Backend(plan, log_path, time.time())
                self._backends[plan.name] = backend
                return backend
            holder = port_holder(plan.host, plan.port or 0)
            if holder:
                _append(log_path, f"modelreg: port {plan.port} on {plan.host} is already in use by {holder}\n")
                raise BackendStartError(f"port {plan.port} on {plan.host} is already in use by {holder}", plan,
                                        log_path=str(log_path))
            backend = self._spawn(plan, log_path)
            self._backends[plan.name] = backend
            return backend

    def _refuse_duplicate(self, plan: LaunchPlan, log_path: Path) -> None:
        if self.backend(plan.name):
            raise BackendStartError("it is already running (started by this process); stop it first", plan,
                                    log_path=str(log_path), diagnosis=[])
        state = BackendState.load(self.state_path(plan.name))
        if state is None or not self.is_alive(state):
            self.state_path(plan.name).unlink(missing_ok=True)
            return
        if process_alive(state.owner_pid, state.owner_create_time):
            raise BackendStartError(f"it is already running as pid {state.pid}, started by pid {state.owner_pid}",
                                    plan, log_path=str(log_path), diagnosis=[])
        self._stop_group(state, None)  # an orphan of a crashed run: it holds the port (and maybe GPU memory)
        self.state_path(plan.name).unlink(missing_ok=True)

    @staticmethod
    def _rotate(log_path: Path) -> None:
        if log_path.exists():
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))

    def _spawn(self, plan: LaunchPlan, log_path: Path) -> Backend:
        started = time.time()
        with open(log_path, "ab") as log:
            log.write(f"modelreg: starting {plan.command_line()}\n".encode())
            log.flush()
            try:
                env = plan.process_env()  # the API key: only here, never in the log or argv
            except BadInput as exc:
                log.write(f"modelreg: {exc}\n".encode())
                raise BackendStartError(str(exc), plan, log_path=str(log_path), diagnosis=[]) from exc
            try:
                popen = tied_popen(plan.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True,
                                         env={**backend_env(plan.backend), **env})
            except OSError as exc:
                # the same words Python prints, so the log shows the cause like any other failure
                log.write(f"{type(exc).__name__}: {exc}\n".encode())
                log.flush()
                raise BackendStartError(f"cannot run {plan.argv[0]!r}: {exc.strerror}", plan,
                                        log_path=str(log_path)) from exc
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            create_time = started
        state = BackendState(
            name=plan.name, backend=plan.backend, pid=popen.pid, pgid=popen.pid, host=plan.host, port=plan.port,
            argv=plan.argv, started_at=started, create_time=create_time, log_path=str(log_path),
            ready_url=plan.ready_url, base_url=plan.base_url, signature=plan.signature, owner_pid=os.getpid(),
            owner_create_time=_SELF_CREATE_TIME)
        atomic_write(self.state_path(plan.name), json.dumps(state.to_dict(), indent=2).encode())
        return Backend(plan, log_path, started, state=state, popen=popen)

    # ---- readiness ---------------------------------------------------------------------------------------------
    def probe(self, backend: Backend, client: httpx.Client | None = None) -> bool:
        """One readiness check: the backend's ready URL answers 200 (Ollama: the daemon loaded the model).
        A 401/403 (a backend that wants another API key) raises BackendStartError: waiting would not help."""
        plan = backend.plan
        if plan.backend == OLLAMA:
            return self._ollama_load(backend)
        assert plan.ready_url is not None  # every process backend's plan has one
        try:
            headers = plan.auth_headers()
            if client is None:
                status = httpx.get(plan.ready_url, timeout=2.0, headers=headers).status_code
            else:
                status = client.get(plan.ready_url, headers=headers).status_code
        except httpx.HTTPError:
            return False  # connection refused while loading (vLLM, llama-cpp-python), or a slow answer
        if status in (401, 403):
            finding = api_key_refused(plan.name, plan.ready_url, status, bool(headers))
            _append(backend.log_path, f"modelreg: {finding.evidence}\n")
            self._forget(backend)
            raise BackendStartError(f"the backend refused the readiness probe with HTTP {status}", plan,
                                    log_path=str(backend.log_path), diagnosis=[finding])
        return status == 200

    def wait_ready(self, backend: Backend, timeout: float | None = None, on_log: LogCallback | None = None,
                   cancel: threading.Event | None = None) -> float:
        """Wait until the backend answers; returns seconds since its start. On exit, timeout or cancel the backend
        is stopped and BackendStartError (with exit code, log tail, diagnosis) is raised."""
        timeout = backend.plan.ready_timeout if timeout is None else timeout
        follower = LogFollower(backend.log_path)
        deadline = backend.started_at + timeout
        try:
            with httpx.Client(timeout=2.0) as client:
                while True:
                    ready = self.probe(backend, client)
                    if on_log:
                        _emit(follower, on_log)
                    if ready:
                        backend.ready = True
                        backend.seconds_to_ready = time.time() - backend.started_at
                        return backend.seconds_to_ready
                    code = backend.exit_code()
                    if code is not None:
                        self._forget(backend)
                        raise BackendStartError(f"the process exited during startup with code {code}",
                                                backend.plan, log_path=str(backend.log_path), exit_code=code)
                    if cancel is not None and cancel.is_set():
                        _append(backend.log_path, "modelreg: start cancelled\n")
                        self.stop(backend)
                        raise BackendStartError("the start was cancelled", backend.plan,
                                                log_path=str(backend.log_path), diagnosis=[])
                    if time.time() >= deadline:
                        _append(backend.log_path, f"modelreg: not ready after {timeout:g} s "
                                                  f"({backend.plan.ready_url or backend.plan.base_url})\n")
                        self.stop(backend)
                        raise BackendStartError(f"not ready after {timeout:g} s", backend.plan,
                                                log_path=str(backend.log_path), timed_out=True)
                    time.sleep(ready_poll_delay(time.time() - backend.started_at))
        finally:
            if on_log:
                _emit(follower, on_log)

    def start_ready(self, plan: LaunchPlan, timeout: float | None = None,
                    on_log: LogCallback | None = None) -> Backend:
        """start + wait_ready: a ready backend, or BackendStartError with nothing left running."""
        backend = self.start(plan)
        self.wait_ready(backend, timeout, on_log)
        return backend

    def _ollama_load(self, backend: Backend) -> bool:
        import ollama

        plan = backend.plan
        try:
            ollama.Client(host=plan.base_url, timeout=plan.ready_timeout).generate(
                model=plan.served_model_id, prompt="", options=plan.ollama_options or None)
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            message = getattr(exc, "error", None) or str(exc)
            _append(backend.log_path, f"modelreg: Ollama at {plan.base_url} refused {plan.ollama_model}: {message}\n")
            self._forget(backend)
            raise BackendStartError(f"the Ollama daemon at {plan.base_url} did not load {plan.ollama_model}: "
                                    f"{message}", plan, log_path=str(backend.log_path)) from exc
        _append(backend.log_path, f"modelreg: Ollama loaded {plan.ollama_model}\n")
        return True

    # ---- stop --------------------------------------------------------------------------------------------------
    def stop(self, target: Backend | str, grace: float | None = None) -> bool:
        """Stop a backend (by handle or model name): SIGTERM to its process group, SIGKILL after the grace period.
        True when something was running."""
        name = target if isinstance(target, str) else target.name
        with self._lock:
            backend = self._backends.pop(name, None)
        if backend and backend.plan.backend == OLLAMA:
            return self._ollama_unload(backend)
        state = backend.state if backend and backend.state else BackendState.load(self.state_path(name))
        if state is None:
            return False
        was_alive = self.is_alive(state)
        self._stop_group(state, grace, backend.popen if backend else None)
        self.state_path(name).unlink(missing_ok=True)
        return was_alive

    def stop_all(self, grace: float | None = None) -> None:
        """Stop every backend this supervisor started."""
        with self._lock:
            names = list(self._backends)
        for name in names:
            self.stop(name, grace)

    def _forget(self, backend: Backend) -> None:
        """Drop a backend that failed to start, making sure nothing of it is left running."""
        if backend.state:
            self.stop(backend)
        else:
            with self._lock:
                self._backends.pop(backend.name, None)

    def _stop_group(self, state: BackendState, grace: float | None, popen: subprocess.Popen | None = None) -> None:
        grace = self.stop_grace if grace is None else grace
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self._signal_group(state, sig):
                break
            deadline = time.time() + wait
            while time.time() < deadline:
                if popen is not None:
                    popen.poll()  # reap our child so it does not linger as a zombie
                if not self.is_alive(state):
                    if popen is not None:
                        popen.wait(timeout=5)
                    return
                time.sleep(0.02)
        if popen is not None and popen.poll() is None:
            popen.wait(timeout=5)

    def _signal_group(self, state: BackendState, sig: int) -> bool:
        if not self.is_alive(state):
            return False
        try:
            if _group_members(state.pgid, state.create_time):
                os.killpg(state.pgid, sig)
            else:
                os.kill(state.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _ollama_unload(self, backend: Backend) -> bool:
        import ollama

        try:
            ollama.Client(host=backend.plan.base_url, timeout=30).generate(model=backend.plan.served_model_id,
                                                                          prompt="", keep_alive=0)
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError):
            return False
        _append(backend.log_path, f"modelreg: Ollama unloaded {backend.plan.ollama_model}\n")
        return True


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _emit(follower: LogFollower, on_log: LogCallback) -> None:
    text = follower.read_new()
    if text:
        on_log(text)
