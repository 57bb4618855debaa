"""The launch test end to end: the real llama-cpp-python server with the tiny model, the vLLM stand-in, Ollama."""
from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import httpx
import psutil
import pytest

from modelreg.errors import BadInput
from modelreg.jobs import JobRegistry
from modelreg.launch.running.launch_test import ask, launch_test, start_launch_test_job
from modelreg.registry import Registry
from modelreg.settings import Settings
from support import free_port
from support.fake_ollama import FakeOllama
from support.layers import write_layers
from support.tiny_gguf import tiny_entry


def gone(pid: int | None) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.server
def test_tiny_model_starts_answers_and_stops(tiny_model, tmp_path):
    streamed: list[str] = []
    seen: dict = {}

    def on_ready(backend):
        seen["cmdline"] = open(f"/proc/{backend.pid}/cmdline").read().split("\0")[:-1]
        seen["models"] = httpx.get(backend.plan.base_url + "/v1/models").json()

    entry = tiny_entry(tiny_model, extra_args=["--n_ctx", "768"])
    result = launch_test(entry, Settings(), tmp_path / "logs", timeout=120, on_log=streamed.append,
                         on_ready=on_ready, max_tokens=8)
    assert result.ok, result.error
    assert result.reply and result.reply.isascii() and result.reply.strip()
    assert 0 < result.seconds_to_ready <= result.seconds_to_first_response
    assert seen["cmdline"] == result.argv
    assert seen["models"]["data"][0]["id"] == entry["name"]
    assert result.context_size == 768  # the server's own report of the curated --n_ctx
    assert "n_ctx" in "".join(streamed)  # the log was streamed while it started
    assert Path(result.log_path).parent == tmp_path / "logs" and "n_ctx" in Path(result.log_path).read_text()
    assert result.diagnosis == [] and result.error is None
    assert gone(result.pid)


@pytest.mark.server
def test_job_streams_the_log_while_it_runs(tiny_model, tmp_path):
    folder = write_layers(tmp_path / "configs", [], [tiny_entry(tiny_model)])
    registry = Registry(folder)
    job = start_launch_test_job(JobRegistry(), registry, tiny_entry(tiny_model)["name"], timeout=120)
    collected = []
    while job.running:
        collected.append("".join(job.lines()))
        time.sleep(0.05)
    assert job.wait(10)
    result = job.result
    assert result.ok, result.error
    assert "llama_cpp.server" in "".join(job.lines())
    assert any(collected), "nothing of the log was visible while the test ran"
    assert gone(result.pid)


@pytest.mark.server
def test_a_broken_model_file_fails_at_once_with_the_servers_own_words(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(64))
    result = launch_test(tiny_entry(broken), Settings(), tmp_path / "logs", timeout=120)
    assert not result.ok
    assert result.exit_code not in (None, 0)
    assert "exited during startup" in result.error
    assert result.log_tail and str(broken) in (result.log_tail + result.error + " ".join(result.argv))
    assert result.seconds_to_ready is None and gone(result.pid)


