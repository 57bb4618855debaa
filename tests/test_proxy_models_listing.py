"""/v1/models for chat UIs: display names, aliases as ids (list_aliases), per-request context; the LiteLLM export."""
from __future__ import annotations

import json

from modelreg.hosts.litellm import deployment
from modelreg.hosts.status import HostModel
from modelreg.settings import Host
from support import free_port
from support.layers import discovered_model, write_layers
from support.proxy_server import ProxyServer


def llama(name: str, extra_args: list[str], **fields) -> dict:
    return {"name": name, "backend": "llama.cpp", "backend_config": {"port": free_port(), "extra_args": extra_args},
            **fields}


def registry(folder, **settings):
    curated = [llama("chat", ["-c", "40960", "-np", "20"], display_name="Chat Model", model_aliases=["gpt-4o"]),
               llama("unified", ["--ctx-size", "8192", "--parallel", "4", "-kvu"]),
               llama("embedder", ["-c", "4096"], capabilities={"embedding": True})]
    write_layers(folder, discovered=[discovered_model(e["name"]) for e in curated], curated=curated)
    (folder / "settings.json").write_text(json.dumps(settings))
    return folder


def test_models_carry_name_and_usable_context(tmp_path):
    with ProxyServer(registry(tmp_path / "configs")) as server:
        listed = {m["id"]: m for m in server.http.get("/v1/models").json()["data"]}
    assert set(listed) == {"chat", "unified", "embedder"}  # aliases not listed by default
    assert (listed["chat"]["name"], listed["unified"]["name"]) == ("Chat Model", "unified")
    # -c 40960 over 20 slots: 2048 per request (what llama-server gives each slot)
    assert (listed["chat"]["context_length"], listed["chat"]["max_context"]) == (2048, 40960)
    assert (listed["unified"]["context_length"], listed["unified"]["max_context"]) == (8192, 8192)
    assert listed["embedder"]["context_length"] == 4096


def test_list_aliases_lists_each_alias_as_a_model(tmp_path):
    with ProxyServer(registry(tmp_path / "configs", list_aliases=True)) as server:
        listed = {m["id"]: m for m in server.http.get("/v1/models").json()["data"]}
    assert set(listed) == {"chat", "unified", "embedder", "gpt-4o"}
    assert (listed["gpt-4o"]["name"], listed["gpt-4o"]["context_length"]) == ("Chat Model", 2048)


def test_litellm_export_uses_per_request_context_and_embedding_mode(tmp_path):
    with ProxyServer(registry(tmp_path / "configs")) as server:
        listed = {m["id"]: HostModel.from_listing(m) for m in server.http.get("/v1/models").json()["data"]}
    host = Host(url="http://gpu-b:8100")
    chat = deployment("chat", listed["chat"], "gpu-b", host)["model_info"]
    embedder = deployment("embedder", listed["embedder"], "gpu-b", host)["model_info"]
    assert (chat["mode"], chat["max_input_tokens"]) == ("chat", 2048)
    assert (embedder["mode"], embedder["max_input_tokens"]) == ("embedding", 4096)
