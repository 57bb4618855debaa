"""llama-cpp-python's server ends a running stream when another request arrives, unless `--interrupt_requests false`:
the launcher passes that by default, so two clients of one model both get whole answers (real server, tiny GGUF)."""
from __future__ import annotations

import json
import threading

import httpx
import pytest

from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.supervisor import Supervisor
from modelreg.settings import Settings
from support.tiny_gguf import tiny_entry

pytestmark = pytest.mark.server


def stream(base_url: str, model: str, started: threading.Event | None, out: list) -> None:
    """One streamed chat completion; appends its last finish_reason (None when the stream was cut)."""
    body = {"model": model, "stream": True, "max_tokens": 400, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story."}]}
    finish = None
    try:
        with httpx.stream("POST", base_url + "/v1/chat/completions", json=body, timeout=120) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                if started is not None:
                    started.set()
                choice = json.loads(line[6:])["choices"][0]
                finish = choice.get("finish_reason") or finish
    except httpx.RemoteProtocolError:  # the server closed the stream mid-answer
        finish = None
    out.append(finish)


def two_clients(tiny_model, tmp_path, extra_args: list[str]) -> list:
    """Start the server as the launcher does, stream two answers, the second starting while the first runs."""
    plan = launch_plan(tiny_entry(tiny_model, extra_args=["--n_ctx", "512", *extra_args]), Settings())
    supervisor = Supervisor(tmp_path / "logs", stop_grace=5)
    backend = supervisor.start_ready(plan, timeout=120)
    try:
        first: list = []
        second: list = []
        started = threading.Event()
        runner = threading.Thread(target=stream, args=(plan.base_url, plan.served_model_id, started, first))
        runner.start()
        assert started.wait(60)
        stream(plan.base_url, plan.served_model_id, None, second)
        runner.join(120)
        return first + second
    finally:
        supervisor.stop(backend)


def test_a_second_request_does_not_cut_the_first_stream(tiny_model, tmp_path):
    assert two_clients(tiny_model, tmp_path, []) == ["length", "length"]


def test_the_servers_own_default_cuts_it(tiny_model, tmp_path):
    """What users met before (8 of 20 concurrent streams cut through the proxy): `--interrupt_requests true`."""
    finishes = two_clients(tiny_model, tmp_path, ["--interrupt_requests", "true"])
    assert finishes[0] is None and finishes[1] == "length"
