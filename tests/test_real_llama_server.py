"""The real llama.cpp `llama-server` (built by `make backends`) runs exactly what the registry says.

The story: scan a folder with the tiny GGUF; its stub gets backend llama.cpp (llama-server is installed); set
`-c 512` and a chat template file; the proxy starts the real server with those arguments (its /props reports them);
a rescan restarts nothing; `-c 768` restarts only that model; the launch test answers. Then the real server's own
error texts, and its diagnosis. llama-server loads the tiny model in milliseconds, so these tests are quick.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.launch_test import launch_test
from modelreg.launch.running.supervisor import BackendStartError, Supervisor
from modelreg.registry import Registry
from modelreg.settings import Settings
from support import free_port, wait_for
from support.gui_servers import modelreg, start_proxy
from support.real_backends import LLAMA_SERVER, clean_llama_env, llama_server_registry, require
from support.tiny_gguf import tiny_entry, write_tiny_gguf

pytestmark = pytest.mark.llama_server

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(modelreg(folder, *args), capture_output=True, text=True, timeout=120,
                          env=clean_llama_env())


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses a process group's processes listen on."""
    group = [p for p in psutil.process_iter() if _pgid(p.pid) == _pgid(pid)]
    return {(c.laddr.ip, c.laddr.port) for p in group for c in _connections(p) if c.status == psutil.CONN_LISTEN}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _connections(process: psutil.Process) -> list:
    try:
        return process.net_connections(kind="tcp")
    except psutil.Error:
        return []


@pytest.fixture
def registry_folder(tmp_path):
    """A registry whose llama.cpp is the real llama-server, and a models folder holding the tiny GGUF."""
    executable = require(LLAMA_SERVER)
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "proxy_url": "http://127.0.0.1:1", "log_dir": str(tmp_path / "logs"), "stop_grace": 2,
        "executables": {"llama.cpp": executable, "llama-cpp-python": sys.executable}}))
    models = tmp_path / "models" / "tiny"
    models.mkdir(parents=True)
    write_tiny_gguf(models / "tiny-llama-F32.gguf")
    return folder, tmp_path / "models"


