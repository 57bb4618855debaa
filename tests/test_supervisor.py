"""The supervisor against the vLLM stand-in: process groups, logs, state files, readiness, stop, orphans."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.logs import safe_name
from modelreg.launch.running.supervisor import Backend, BackendStartError, BackendState, Supervisor, ready_poll_delay
from modelreg.settings import Settings
from support import free_port

NAME = "qwen2.5-vl-7b-instruct_(AWQ)"
# https://github.com/QwenLM/Qwen3/issues/295
KV_LINE = ("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored "
           "in KV cache (7344). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
           "initializing the engine.")


def vllm_plan(exe: Path, name: str = NAME, port: int | None = None, extra_args=None, timeout: float = 60, **fields):
    entry = {"name": name, "backend": "vllm",
             "backend_config": {"port": port or free_port(), "model_path": "/models/Qwen2.5-VL-7B-Instruct-AWQ",
                                "extra_args": extra_args or ["--max-model-len", "4096", "--enforce-eager"],
                                "ready_timeout": timeout}, **fields}
    return launch_plan(entry, Settings(executables={"vllm": str(exe)}))


def group_alive(pgid: int) -> bool:
    return any(os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE
               for p in psutil.process_iter() if _same_group(p, pgid))


def _same_group(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid
    except (ProcessLookupError, PermissionError):
        return False


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(tmp_path / "logs", stop_grace=2)
    yield sup
    sup.stop_all(grace=0)


def test_safe_names_are_file_names_and_stay_distinct():
    assert safe_name("tiny") == "tiny"
    assert safe_name(NAME).startswith("qwen2.5-vl-7b-instruct_AWQ-")
    assert safe_name("a(b)") != safe_name("a[b]")
    assert "/" not in safe_name("org/model:tag")


def test_start_ready_stop_with_state_file_and_log(supervisor, standin_vllm):
    plan = vllm_plan(standin_vllm)
    backend = supervisor.start_ready(plan)
    assert httpx.get(plan.base_url + "/health").status_code == 200
    state = json.loads(supervisor.state_path(NAME).read_text())
    assert state["pid"] == backend.pid == state["pgid"] and state["port"] == plan.port
    assert state["argv"] == plan.argv and state["owner_pid"] == os.getpid()
    assert os.getpgid(backend.pid) == backend.pid != os.getpgid(0)  # its own process group
    log = supervisor.log_path(NAME)
    assert log.parent == supervisor.log_dir and log.name == safe_name(NAME) + ".log"
    assert "vLLM API server version" in log.read_text()
    assert [s.name for s in supervisor.running()] == [NAME]
    assert supervisor.stop(backend) is True
    assert not group_alive(backend.pid) and not supervisor.state_path(NAME).exists()
    assert supervisor.stop(NAME) is False


def test_connection_refused_while_loading_is_not_ready(supervisor, standin_vllm, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "1.5")
    backend = supervisor.start(vllm_plan(standin_vllm))
    time.sleep(0.3)
    assert supervisor.probe(backend) is False
    assert supervisor.wait_ready(backend) >= 1.5
    assert supervisor.probe(backend) is True


def test_exit_during_start_fails_at_once_with_code_log_tail_and_diagnosis(supervisor, standin_vllm, tmp_path,
                                                                          monkeypatch):
    replay = tmp_path / "vllm-failure.log"
    replay.write_text(f"INFO Loading model weights took 4.5 GB\n{KV_LINE}\n")
    monkeypatch.setenv("STANDIN_FAIL_LOG", str(replay))
    monkeypatch.setenv("STANDIN_FAIL_CODE", "3")
    plan = vllm_plan(standin_vllm, timeout=120)
    started = time.time()
    with pytest.raises(BackendStartError) as caught:
        supervisor.start_ready(plan)
    assert time.time() - started < 60  # did not sit out the 120 s ready timeout
    error = caught.value
    assert error.exit_code == 3 and "exited during startup with code 3" in str(error)
    assert KV_LINE in error.log_tail
    assert error.diagnosis[0].rule == "kv_cache_too_small"
    assert "--max-model-len 7168" in str(error)  # the one-line reason carries the fix
    assert error.to_dict()["argv"] == plan.argv
    assert not supervisor.state_path(NAME).exists()


def test_port_in_use_is_reported_before_launch(supervisor, standin_vllm, tmp_path, monkeypatch):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(BackendStartError) as caught:
            supervisor.start(vllm_plan(standin_vllm, port=port))
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in caught.value.reason
    assert caught.value.diagnosis[0].rule == "port_in_use"
    assert not record.exists() and not supervisor.state_path(NAME).exists()  # nothing was started


def test_missing_executable(supervisor, tmp_path):
    with pytest.raises(BackendStartError) as caught:
        supervisor.start(vllm_plan(tmp_path / "no-such-vllm"))
    assert caught.value.diagnosis[0].rule == "missing_executable"
    assert "No such file or directory" in caught.value.log_tail


def test_ready_timeout_stops_the_backend(supervisor, standin_vllm, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "60")
    backend = supervisor.start(vllm_plan(standin_vllm))
    with pytest.raises(BackendStartError) as caught:
        supervisor.wait_ready(backend, timeout=1)
    assert caught.value.timed_out and "not ready after 1 s" in caught.value.reason
    assert "modelreg: not ready after 1 s" in caught.value.log_tail
    assert not group_alive(backend.pid)


def test_sigkill_after_grace_reaches_the_whole_group(supervisor, standin_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_IGNORE_SIGTERM", "1")
    monkeypatch.setenv("STANDIN_CHILD", "1")
    backend = supervisor.start_ready(vllm_plan(standin_vllm))
    members = [p for p in psutil.process_iter() if _same_group(p, backend.pid)]
    assert len(members) >= 2  # the server and its engine-like child
    started = time.time()
    supervisor.stop(backend, grace=0.5)
    assert time.time() - started >= 0.5  # SIGTERM was ignored, so it took the SIGKILL
    assert not group_alive(backend.pid)
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in members)


def test_second_start_of_a_running_model_is_refused(supervisor, standin_vllm):
    supervisor.start_ready(vllm_plan(standin_vllm))
    with pytest.raises(BackendStartError, match="already running"):
        supervisor.start(vllm_plan(standin_vllm))


ORPHAN_MAKER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from modelreg.launch.planning.plan import launch_plan
    from modelreg.settings import Settings
    from modelreg.launch import lifetime
    from modelreg.launch.running.supervisor import Supervisor
    lifetime._prctl = lambda: None  # as where no parent-death signal exists (macOS): the backend survives the kill
    entry = {{"name": {name!r}, "backend": "vllm",
             "backend_config": {{"port": {port}, "model_path": "/m", "extra_args": []}}}}
    backend = Supervisor({log_dir!r}).start_ready(launch_plan(entry, Settings(executables={{"vllm": {exe!r}}})))
    print(backend.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the supervisor crashes; its backend keeps running
""")


