"""What a streamed request shows while its model starts (setting `loading_state`): progress read from the backend's
log as `reasoning_content` chunks, `: loading` comments, or nothing; the progress parsed from real backends' logs."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from modelreg.proxy.loading import LoadWatch, message_of
from modelreg.registry import Registry
from support import chat_body, free_port
from support.gui_servers import start_proxy
from support.hosts import LITELLM, LiteLLMProcess
from support.proxy_server import ProxyServer, layers, model, set_settings
from support.real_backends import LLAMA_SERVER, clean_llama_env, require
from support.tiny_gguf import tiny_entry, write_tiny_gguf

FIXTURES = Path(__file__).parent / "fixtures" / "loading"


def events_of(reply: httpx.Response) -> list[str]:
    return [line for line in reply.iter_lines() if line]


def reasoning_of(lines: list[str]) -> tuple[str, list[dict]]:
    """The reasoning text of the loading chunks, and the other (answer) chunks, in order; fails on a loading chunk
    after the answer began."""
    reasoning, answer = "", []
    for line in lines:
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        choice = chunk["choices"][0] if chunk.get("choices") else {}
        text = (choice.get("delta") or choice).get("reasoning_content")
        if text is not None:
            assert not answer, "a loading chunk after the answer began"
            reasoning += text
        else:
            answer.append(chunk)
    return reasoning, answer


# ---- the three modes, with the vLLM stand-in taking 1.5 s to load ------------------------------------------------
def test_reasoning_chunks_carry_the_progress_then_the_answer_follows(registry_dir, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "1.5")
    layers(registry_dir, model("m"))  # loading_state: its default, reasoning
    with ProxyServer(registry_dir, loading_interval=0.2) as server:
        began = time.monotonic()
        with server.http.stream("POST", "/v1/chat/completions", json=chat_body("m", 3, stream=True)) as reply:
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
            lines = reply.iter_lines()
            first = json.loads(next(lines)[6:])
            assert time.monotonic() - began < 1.5  # at once, while the model still loads
            rest = [line for line in lines if line]
    assert first["object"] == "chat.completion.chunk" and first["model"] == "m"
    assert first["choices"][0]["delta"]["reasoning_content"] == "Loading m…\n"
    assert first["choices"][0]["finish_reason"] is None
    assert not [line for line in rest if line.startswith(":")]  # no comments in this mode
    reasoning, answer = reasoning_of(rest)
    # the stand-in's log line, with the seconds since the request came, then the start's end
    assert "] INFO vLLM API server version 0.0.0-standin" in reasoning or "] INFO args:" in reasoning
    assert reasoning.count(".") >= 3 and "\nm ready after " in reasoning
    assert rest[-1] == "data: [DONE]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in answer if c.get("choices")) == \
        "word0 word1 word2 "


def test_a_text_completion_gets_text_completion_chunks_and_other_streams_get_comments(registry_dir, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "1")
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir, loading_interval=0.2) as server:
        body = {"model": "m", "prompt": "hi", "max_tokens": 2, "stream": True}
        with server.http.stream("POST", "/v1/completions", json=body) as reply:
            lines = events_of(reply)
        first = json.loads(lines[0][6:])
        assert first["object"] == "text_completion"
        assert first["choices"][0]["text"] == "" and first["choices"][0]["reasoning_content"] == "Loading m…\n"
        server.admin("POST", "/admin/unload/m")
        body = {"model": "m", "input": "hi", "stream": True}  # Responses: its events are not OpenAI chunks
        with server.http.stream("POST", "/v1/responses", json=body) as reply:
            lines = events_of(reply)
        assert lines[0] == ": loading m" and not any("reasoning_content" in line for line in lines)


def test_off_sends_nothing_until_the_answer_and_a_model_may_choose_otherwise(registry_dir, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "1")
    layers(registry_dir, model("quiet"), model("chatty", loading_state="comments"))
    set_settings(registry_dir, loading_state="off")
    with ProxyServer(registry_dir, loading_interval=0.2) as server:
        began = time.monotonic()
        with server.http.stream("POST", "/v1/chat/completions", json=chat_body("quiet", 2, stream=True)) as reply:
            lines = reply.iter_lines()
            first = next(lines)
            assert time.monotonic() - began >= 1  # headers and all wait for the backend
            rest = [first, *(line for line in lines if line)]
        assert not [line for line in rest if line.startswith(":")]
        reasoning, answer = reasoning_of(rest)
        assert reasoning == "" and answer[0]["choices"][0]["delta"]["content"] == "word0 "
        with server.http.stream("POST", "/v1/chat/completions", json=chat_body("chatty", 2, stream=True)) as reply:
            lines = events_of(reply)
        assert lines[0] == ": loading chatty" and reasoning_of(lines)[0] == ""


def test_a_bad_loading_state_is_refused_with_the_values_to_use(registry_dir):
    layers(registry_dir, model("m", loading_state="loud"))
    problems = Registry(registry_dir).validate().errors
    assert any("backend_config.loading_state" in p and "reasoning, comments or off" in p for p in problems), problems


# ---- progress read from real backends' logs -----------------------------------------------------------------------
def grow(log: Path, data: bytes, watch: LoadWatch) -> str:
    with open(log, "ab") as handle:
        handle.write(data)
    watch.look()
    return watch.status()


def test_progress_from_a_real_vllm_start(tmp_path):
    """vLLM 0.32 (CPU) starting the tiny model, as it logged it: the tqdm bar of the weights, then the next step."""
    real = (FIXTURES / "vllm-start.log").read_bytes()
    log = tmp_path / "m.log"
    log.write_bytes(b"the previous start's log\n")
    watch = LoadWatch(log)
    assert grow(log, b"", watch) == ""  # the old log says nothing about this start
    before_bar, _, after = real.partition(b"\rLoading safetensors")
    assert grow(log, before_bar, watch).startswith("Auto-prefetch is disabled")
    empty, full, after = (b"\rLoading safetensors" + after).split(b"\n", 2)  # tqdm's bar at 0 %, at 100 %
    assert grow(log, empty + b"\n", watch) == "Loading safetensors checkpoint shards 0 % (0/1)"
    assert grow(log, full + b"\n", watch) == "Loading safetensors checkpoint shards 100 % (1/1)"
    weights, _, rest = after.partition(b"Loading weights took 0.00 seconds\n")
    assert grow(log, weights + b"Loading weights took 0.00 seconds\n", watch) == "Loading weights took 0.00 seconds"
    assert grow(log, rest, watch) == "Starting vLLM server on http://0.0.0.0:18779"


def test_progress_from_a_real_llama_server_start_and_llama_cpp_dots(tmp_path):
    """llama-server (llama.cpp of llama-cpp-python 0.3.36) starting the tiny GGUF: its default log has no percentage,
    its stage lines say where it is. Builds that print the load progress write a dot per percent (llama.cpp's
    default progress callback, src/llama.cpp), and a rotated log is read from its start."""
    log = tmp_path / "m.log"
    watch = LoadWatch(log)
    real = (FIXTURES / "llama-server-start.log").read_text()
    head = real.split("init: llama threadpool")[0]
    assert grow(log, head.encode(), watch) == "srv    load_model: loading model '/models/tiny.gguf'"
    assert grow(log, real[len(head):].encode(), watch) == "srv  llama_server: listening on http://127.0.0.1:18777"
    log.rename(tmp_path / "m.log.1")  # a new start rotates the log
    log.write_text("0.00.007.469 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)\n")
    assert grow(log, b"", watch) == "load_tensors: loading model tensors, this can take a while... (load_mode = mmap)"
    assert grow(log, b"." * 42, watch) == "loading tensors 42 %"
    assert grow(log, b"." * 58 + b"\n", watch) == "loading tensors 100 %"
    assert grow(log, b"0.00.090.100 I srv  llama_server: model loaded\n", watch) == "srv  llama_server: model loaded"


@pytest.mark.parametrize("line,message", [
    ("(APIServer pid=2629) INFO 12-05 18:04:34 [api_utils.py:347]        █     █     █▄   ▄█", ""),
    ("(APIServer pid=2629) INFO 12-05 18:04:56 [launcher.py:195] Route: /health, Methods: GET", ""),
    ("W1205 18:04:33.938000 2629 torch/_library/triton.py:53] Triton not available, find_triton_kernels = []",
     "Triton not available, find_triton_kernels = []"),
    ("0.00.002.570 W srv  llama_server: security: no API key is set", "srv  llama_server: security: no API key is set"),
    ("...................", ""), ("   ", ""), ("x" * 300, "x" * 159 + "…")])
def test_a_log_line_loses_its_prefix_and_empty_ones_say_nothing(line, message):
    assert message_of(line) == message


# ---- acceptance: through the real LiteLLM proxy, a client with a 5 s timeout, a real llama-server taking 8 s -------
SLOW_START = 8


def slow_llama_server(folder: Path) -> Path:
    """The real llama-server behind a wrapper that says so in the log and waits 8 s before it starts (its `--help`,
    which modelreg reads for the flag catalogue, answers at once)."""
    wrapper = folder / "llama-server-slow"
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" --help "*) ;; *) echo "wrapper: waiting {SLOW_START} s for the '
                       f'GPU"; sleep {SLOW_START};; esac\nexec "{require(LLAMA_SERVER)}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.llama_server
@pytest.mark.timeout(300)
def test_through_the_real_litellm_proxy_a_5_s_client_outlives_an_8_s_start(tmp_path):
    if not LITELLM.exists():
        pytest.skip(f"{LITELLM} is missing: `make backends` installs it")
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "stop_grace": 2, "proxy_api_keys": ["sk-proxy"],
        "executables": {"llama.cpp": str(slow_llama_server(tmp_path))}}))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    entries = []
    for name, config in (("slow", {}), ("slow-comments", {"loading_state": "comments"})):
        entry = {**tiny_entry(gguf, name=name, extra_args=["-c", "512"]), "backend": "llama.cpp"}
        entry["backend_config"].update(config)
        entries.append(entry)
    (folder / "model_registry.curated.json").write_text(json.dumps(entries))
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    gateway_config = tmp_path / "litellm.yaml"
    gateway_config.write_text(json.dumps({"model_list": [
        {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": proxy.url + "/v1",
                                                "api_key": "sk-proxy", "timeout": 5, "stream_timeout": 5}}
        for name in ("slow", "slow-comments")]}))
    gateway = LiteLLMProcess(gateway_config, free_port(), tmp_path / "litellm.log")
    try:
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.master_key, timeout=5, max_retries=0)
        began = time.monotonic()
        reasoning, content = "", ""
        for chunk in sdk.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=4, stream=True):
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None:
                reasoning += getattr(delta, "reasoning_content", None) or ""
                content += delta.content or ""
                assert not (content and getattr(delta, "reasoning_content", None)), "loading note after the answer"
        took = time.monotonic() - began
        assert took >= SLOW_START, took  # it did wait for the start, past the client's 5 s
        assert reasoning.startswith("Loading slow…") and f"wrapper: waiting {SLOW_START} s for the GPU" in reasoning
        assert "slow ready after" in reasoning and content  # the answer followed in the same stream
        with pytest.raises(openai.APITimeoutError):  # the finding: comments do not reach the client
            list(sdk.chat.completions.create(model="slow-comments", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=4, stream=True))
    finally:
        gateway.stop()
        proxy.stop()
