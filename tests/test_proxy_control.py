"""The proxy's relaying and control against the vLLM stand-in: cancellation, broken streams, loading comments,
concurrency limits, every routed path, OpenAI-shaped errors, proxy keys, CORS, upstream keys, and the admin client.

Real clients (the openai SDK, litellm) against the real llama-cpp-python server are in test_proxy_clients.py.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from modelreg.proxy.client import ProxyAdmin, ProxyRefused, ProxyUnreachable
from support import chat_body, free_port, post_and_leave, wait_for
from support.gui_servers import ProxyProcess
from support.proxy_server import ProxyServer, alive, layers, model, recorded, set_settings
from support.tiny_gguf import tiny_entry

UPSTREAM_KEY = "sk-upstream-3f9c2a7e51"
JSON_TYPE = {"Content-Type": "application/json"}


def aborted(tmp_path: Path) -> list[str]:
    return [r["aborted"] for r in recorded(tmp_path) if "aborted" in r]


def answer_line(line: str) -> bool:
    """Not a loading note (a `: loading` comment or a `reasoning_content` chunk of a cold start)."""
    return line.startswith("data: ") and '"reasoning_content"' not in line


def sse_lines(reply: httpx.Response, comments: bool = True) -> list[str]:
    """The stream's lines; `comments=False`: without the loading notes."""
    return [line for line in reply.iter_lines() if line and (comments or answer_line(line))]


@pytest.mark.parametrize("waited", [0.5, 0.0])  # after the proxy started watching for it to leave, and before
def test_a_client_that_leaves_a_non_streamed_request_aborts_it_at_the_backend(registry_dir, tmp_path, monkeypatch,
                                                                               waited):
    monkeypatch.setenv("STANDIN_REPLY_SECONDS", "30")
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        server.on_loop(server.proxy.pool.restart("m"))  # started, so the backend is answering when the client leaves
        post_and_leave(server.url + "/v1/chat/completions", chat_body("m"), waited=waited,
                       arrived=lambda: any("body" in r for r in recorded(tmp_path)))  # at the backend
        left = time.monotonic()
        wait_for(lambda: aborted(tmp_path), what="the backend to log the abort")
        print(f"\nbackend aborted {1000 * (time.monotonic() - left):.0f} ms after the client left")
        assert wait_for(lambda: server.backend("m")["in_flight"] == 0, what="in-flight count back to 0")
        assert "Aborted request chatcmpl-" in server.admin("GET", "/admin/logs/m").text


def test_a_client_that_leaves_a_stream_aborts_it_at_the_backend(registry_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_STREAM_CHUNKS", "300")
    monkeypatch.setenv("STANDIN_CHUNK_SECONDS", "0.1")
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        with server.http.stream("POST", "/v1/chat/completions", json=chat_body("m", stream=True)) as reply:
            lines = reply.iter_lines()  # held: dropping the iterator would close the response at once
            first = next(line for line in lines if answer_line(line))
            assert json.loads(first[6:])["choices"][0]["delta"]["content"] == "word0 "
            assert server.backend("m")["in_flight"] == 1
        wait_for(lambda: aborted(tmp_path), what="the backend to log the abort")
        wait_for(lambda: server.backend("m")["in_flight"] == 0, what="in-flight count back to 0")


def test_a_backend_dying_mid_stream_ends_the_stream_with_an_error_and_no_traceback(tmp_path, standin_vllm):
    config_dir = tmp_path / "configs"
    layers(config_dir, model("m"))
    (config_dir / "settings.json").write_text(json.dumps({
        "executables": {"vllm": str(standin_vllm)}, "log_dir": str(tmp_path / "logs"), "stop_grace": 2}))
    env = {**os.environ, "STANDIN_STREAM_CHUNKS": "5", "STANDIN_DIE_AFTER_CHUNKS": "2"}
    proxy = ProxyProcess(config_dir, free_port(), tmp_path / "proxy.log", env=env)
    try:
        for _ in range(3):  # each request starts the backend again: it died during the previous one
            with proxy.http.stream("POST", "/v1/chat/completions", json=chat_body("m", stream=True)) as reply:
                assert reply.status_code == 200
                lines = sse_lines(reply, comments=False)
            # the chunks the backend sent (two, unless this request reached the previous backend while it exited),
            # then the error event and [DONE]
            assert [json.loads(line[6:])["choices"][0]["delta"]["content"] for line in lines[:-2]] in \
                (["word0 ", "word1 "], [])
            error = json.loads(lines[-2][6:])["error"]
            assert error["code"] == "backend_error" and "broke off" in error["message"]
            assert lines[-1] == "data: [DONE]"
            # the stand-in exits just after its second chunk: wait for that, or the next request may reach it dying
            wait_for(lambda: not [b for b in proxy.status()["backends"] if b["name"] == "m" and alive(b["pid"])],
                     timeout=30)
        events = [e["event"] for e in proxy.status()["events"] if e["model"] == "m"]
        assert events.count("stream broken") == 3
    finally:
        proxy.stop()
    log = (tmp_path / "proxy.log").read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
    assert log.count("broke off a streamed answer") == 3


def test_cold_start_streams_loading_comments_until_the_first_token(registry_dir, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "1.5")
    layers(registry_dir, model("m", loading_state="comments"))
    with ProxyServer(registry_dir, loading_interval=0.2) as server:
        began = time.monotonic()
        with server.http.stream("POST", "/v1/chat/completions", json=chat_body("m", stream=True)) as reply:
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
            assert reply.headers["x-modelreg-model"] == "m"
            lines = reply.iter_lines()
            assert next(lines) == ": loading m"
            assert time.monotonic() - began < 1.5
            assert (backend := server.backend("m")) is None or backend["state"] == "starting"
            rest = [line for line in lines if line]
        comments = [line for line in rest if line.startswith(":")]
        events = [line for line in rest if not line.startswith(":")]
        assert len(comments) >= 3 and set(comments) == {": loading m"}
        assert rest.index(events[0]) > rest.index(comments[-1])  # comments stop at the first token
        assert events[-1] == "data: [DONE]" and len(events) == 4


def test_a_failed_cold_start_ends_the_stream_with_its_diagnosis(registry_dir, tmp_path, monkeypatch):
    fail_log = tmp_path / "fail.log"
    fail_log.write_text("ValueError: The model's max seq len (131072) is larger than the maximum number of tokens "
                        "that can be stored in KV cache (48000).\n")
    monkeypatch.setenv("STANDIN_FAIL_LOG", str(fail_log))
    layers(registry_dir, model("m", loading_state="comments"))
    with ProxyServer(registry_dir, loading_interval=0.2) as server:
        with server.http.stream("POST", "/v1/chat/completions", json=chat_body("m", stream=True)) as reply:
            lines = sse_lines(reply)
    assert lines[0] == ": loading m" and lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])["error"]
    assert error["code"] == "backend_start_failed" and error["type"] == "server_error"
    assert error["diagnosis"][0]["rule"] == "kv_cache_too_small"