def test_killed_supervisor_leaves_an_orphan_the_next_run_reports_and_stops(tmp_path, standin_vllm):
    log_dir, port = tmp_path / "logs", free_port()
    script = ORPHAN_MAKER.format(root=str(Path(__file__).resolve().parents[1]), name=NAME, port=port,
                                 log_dir=str(log_dir), exe=str(standin_vllm))
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -9, crashed.stderr
    pid = int(crashed.stdout.split()[0])
    assert group_alive(pid) and httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200

    supervisor = Supervisor(log_dir, stop_grace=2)
    [orphan] = supervisor.orphans()
    assert isinstance(orphan, BackendState) and orphan.pid == pid and orphan.port == port and orphan.name == NAME
    assert [o.pid for o in supervisor.stop_orphans()] == [pid]
    assert not group_alive(pid) and supervisor.orphans() == []
    assert not supervisor.state_path(NAME).exists()


def test_a_live_supervisors_backend_is_not_an_orphan(supervisor, standin_vllm, tmp_path):
    supervisor.start_ready(vllm_plan(standin_vllm))
    other = Supervisor(supervisor.log_dir)
    assert other.orphans() == [] and [s.name for s in other.running()] == [NAME]


def test_starting_a_model_stops_its_own_orphan_first(tmp_path, standin_vllm):
    log_dir, port = tmp_path / "logs", free_port()
    script = ORPHAN_MAKER.format(root=str(Path(__file__).resolve().parents[1]), name=NAME, port=port,
                                 log_dir=str(log_dir), exe=str(standin_vllm))
    pid = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout)
    supervisor = Supervisor(log_dir, stop_grace=2)
    try:
        backend = supervisor.start_ready(vllm_plan(standin_vllm, port=port))
        assert backend.pid != pid and not group_alive(pid)
    finally:
        supervisor.stop_all(grace=0)