def test_the_story_against_the_real_llama_server(registry_folder, tmp_path):
    folder, models = registry_folder
    scanned = cli(folder, "scan", str(models), "--json")
    assert scanned.returncode == 0, scanned.stderr
    name = json.loads(scanned.stdout)["stubs"][0]
    registry = Registry(folder)
    assert registry.entry(name)["backend"] == "llama.cpp"          # llama-server is installed: the stub says so
    port = free_port()  # free on this machine (the stub's port is free in the registry only)
    registry.set_value(name, "backend_config.port", port)
    template = tmp_path / "chat.jinja"
    template.write_text(TEMPLATE)
    for path, value in (("backend_config.extra_args", '["-c", "512"]'),
                        ("chat_template", json.dumps({"source": "external", "path": str(template)}))):
        done = cli(folder, "set", name, path, value)
        assert done.returncode == 0, done.stderr

    proxy_port = free_port()
    proxy = start_proxy(folder, proxy_port, tmp_path, clean_llama_env())
    try:
        reply = proxy.http.post("/v1/chat/completions", json={
            "model": name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
        first = proxy.backend(name)
        cmdline = psutil.Process(first["pid"]).cmdline()
        assert cmdline[-5:] == ["--jinja", "--chat-template-file", str(template), "-c", "512"]
        props = httpx.get(f"http://127.0.0.1:{port}/props", timeout=10).json()
        assert props["default_generation_settings"]["n_ctx"] == 512
        assert props["chat_template"] == TEMPLATE
        assert listening(first["pid"]) == {("127.0.0.1", port)}

        assert cli(folder, "scan", str(models)).returncode == 0    # a rescan changes no configuration
        assert wait_for(lambda: proxy.status()["revision"] == Registry(folder).snapshot().revision, timeout=10)
        again = proxy.backend(name)
        assert (again["pid"], again["stale"]) == (first["pid"], False)

        assert cli(folder, "set", name, "backend_config.extra_args", '["-c", "768"]').returncode == 0
        proxy.http.post("/v1/chat/completions", json={
            "model": name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        restarted = wait_for(lambda: (b := proxy.backend(name)) and b["pid"] != first["pid"] and b["ready"] and b,
                             timeout=30, what="the restart with -c 768")
        assert psutil.Process(restarted["pid"]).cmdline()[-2:] == ["-c", "768"]
        props = httpx.get(f"http://127.0.0.1:{port}/props", timeout=10).json()
        assert props["default_generation_settings"]["n_ctx"] == 768
    finally:
        proxy.stop()

    done = cli(folder, "launch-test", name, "--json", "--quiet")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"], done.stdout + done.stderr
    assert result["context_size"] == 768 and result["seconds_to_ready"] < 30 and result["reply"]


def test_readiness_waits_for_health_and_the_context_is_what_props_reports(tmp_path):
    """-c 384 runs with 512: llama-server pads its context to a multiple of 256, and the launch test says so."""
    settings = Settings(executables={"llama.cpp": require(LLAMA_SERVER)})
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    entry = {**tiny_entry(model, extra_args=["-c", "384"]), "backend": "llama.cpp"}
    result = launch_test(entry, settings, tmp_path / "logs", timeout=30)
    assert result.ok, result.error
    assert result.argv[-2:] == ["-c", "384"] and result.context_size == 512


def _start(plan, tmp_path) -> BackendStartError:
    with pytest.raises(BackendStartError) as failed:
        Supervisor(tmp_path / "logs", stop_grace=2).start_ready(plan, timeout=30)
    return failed.value


@pytest.mark.parametrize("change, rule, evidence", [
    (lambda plan, model: plan.argv + ["--ctx-sizee", "8"], "unknown_flag", "error: invalid argument: --ctx-sizee"),
    (lambda plan, model: plan.argv + ["-c"], "missing_value",
     'error while handling argument "-c": expected value for argument'),
    (lambda plan, model: [str(model) + ".gone" if a == str(model) else a for a in plan.argv], "model_not_found",
     "failed to open GGUF file"),
    (lambda plan, model: plan.argv + ["--chat-template-file", "/no/such.jinja"], "chat_template_missing",
     'error while handling argument "--chat-template-file"'),
])
def test_the_real_error_texts_are_diagnosed(tmp_path, change, rule, evidence):
    """The launcher refuses these before a start; here they reach the real server to prove the diagnosis matches
    what it really prints."""
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    plan = launch_plan({**tiny_entry(model, extra_args=[]), "backend": "llama.cpp"},
                       Settings(executables={"llama.cpp": require(LLAMA_SERVER)}))
    error = _start(dataclasses.replace(plan, argv=change(plan, model)), tmp_path)
    assert error.exit_code == 1
    finding = next(f for f in error.diagnosis if f.rule == rule)
    assert evidence in finding.evidence


def test_a_taken_port_is_diagnosed(tmp_path):
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    plan = launch_plan({**tiny_entry(model, extra_args=[]), "backend": "llama.cpp"},
                       Settings(executables={"llama.cpp": require(LLAMA_SERVER)}))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", plan.port))
        holder.listen()
        error = _start(dataclasses.replace(plan), tmp_path)
    assert any(f.rule == "port_in_use" for f in error.diagnosis), error


def test_llama_arg_environment_cannot_move_the_server(tmp_path, monkeypatch):
    """llama-server reads LLAMA_ARG_* variables; the launcher passes none that set where it listens or what it loads."""
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    plan = launch_plan({**tiny_entry(model, extra_args=[]), "backend": "llama.cpp"},
                       Settings(executables={"llama.cpp": require(LLAMA_SERVER)}))
    monkeypatch.setenv("LLAMA_ARG_HOST", "0.0.0.0")
    monkeypatch.setenv("LLAMA_ARG_PORT", str(free_port()))
    supervisor = Supervisor(tmp_path / "logs", stop_grace=2)
    backend = supervisor.start_ready(plan, timeout=30)
    try:
        assert listening(backend.pid) == {("127.0.0.1", plan.port)}
    finally:
        supervisor.stop(backend)


def _waves(url: str, model: str, waves: int, concurrency: int = 20) -> list[float]:
    """Seconds each wave of `concurrency` simultaneous chats took, on one client's keep-alive connections (the
    waves reuse them, as a busy client does); every answer must be a 200 from `model`."""
    import asyncio

    from support import chat_body

    async def run() -> list[float]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            async def one() -> None:
                reply = await client.post("/v1/chat/completions", json=chat_body(model, 1))
                assert reply.status_code == 200 and reply.json()["model"] == model, reply.text[:300]
            seconds = []
            for _ in range(waves):
                began = asyncio.get_running_loop().time()
                await asyncio.gather(*(one() for _ in range(concurrency)))
                seconds.append(asyncio.get_running_loop().time() - began)
            return seconds
    return asyncio.run(run())


def test_more_clients_than_slots_through_the_proxy_keep_the_backends_pace(tmp_path):
    """20 clients at once against `-np 4` (a few Open WebUI users, a batch script): each wave through the proxy takes
    about what it takes straight to the server. A proxy that sent requests on upstream connections no server thread
    reads would wait for a keep-alive to run out (seconds), far beyond the server's own time for a wave."""
    folder = llama_server_registry(tmp_path, ["-c", "4096", "-np", "4"])
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    try:
        _waves(proxy.url, "tiny", 1)  # starts the backend
        direct = _waves(proxy.backend("tiny")["base_url"], "tiny", 3)
        through = _waves(proxy.url, "tiny", 3)
    finally:
        proxy.stop()
    assert max(through) < 4 * max(direct) + 1.0, (through, direct)


def test_a_web_pages_fetch_gets_no_readable_answer_through_the_proxy(tmp_path):
    """The issue's attack, against the real llama-server (which copies any Origin into Access-Control-Allow-Origin):
    a page's POST, text/plain or JSON, is refused before a model starts, with no CORS header to read it by; the same
    POST straight to llama-server would be readable."""
    folder = llama_server_registry(tmp_path, ["-c", "512"])
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    evil = {"Origin": "http://evil.example"}
    try:
        for content_type in ("text/plain", "application/json"):
            refused = httpx.post(proxy.url + "/v1/chat/completions", content=body, timeout=60,
                                 headers={**evil, "Content-Type": content_type})
            assert refused.status_code == 403 and proxy.backend("tiny") is None, refused.text
            assert not [k for k in refused.headers if k.lower().startswith("access-control-")]
        relayed = httpx.post(proxy.url + "/v1/chat/completions", content=body, timeout=120,
                             headers={"Content-Type": "application/json"})
        assert relayed.status_code == 200 and relayed.json()["choices"]
        direct = httpx.post(proxy.backend("tiny")["base_url"] + "/v1/chat/completions", content=body, timeout=60,
                            headers={**evil, "Content-Type": "application/json"})
        assert direct.headers.get("access-control-allow-origin") == "http://evil.example"  # what the proxy strips
    finally:
        proxy.stop()