def test_max_concurrency_answers_429_with_retry_after(registry_dir, monkeypatch):
    monkeypatch.setenv("STANDIN_REPLY_SECONDS", "4")  # the second request must come while the first is in flight
    layers(registry_dir, model("m", max_concurrency=1))
    with ProxyServer(registry_dir) as server:
        first = threading.Thread(target=server.chat, args=("m",))
        first.start()
        wait_for(lambda: (b := server.backend("m")) and b["in_flight"] == 1, what="first request in flight")
        refused = server.chat("m")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "concurrency_limit"
        assert "max_concurrency" in error["message"]
        first.join()
        assert server.chat("m").status_code == 200


def test_every_routed_path_reaches_the_models_backend(registry_dir, tmp_path):
    layers(registry_dir, model("m", model_aliases=["org/M"]))
    with ProxyServer(registry_dir) as server:
        for path in ("/v1/rerank", "/v1/responses", "/v1/messages", "/v1/images/generations"):
            reply = server.http.post(path, json={"model": "org/M", "input": "x"})
            assert reply.status_code == 200, (path, reply.text)
            assert reply.json()["path"] == path and reply.json()["model"] == "m"  # the served name, not the alias
            assert reply.headers["x-modelreg-model"] == "m"
        audio = server.http.post("/v1/audio/transcriptions", data={"model": "org/M", "language": "en"},
                                 files={"file": ("clip.wav", b"RIFF....WAVEfmt ", "audio/wav")})
        assert audio.status_code == 200, audio.text
        assert audio.json()["fields"] == {"model": "m", "language": "en", "file": "clip.wav"}
        for path in ("/v1/reranking", "/v1/embeddings", "/v1/audio/speech"):  # the stand-in lacks these
            missing = server.http.post(path, json={"model": "m", "input": "x"})
            assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})  # vLLM's own answer
        bodies = [(r["path"], r["body"]["model"]) for r in recorded(tmp_path) if "body" in r]
        assert ("/v1/audio/transcriptions", "m") in bodies and ("/v1/rerank", "m") in bodies


