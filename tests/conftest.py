"""Shared fixtures: the tiny GGUF model, a real llama-cpp-python server, the vLLM stand-in, leftover-process check."""
from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from hypothesis import settings as hypothesis_settings

from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.supervisor import Supervisor
from modelreg.settings import Settings
from support.tiny_gguf import tiny_entry, write_tiny_gguf

# CI replays the same examples every run (a failure there is reproducible); local runs keep exploring.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Every process the tests start inherits this marker; at the end no backend carrying it may still run.
SESSION_MARKER = "MODELREG_TEST_SESSION"
os.environ[SESSION_MARKER] = uuid.uuid4().hex
BACKEND_MARKERS = ("llama_cpp.server", "standin_vllm", "llama-server")
STANDIN_VLLM = Path(__file__).parent / "support" / "standin_vllm.py"


def _leftover_backend_groups() -> dict[int, list[str]]:
    """Process groups other than pytest's that hold a backend started by this test session."""
    marker, own_group = os.environ[SESSION_MARKER], os.getpgid(0)
    groups: dict[int, list[str]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.environ().get(SESSION_MARKER) != marker:
                continue
            pgid = os.getpgid(proc.pid)
            if pgid != own_group and any(m in cmdline for m in BACKEND_MARKERS):
                groups.setdefault(pgid, []).append(f"{proc.pid}: {cmdline[:120]}")
        except (psutil.Error, ProcessLookupError, OSError):
            continue
    return groups


@pytest.fixture(scope="session", autouse=True)
def no_leftover_backends():
    """Fails the session when a test left a backend process group running (and stops it)."""
    yield
    leftovers = _leftover_backend_groups()
    for pgid in leftovers:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftovers, f"backend processes left running after the tests: {leftovers}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny Llama GGUF (2 layers, 64 wide), generated once per session."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny-model") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def llama_server(tiny_model, tmp_path_factory):
    """A real llama-cpp-python server with the tiny model, started through the supervisor (a ready Backend)."""
    supervisor = Supervisor(tmp_path_factory.mktemp("llama-server-logs"), stop_grace=5)
    backend = supervisor.start_ready(launch_plan(tiny_entry(tiny_model), Settings()), timeout=120)
    yield backend
    supervisor.stop(backend)


@pytest.fixture
def standin_vllm(tmp_path) -> Path:
    """A `vllm` executable that runs the vLLM stand-in (vLLM itself needs a GPU)."""
    exe = tmp_path / "bin" / "vllm"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_VLLM}" "$@"\n')
    exe.chmod(0o755)
    return exe


@pytest.fixture
def registry_dir(tmp_path, standin_vllm, monkeypatch):
    """A registry folder whose `vllm` is the stand-in; backends record their argv and requests in `record`."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "executables": {"vllm": str(standin_vllm)}, "log_dir": str(tmp_path / "logs"), "stop_grace": 2}))
    monkeypatch.setenv("STANDIN_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.delenv("MODELREG_ADMIN_TOKEN", raising=False)
    return folder
