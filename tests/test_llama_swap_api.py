"""llama-swap's paths and llama-server's native routes through the proxy, against the real llama-server."""
from __future__ import annotations

import json
import threading

import httpx
import pytest

from support import free_port
from support.gui_servers import start_proxy
from support.real_backends import LLAMA_SERVER, clean_llama_env, require
from support.tiny_gguf import tiny_entry, write_tiny_gguf

pytestmark = pytest.mark.llama_server
KEY = {"Authorization": "Bearer sk-swap"}


def without_timings(answer: httpx.Response) -> tuple[int, object]:
    body = answer.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("timings", "id_slot", "tokens_cached")}
    return answer.status_code, body


def test_llama_swap_paths_against_the_real_llama_server(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "stop_grace": 2, "proxy_api_keys": ["sk-swap"],
        "executables": {"llama.cpp": require(LLAMA_SERVER)}}))
    entry = {**tiny_entry(write_tiny_gguf(tmp_path / "tiny.gguf", fim=True), name="tiny", extra_args=["-c", "512"]),
             "backend": "llama.cpp", "display_name": "Tiny"}
    (folder / "model_registry.curated.json").write_text(json.dumps([entry]))
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    http = proxy.http
    try:
        for method, path in (("GET", "/running"), ("GET", "/unload"), ("GET", "/upstream/tiny/props"),
                             ("POST", "/infill"), ("GET", "/props?model=tiny")):
            assert http.request(method, path).status_code == 401, path  # the proxy's API keys, as /v1
        assert http.get("/running", headers=KEY).json() == {"running": []}

        props = http.get("/upstream/tiny/props", headers=KEY)  # starts the model, passes the path through
        assert props.status_code == 200 and props.json()["default_generation_settings"]["n_ctx"] == 512
        [running] = http.get("/running", headers=KEY).json()["running"]
        assert (running["model"], running["state"], running["name"]) == ("tiny", "ready", "Tiny")
        assert http.get("/props", params={"model": "tiny"}, headers=KEY).json()["model_path"] == entry[
            "backend_config"]["model_path"]

        direct = httpx.Client(base_url=proxy.backend("tiny")["base_url"], timeout=60)
        infill = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 8,
                  "temperature": 0, "seed": 1, "cache_prompt": False}
        through = http.post("/infill", json={"model": "tiny", **infill}, headers=KEY)
        assert through.status_code == 200 and through.headers["x-modelreg-model"] == "tiny"
        assert through.json()["content"]  # the completion llama-server wrote between prefix and suffix
        assert without_timings(through) == without_timings(direct.post("/infill", json=infill))
        tokens = http.post("/tokenize", json={"model": "tiny", "content": "hello world"}, headers=KEY)
        assert tokens.status_code == 200 and tokens.json() == direct.post(
            "/tokenize", json={"content": "hello world"}).json()
        text = http.post("/detokenize", json={"model": "tiny", **tokens.json()}, headers=KEY)
        assert text.status_code == 200 and text.json() == direct.post("/detokenize", json=tokens.json()).json()
        completion = {"prompt": "Hello", "n_predict": 4, "temperature": 0, "seed": 1, "cache_prompt": False}
        assert without_timings(http.post("/completion", json={"model": "tiny", **completion}, headers=KEY)) == \
            without_timings(direct.post("/completion", json=completion))
        direct.close()

        for method, path in (("GET", "/unload"), ("POST", "/api/models/unload/tiny")):  # a page on another site
            attack = http.request(method, path, headers={**KEY, "Sec-Fetch-Site": "cross-site"})
            assert attack.status_code == 403, path
        assert [r["model"] for r in http.get("/running", headers=KEY).json()["running"]] == ["tiny"]
        assert http.post("/api/models/unload/tiny", headers=KEY).text == "OK"
        assert http.get("/running", headers=KEY).json() == {"running": []}
        assert http.get("/upstream/tiny/health", headers=KEY).status_code == 200
        assert http.get("/unload", headers=KEY).text == "OK"
        assert http.get("/running", headers=KEY).json() == {"running": []}
        assert http.get("/upstream/nope/props", headers=KEY).status_code == 404
    finally:
        proxy.stop()