def test_errors_are_in_openai_shape_and_models_can_be_retrieved(registry_dir):
    layers(registry_dir, model("m", model_aliases=["org/M"]))
    with ProxyServer(registry_dir) as server:
        retrieved = server.http.get("/v1/models/org/M")
        assert retrieved.status_code == 200 and retrieved.json()["id"] == "m"
        assert retrieved.json()["object"] == "model"
        cases = [(server.http.get("/v1/models/nope"), 404, "invalid_request_error", "model_not_found"),
                 (server.http.post("/v1/nowhere", json={}), 404, "invalid_request_error", "route_not_found"),
                 (server.http.get("/v1/chat/completions"), 405, "invalid_request_error", "method_not_allowed"),
                 (server.http.post("/v1/chat/completions", content=b"{",
                                  headers=JSON_TYPE), 400, "invalid_request_error",
                  "invalid_request_error"),
                 (server.http.post("/v1/chat/completions", json={"messages": []}), 400, "invalid_request_error",
                  "invalid_request_error"),
                 (server.http.get("/admin/running"), 401, "authentication_error", "invalid_admin_token")]
        for reply, status, kind, code in cases:
            error = reply.json()["error"]
            assert (reply.status_code, error["type"], error["code"]) == (status, kind, code), reply.text
            assert set(error) >= {"message", "type", "param", "code"} and error["message"]