class _Loading(BaseHTTPRequestHandler):
    """llama-server's /health: 503 while the model loads, then 200."""

    ready_at = 0.0

    def do_GET(self):
        status = 200 if self.path == "/health" and time.time() >= self.ready_at else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_llama_server_readiness_waits_through_503(supervisor, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Loading)
    _Loading.ready_at = time.time() + 60
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = {"name": "gemma_(Q4_K_M)", "backend": "llama.cpp",
                 "backend_config": {"port": server.server_address[1], "model_path": "/m.gguf"}}
        plan = launch_plan(entry, Settings(executables={"llama.cpp": "/bin/sleep"}))
        assert plan.ready_url.endswith("/health")
        backend = Backend(plan, tmp_path / "x.log", time.time())
        _Loading.ready_at = backend.started_at + 2.0  # "loading" for two seconds from the start
        assert supervisor.probe(backend) is False
        assert supervisor.wait_ready(backend, timeout=10) >= 0.5
    finally:
        server.shutdown()


def test_failure_without_the_backends_estimate_suggests_the_fit_estimate(supervisor, standin_vllm, tmp_path,
                                                                        monkeypatch):
    # https://github.com/vllm-project/vllm/issues/16118
    line = ("ERROR 04-05 01:12:55 [core.py:390] ValueError: To serve at least one request with the models's max seq "
            "len (1048576), (24.00 GiB KV cache is needed, which is larger than the available KV cache memory "
            "(9.97 GiB). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
            "engine.")
    (tmp_path / "replay.log").write_text(line + "\n")
    monkeypatch.setenv("STANDIN_FAIL_LOG", str(tmp_path / "replay.log"))
    facts = {"size_bytes": 6 * 1024 ** 3, "metadata": {"architecture": {
        "num_layers": 28, "num_kv_heads": 4, "head_dim": 128, "context_length": 1048576}}}
    plan = vllm_plan(standin_vllm, extra_args=["--enforce-eager"], **facts)
    assert plan.fit_max_context and plan.fit_max_context < 1048576
    with pytest.raises(BackendStartError) as caught:
        supervisor.start_ready(plan)
    [finding] = caught.value.diagnosis
    assert finding.rule == "kv_cache_too_small" and "fit estimate" in finding.suggestion
    assert f'"--max-model-len", "{plan.fit_max_context // 256 * 256}"' in finding.suggestion


def test_a_backend_that_dies_on_its_own_is_forgotten(supervisor, standin_vllm):
    backend = supervisor.start_ready(vllm_plan(standin_vllm))
    os.kill(backend.pid, 9)
    backend.popen.wait(timeout=10)
    assert supervisor.backend(NAME) is None and supervisor.backends() == []
    assert not supervisor.state_path(NAME).exists()
    assert supervisor.start_ready(vllm_plan(standin_vllm)).pid != backend.pid  # and can be started again


def test_backend_started_from_a_short_lived_thread_outlives_the_thread(supervisor, standin_vllm):
    """The kernel's parent-death signal follows the thread that forked: a backend started from a worker thread (as
    the proxy's request handlers and Streamlit's script runs do) must not die when that thread ends."""
    started = []
    worker = threading.Thread(target=lambda: started.append(supervisor.start_ready(vllm_plan(standin_vllm))))
    worker.start()
    worker.join(90)
    [backend] = started
    assert not worker.is_alive()
    time.sleep(0.5)  # time for a signal sent at the thread's end to arrive
    assert backend.popen.poll() is None and supervisor.probe(backend)


def test_readiness_probes_back_off_from_a_fast_start_to_a_short_cap():
    """5 ms while a small model may be ready any moment, 1 % of the wait after that, never over 20 ms: a vLLM start
    of a minute is seen at most 20 ms late."""
    delays = [ready_poll_delay(elapsed) for elapsed in (0, 0.3, 1, 1.5, 2, 10, 60, 600)]
    assert delays[0] == delays[1] == 0.005
    assert delays == sorted(delays) and delays[3] == 0.015
    assert max(delays) == delays[-1] == 0.02