def test_bad_extra_args_raise_before_anything_starts(tiny_model, tmp_path):
    with pytest.raises(BadInput, match="`--port` is set by the launcher from backend_config.port"):
        launch_test(tiny_entry(tiny_model, extra_args=["--port", "1"]), Settings(), tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def vllm_entry(port: int, **fields) -> dict:
    return {"name": "qwen2.5-vl-7b-instruct_(AWQ)", "backend": "vllm",
            "backend_config": {"port": port, "model_path": "/models/Qwen2.5-VL-7B-Instruct-AWQ",
                               "extra_args": ["--max-model-len", "4096", "--enforce-eager", "--trust-remote-code"]},
            **fields}


def test_vllm_argv_readiness_and_vision_request(standin_vllm, tmp_path, monkeypatch):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "0.5")
    settings = Settings(executables={"vllm": str(standin_vllm)})
    result = launch_test(vllm_entry(free_port(), capabilities={"vision": True}), settings, tmp_path / "logs",
                         prompt="What colour is this?")
    assert result.ok, result.error
    events = [json.loads(line) for line in record.read_text().splitlines()]
    started, request = events[0], events[1]["body"]
    assert started["argv"][1:] == result.argv[1:]  # the stand-in got exactly the argv the launcher built
    assert result.context_size == 4096  # vLLM's /v1/models max_model_len
    assert result.seconds_to_ready >= 0.5 and result.reply == "standin reply"
    text, image = request["messages"][0]["content"]
    assert text == {"type": "text", "text": "What colour is this?"}
    png = base64.b64decode(image["image_url"]["url"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    assert request["max_tokens"] == 16 and request["model"] == "qwen2.5-vl-7b-instruct_(AWQ)"
    assert gone(started["pid"])


def test_vllm_failure_result_has_exit_code_log_tail_and_diagnosis(standin_vllm, tmp_path, monkeypatch):
    # https://github.com/vllm-project/vllm/issues/22231
    failure = ("ValueError: Model architectures ['Qwen3ForCausalLM'] are not supported for now. Supported "
               "architectures: ['AquilaModel', 'AquilaForCausalLM', 'ArcticForCausalLM']")
    (tmp_path / "replay.log").write_text(failure + "\n")
    monkeypatch.setenv("STANDIN_FAIL_LOG", str(tmp_path / "replay.log"))
    result = launch_test(vllm_entry(free_port()), Settings(executables={"vllm": str(standin_vllm)}),
                         tmp_path / "logs")
    assert not result.ok and result.exit_code == 1
    assert failure in result.log_tail
    assert [d["rule"] for d in result.diagnosis] == ["unknown_architecture"]


@pytest.fixture
def ollama_daemon(tiny_model, tmp_path):
    with FakeOllama(tmp_path / "ollama-models") as daemon:
        daemon.install("qwen3:8b", tiny_model.read_bytes())
        yield daemon


def test_ollama_model_runs_in_the_daemon_with_the_entrys_options(ollama_daemon, tmp_path):
    entry = {"name": "qwen3_8b_(Q4_K_M)", "backend": "ollama", "served_model_id": "qwen3:8b",
             "backend_config": {"port": 11434, "model_path": "ollama:/qwen3:8b", "host": "imageworks-ollama",
                                "extra_args": ["--num-ctx", "4096", "--num-gpu", "35"]}}
    result = launch_test(entry, Settings(ollama_host=ollama_daemon.host), tmp_path / "logs", max_tokens=8)
    assert result.ok, result.error
    assert result.argv == [] and result.reply == "hello from ollama"
    (load_path, load), (chat_path, chat), (unload_path, unload) = [(p, b) for _, p, b in ollama_daemon.requests]
    assert load_path == "/api/generate" and load["options"] == {"num_ctx": 4096, "num_gpu": 35}
    assert chat_path == "/api/chat" and chat["options"] == {"num_ctx": 4096, "num_gpu": 35, "num_predict": 8}
    assert unload_path == "/api/generate" and unload["keep_alive"] == 0


def test_ollama_unknown_model_is_a_failed_start(ollama_daemon, tmp_path):
    entry = {"name": "missing", "backend": "ollama", "served_model_id": "nope:1b", "backend_config": {}}
    result = launch_test(entry, Settings(ollama_host=ollama_daemon.host), tmp_path / "logs")
    assert not result.ok and "did not load nope:1b" in result.error and "not found" in result.log_tail


@pytest.mark.server
def test_ask_and_port_in_use_against_the_shared_real_server(llama_server, tiny_model, tmp_path):
    assert ask(llama_server.plan, "Hello", max_tokens=4).isascii()
    taken = tiny_entry(tiny_model, name="second", port=llama_server.plan.port)
    result = launch_test(taken, Settings(), tmp_path / "logs")
    assert not result.ok and f"port {llama_server.plan.port}" in result.error
    assert f"pid {llama_server.pid} (" in result.error and "llama_cpp.server" in result.error
    assert [d["rule"] for d in result.diagnosis] == ["port_in_use"] and result.pid is None
    assert llama_server.exit_code() is None  # the running server was not disturbed