class Follower(threading.Thread):
    """Reads a plain-text log stream of the proxy until `until(text)` holds (or its read times out)."""

    def __init__(self, url: str, until):
        super().__init__(daemon=True)
        self.url, self.until, self.text, self.content_type = url, until, "", ""
        self.following = threading.Event()  # the headers came: what is logged from now on is sent
        self.start()
        assert self.following.wait(30), url

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=KEY, timeout=30) as reply:
            self.content_type = reply.headers["content-type"]
            self.following.set()
            for piece in reply.iter_text():
                self.text += piece
                if self.until(self.text):
                    return


def test_logs_and_log_streams_and_audio_voices_against_the_real_llama_server(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "stop_grace": 2, "proxy_api_keys": ["sk-swap"],
        "executables": {"llama.cpp": require(LLAMA_SERVER)}}))
    entry = {**tiny_entry(write_tiny_gguf(tmp_path / "tiny.gguf"), name="tiny", extra_args=["-c", "512"]),
             "backend": "llama.cpp"}
    (folder / "model_registry.curated.json").write_text(json.dumps([entry]))
    proxy = start_proxy(folder, free_port(), tmp_path, env=clean_llama_env())
    http = proxy.http
    try:
        for path in ("/logs", "/logs/stream", "/logs/stream/tiny", "/v1/audio/voices?model=tiny"):
            assert http.get(path).status_code == 401, path  # the proxy's API keys, as /v1
        assert http.get("/logs/stream/nope", headers=KEY).status_code == 400
        # followed from before the model starts: everything (prefixed by source), and the model's log alone (as is)
        everything = Follower(proxy.url + "/logs/stream", lambda text: "[tiny]" in text and "listening on" in text
                              and "tiny: ready" in text)
        alone = Follower(proxy.url + "/logs/stream/tiny?no-history", lambda text: "listening on" in text)
        events = Follower(proxy.url + "/logs/stream/proxy", lambda text: "tiny: ready" in text)
        backends = Follower(proxy.url + "/logs/stream/upstream", lambda text: "listening on" in text)
        assert http.get("/upstream/tiny/health", headers=KEY).status_code == 200  # starts the real llama-server
        for follower in (everything, alone, events, backends):
            follower.join(30)
        assert not events.is_alive() and "[proxy] " in events.text and "[tiny]" not in events.text
        assert not backends.is_alive() and "[tiny] " in backends.text and "[proxy]" not in backends.text
        assert everything.content_type.startswith("text/plain") and not everything.is_alive(), everything.text
        assert "[proxy] " in everything.text and "tiny: starting: " in everything.text
        assert "[tiny] " in everything.text and "load_model: loading model" in everything.text
        assert not alone.is_alive() and "load_model: loading model" in alone.text and "[tiny]" not in alone.text

        logs = http.get("/logs", headers=KEY)
        assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
        assert "tiny: ready" in logs.text and "[tiny] " in logs.text and "listening on" in logs.text

        # a restart rotates the log: the stream goes on into the new one
        again = Follower(proxy.url + "/logs/stream/tiny", lambda text: text.count("listening on") == 2)
        assert http.post("/api/models/unload/tiny", headers=KEY).text == "OK"
        assert http.get("/upstream/tiny/health", headers=KEY).status_code == 200
        again.join(30)
        assert not again.is_alive() and again.text.count("load_model: loading model") == 2, again.text

        voices = http.get("/v1/audio/voices", params={"model": "tiny"}, headers=KEY)  # routed, not 405
        assert voices.headers["x-modelreg-model"] == "tiny" and voices.status_code == 404  # llama-server has none
        assert http.get("/v1/audio/voices", headers=KEY).status_code == 400  # which model's voices?
    finally:
        proxy.stop()