def test_proxy_keys_as_bearer_x_api_key_or_basic_and_the_old_single_key(registry_dir):
    layers(registry_dir, model("m"))
    set_settings(registry_dir, proxy_api_keys=["k-one", "k-two"], proxy_api_key="k-old")
    basic = "Basic " + base64.b64encode(b"webui:k-two").decode()
    with ProxyServer(registry_dir) as server:
        for headers in ({"Authorization": "Bearer k-one"}, {"x-api-key": "k-two"}, {"Authorization": basic},
                        {"Authorization": "Bearer k-old"}):
            assert server.http.get("/v1/models", headers=headers).status_code == 200, headers
        for headers in ({}, {"Authorization": "Bearer k-three"}, {"x-api-key": "k-on"},
                        {"Authorization": "Basic " + base64.b64encode(b"webui:nope").decode()}):
            refused = server.http.get("/v1/models", headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert server.chat("m").status_code == 401
        assert server.http.get("/health").status_code == 200  # open
        assert server.http.get("/admin/status", headers={"Authorization": "Bearer k-one"}).status_code == 401
        assert server.status()["backends"] == []


def test_cors_preflight_answers_only_the_listed_origins(registry_dir):
    layers(registry_dir, model("m"))
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with ProxyServer(registry_dir) as server:  # no cors_origins: no CORS at all
        plain = server.http.options("/v1/chat/completions", headers={"Origin": "http://webui.test", **preflight})
        assert plain.status_code == 403 and "access-control-allow-origin" not in plain.headers
    set_settings(registry_dir, cors_origins=["http://webui.test"])
    with ProxyServer(registry_dir) as server:
        allowed = server.http.options("/v1/chat/completions", headers={"Origin": "http://webui.test", **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://webui.test"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = server.http.options("/v1/chat/completions", headers={"Origin": "http://evil.test", **preflight})
        assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
        listed = server.http.get("/v1/models", headers={"Origin": "http://webui.test"})
        assert listed.headers["access-control-allow-origin"] == "http://webui.test"


def test_upstream_key_reaches_the_backend_and_no_file_log_or_status(registry_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELREG_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    layers(registry_dir, model("keyed", api_key_env="MODELREG_TEST_UPSTREAM_KEY"),
           model("unset", api_key_env="MODELREG_TEST_NOT_SET"))
    with ProxyServer(registry_dir) as server:
        assert server.chat("keyed").status_code == 200
        backend = server.backend("keyed")
        assert "--api-key" not in backend["argv"] and backend["api_key_env"] == "MODELREG_TEST_UPSTREAM_KEY"
        environ = Path(f"/proc/{backend['pid']}/environ").read_bytes().split(b"\0")
        assert b"VLLM_API_KEY=" + UPSTREAM_KEY.encode() in environ  # vLLM's own variable: it logs its arguments
        assert [r["authorized"] for r in recorded(tmp_path) if "body" in r] == [True]
        direct = httpx.post(backend["base_url"] + "/v1/chat/completions", json=chat_body("keyed"))
        assert direct.status_code == 401  # the backend does want the key

        failed = server.chat("unset")
        assert failed.status_code == 503
        assert "$MODELREG_TEST_NOT_SET, which is not set" in failed.json()["error"]["message"]

        shown = [server.admin("GET", path).text for path in ("/admin/status", "/admin/running", "/admin/logs/keyed")]
        assert all(UPSTREAM_KEY not in text for text in shown)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert UPSTREAM_KEY.encode() not in path.read_bytes(), path
    assert any(p.name.endswith(".log") for p in (tmp_path / "logs").iterdir())


def test_admin_client_lists_restarts_follows_logs_and_unloads(registry_dir):
    layers(registry_dir, model("m", model_aliases=["org/M"]), model("n"))
    with ProxyServer(registry_dir) as server:
        admin = ProxyAdmin(server.url, registry_dir)
        assert admin.running() == []
        assert server.chat("m").status_code == 200
        [running] = admin.running()
        assert (running["name"], running["state"], running["in_flight"]) == ("m", "ready", 0)

        restarted = admin.restart("org/M")
        assert restarted["name"] == "m" and restarted["pid"] != running["pid"] and restarted["state"] == "ready"
        assert [e["event"] for e in server.status()["events"]][-1] == "restarted"
        assert "Uvicorn running" in "\n".join(admin.logs("m"))
        assert admin.restart("n")["state"] == "ready"  # restart starts a model that was not running

        followed: list[str] = []
        stream = admin.logs("m", follow=True, lines=1)

        def follow() -> None:
            for line in stream:
                followed.append(line)
                if line.startswith("INFO: Uvicorn running"):  # the restarted backend's new log
                    return
        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        wait_for(lambda: followed, what="the log's last line")
        assert server.chat("m").status_code == 200
        wait_for(lambda: any("POST /v1/chat/completions" in line for line in followed[1:]), what="a new line")
        admin.restart("m")  # the log is rotated: following goes on in the new one
        reader.join(20)
        assert not reader.is_alive() and any(line.startswith("modelreg: starting") for line in followed)
        stream.close()

        assert admin.unload("m") == {"stopped": ["m"]}
        assert [b["name"] for b in admin.running()] == ["n"]
        with pytest.raises(ProxyRefused, match="'m' is not running") as refused:
            admin.unload("m")
        assert refused.value.status == 404
        with pytest.raises(ProxyRefused, match="no-such-model"):
            admin.restart("no-such-model")
        assert admin.unload() == {"stopped": ["n"]}
        assert admin.running() == []


@pytest.mark.parametrize("stop", ["unload", "restart"])
def test_stopping_a_backend_mid_stream_ends_every_open_stream_with_an_error_and_done(registry_dir, monkeypatch, stop):
    """An unload or restart while answers stream: each client gets an error event and [DONE], not a silent cut."""
    monkeypatch.setenv("STANDIN_STREAM_CHUNKS", "200")
    monkeypatch.setenv("STANDIN_CHUNK_SECONDS", "0.05")
    layers(registry_dir, model("m"))
    with ProxyServer(registry_dir) as server:
        assert server.chat("m").status_code == 200  # started
        results: list[list[str]] = [[], []]

        def stream(lines: list[str]) -> None:
            with server.http.stream("POST", "/v1/chat/completions", json=chat_body("m", stream=True)) as reply:
                for line in reply.iter_lines():  # one by one, so the test sees the first chunk arrive
                    if line and answer_line(line):
                        lines.append(line)
        clients = [threading.Thread(target=stream, args=(lines,)) for lines in results]
        for client in clients:
            client.start()
        wait_for(lambda: all(results), timeout=30, what="a first chunk at each client")
        path = "/admin/unload/m" if stop == "unload" else "/admin/restart/m"
        assert server.admin("POST", path).status_code == 200
        for client in clients:
            client.join(60)
    for lines in results:
        assert json.loads(lines[0][6:])["choices"][0]["delta"]["content"]
        assert lines[-1] == "data: [DONE]" and "error" in json.loads(lines[-2][6:]), lines[-3:]


def test_unloading_a_real_llama_cpp_python_mid_stream_ends_the_stream_with_an_error_and_done(tmp_path, tiny_model):
    """llama-cpp-python's server ends its chunked answer cleanly when stopped: without [DONE] the proxy says so."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "settings.json").write_text(json.dumps({"log_dir": str(tmp_path / "logs"), "stop_grace": 3}))
    (config_dir / "model_registry.curated.json").write_text(json.dumps([tiny_entry(tiny_model, name="m",
                                                                                   extra_args=["--n_ctx", "2048"])]))
    with ProxyServer(config_dir) as server:
        assert server.chat("m").status_code == 200  # started
        body = {**chat_body("m", stream=True), "max_tokens": 1900, "temperature": 1.0}
        with server.http.stream("POST", "/v1/chat/completions", json=body) as reply:
            lines = reply.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert server.admin("POST", "/admin/unload/m").status_code == 200
            rest = [line for line in lines if line.startswith("data: ")]
    assert json.loads(first[6:])["choices"]
    assert rest[-1] == "data: [DONE]" and "error" in json.loads(rest[-2][6:]), rest[-3:]


def test_another_program_on_the_proxy_port_is_not_taken_for_the_proxy(tmp_path):
    """A port that answers, but not as a modelreg proxy (a backend, a GUI): a clear error, not a JSON traceback."""
    import http.server

    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>something else</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        admin = ProxyAdmin(f"http://127.0.0.1:{server.server_port}", tmp_path, timeout=10)
        with pytest.raises(ProxyUnreachable, match="not a modelreg proxy"):
            admin.status()
    finally:
        server.shutdown()
