"""Ollama's on-disk store read from the files (manifests, config, template and GGUF model blobs), no server."""
from __future__ import annotations

import hashlib
import json

import pytest

from modelreg.discovery import ollama_store
from support import model_folders as mf


@pytest.fixture()
def store(tmp_path):
    models = tmp_path / "models"
    manifests = mf.ollama_store(models, tmp_path / "scratch")
    return models, manifests


def test_models_names_and_facts(store):
    models, manifests = store
    found, problems = ollama_store.store_models(models)
    assert problems == []
    by_name = {m.entry["served_model_id"]: m for m in found}
    assert sorted(by_name) == sorted(manifests)
    llama = by_name["llama3.1:latest"].entry
    assert llama["backend_config"] == {"model_path": "ollama:/llama3.1:latest"}
    assert llama["quantization"] == "q4_k_m" and llama["metadata"]["format"] == "ollama"
    assert llama["capabilities"]["tools"] is True  # the Go template uses .Tools
    assert llama["metadata"]["ollama_capabilities"] == ["completion", "tools"]
    assert llama["metadata"]["ollama_parameter_size"] == "8.0B"
    assert llama["metadata"]["architecture"]["context_length"] == 131072
    assert llama["metadata"]["scan"]["ollama"]["params"]["stop"][-1] == "<|eot_id|>"
    digest = hashlib.sha256(mf.OLLAMA_LLAMA31_TEMPLATE.encode()).hexdigest()
    assert llama["chat_template"]["sha256"] == digest
    assert llama["metadata"]["scan"]["chat_template"]["file"] == str(models / "blobs" / f"sha256-{digest}")
    model_layer = next(f for f in llama["artifacts"]["files"] if f["media_type"] == "model")
    assert (models / model_layer["path"]).stat().st_size == model_layer["size"]
    llava = by_name["llava:7b"]
    assert llava.entry["capabilities"]["vision"] is True and llava.quantization == "q4_0"
    assert llava.entry["metadata"]["scan"]["projector"].startswith(str(models / "blobs"))
    qwen3 = by_name["huihui_ai/qwen3-abliterated:8b"]
    assert qwen3.raw_name == "huihui_ai/qwen3-abliterated:8b"
    assert qwen3.entry["capabilities"]["tools"] is True  # from the GGUF's own template (no template layer)


def test_names_as_ollama_lists_them():
    assert ollama_store.model_name("registry.ollama.ai", "library", "qwen3", "8b") == "qwen3:8b"
    assert ollama_store.model_name("registry.ollama.ai", "huihui_ai", "m", "20b") == "huihui_ai/m:20b"
    assert ollama_store.model_name("hf.co", "bartowski", "Llama-GGUF", "Q4_K_M") == "hf.co/bartowski/Llama-GGUF:Q4_K_M"


def test_corrupt_manifest_and_missing_blob_are_reported_others_kept(store):
    models, manifests = store
    manifests["llama3.1:latest"].write_text("{not json")
    llava = manifests["llava:7b"].read_text()
    model_digest = llava.split('"application/vnd.ollama.image.model","digest":"')[1].split('"')[0]
    (models / "blobs" / model_digest.replace(":", "-")).unlink()
    found, problems = ollama_store.store_models(models)
    assert [m.entry["served_model_id"] for m in found] == ["huihui_ai/qwen3-abliterated:8b"]
    messages = {p.path: p.message for p in problems}
    assert "not JSON" in messages[str(manifests["llama3.1:latest"])]
    assert "model blob missing" in messages[str(models / "blobs" / model_digest.replace(":", "-"))]


def test_a_manifest_outside_the_layout_is_reported(store):
    models, _ = store
    stray = models / "manifests" / "registry.ollama.ai" / "stray"
    stray.write_text("{}")
    _, problems = ollama_store.store_models(models)
    assert [p.path for p in problems] == [str(stray)]


def test_a_running_daemon_enriches_the_entries(store, tmp_path):
    from modelreg.discovery.scan import scan
    from modelreg.registry import Registry
    from support.fake_ollama import FakeOllama

    models, _ = store
    config = tmp_path / "configs"
    config.mkdir()
    with FakeOllama(models) as daemon:
        (config / "settings.json").write_text(json.dumps({"ollama_host": daemon.host}))
        registry = Registry(config)
        scan(registry, [models])
        shown = {path for method, path, _ in daemon.requests if path == "/api/show"}
    entries = {e["served_model_id"]: e for e in registry.discovered_entries()}
    llama = entries["llama3.1:latest"]
    assert shown and llama["metadata"]["ollama_parameters"].startswith("stop")
    # qwen3's GGUF template mentions tools, but the daemon (no template layer) says completion only: it wins
    qwen3 = entries["huihui_ai/qwen3-abliterated:8b"]
    assert qwen3["metadata"]["ollama_capabilities"] == ["completion"] and qwen3["capabilities"]["tools"] is False


def test_no_daemon_leaves_the_file_facts(store, tmp_path):
    from modelreg.discovery.scan import scan
    from modelreg.registry import Registry

    models, _ = store
    config = tmp_path / "configs"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"ollama_host": "http://127.0.0.1:9"}))  # nothing listens
    scan(Registry(config), [models])
    qwen3 = next(e for e in Registry(config).discovered_entries() if e["served_model_id"].startswith("huihui"))
    assert qwen3["capabilities"]["tools"] is True and "ollama_parameters" not in qwen3["metadata"]
