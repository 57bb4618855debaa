"""llama-swap's paths and llama-server's native routes through the proxy, against the real llama-server."""
from __future__ import annotations

import json

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
