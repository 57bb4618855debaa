"""Hugging Face folders and cache: facts from real config files and safetensors headers of public models."""
from __future__ import annotations

import hashlib
import json

import pytest

from modelreg.discovery import hf
from modelreg.discovery.facts import Known, ScanError
from modelreg.discovery.quant import parameter_count, quantization_from_config
from modelreg.discovery.scan import discover
from support import model_folders as mf


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {b.repo_id: b for b in (builder(root) for builder in mf.HF_MODELS)}


@pytest.mark.parametrize("repo_id", [
    "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct-AWQ", "Qwen/Qwen3-VL-8B-Instruct-FP8",
    "TheBloke/Llama-2-7B-Chat-GPTQ", "mistralai/Mistral-7B-Instruct-v0.3", "openai/gpt-oss-20b"])
def test_public_model_facts(built, repo_id):
    model = built[repo_id]
    found, problems = hf.read_model_folder(model.path)
    entry, arch = found.entry, found.entry["metadata"]["architecture"]
    assert problems == []
    assert found.quantization == entry["quantization"] == model.expect["quantization"]
    assert arch["context_length"] == model.expect["context_length"]
    assert arch["num_kv_heads"] == model.expect["num_kv_heads"]
    assert entry["capabilities"]["vision"] is model.expect["vision"]
    assert entry["capabilities"]["tools"] is model.expect["tools"]
    assert arch["parameters"] == model.parameters  # unpacked int4, no scales or zero points
    assert entry["metadata"]["format"] == "safetensors"
    assert entry["backend_config"] == {"model_path": str(model.path)}
    assert entry["size_bytes"] == sum(p.stat().st_size for p in model.path.rglob("*") if p.is_file())
    assert [f["path"] for f in entry["artifacts"]["files"]] == sorted(
        p.name for p in model.path.iterdir() if p.is_file())


def test_template_location_and_sha256_not_text(built):
    model = built["Qwen/Qwen3-VL-8B-Instruct-FP8"]
    found, _ = hf.read_model_folder(model.path)
    digest = hashlib.sha256(mf.QWEN3_TEMPLATE.encode()).hexdigest()
    assert found.entry["metadata"]["scan"]["chat_template"] == {"file": "chat_template.jinja", "sha256": digest}
    assert found.entry["chat_template"] == {"source": "embedded", "path": None, "sha256": digest}
    assert "im_start" not in json.dumps(found.entry)
    llama, _ = hf.read_model_folder(built["meta-llama/Llama-3.1-8B-Instruct"].path)
    assert llama.entry["metadata"]["scan"]["chat_template"]["key"] == "chat_template"
    assert llama.entry["metadata"]["scan"]["chat_template"]["file"] == "tokenizer_config.json"


def test_vl_text_config_and_vision_facts(built):
    qwen3, _ = hf.read_model_folder(built["Qwen/Qwen3-VL-8B-Instruct-FP8"].path)
    arch = qwen3.entry["metadata"]["architecture"]
    assert (arch["num_layers"], arch["num_attention_heads"], arch["head_dim"], arch["hidden_size"]) == (
        36, 32, 128, 4096)
    assert arch["vision"] == {"hidden_size": 1152, "num_layers": 27, "patch_size": 16}
    assert qwen3.entry["metadata"]["model_type"] == "qwen3_vl"
    assert qwen3.entry["metadata"]["scan"]["dtype"] == "F8_E4M3"
    awq, _ = hf.read_model_folder(built["Qwen/Qwen2.5-VL-7B-Instruct-AWQ"].path)
    assert awq.entry["metadata"]["scan"]["quantization"] == {"method": "awq", "source": "config.json",
                                                             "label": "awq", "bits": 4, "group_size": 128}
    assert awq.entry["metadata"]["scan"]["processor_files"] == ["preprocessor_config.json"]


def test_old_gptq_quantize_config(built):
    found, _ = hf.read_model_folder(built["TheBloke/Llama-2-7B-Chat-GPTQ"].path)
    assert found.entry["metadata"]["scan"]["quantization"]["source"] == "quantize_config.json"
    assert found.entry["metadata"]["architecture"]["num_kv_heads"] == 32  # Llama 2 7B has no GQA


def test_mistral_weights_come_from_the_index_not_consolidated(built):
    model = built["mistralai/Mistral-7B-Instruct-v0.3"]
    found, _ = hf.read_model_folder(model.path)
    shards = sorted(model.path.glob("model-*.safetensors"))
    assert found.entry["metadata"]["scan"]["weights_bytes"] == sum(p.stat().st_size for p in shards)


@pytest.mark.parametrize("config, tokenizer, expected", [
    ({"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, {}, 131072),
    ({"max_position_embeddings": 32768, "rope_scaling": {"type": "yarn", "factor": 4.0,
                                                         "original_max_position_embeddings": 32768}}, {}, 131072),
    ({"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "yarn", "factor": 32.0,  # gpt-oss
                                                          "original_max_position_embeddings": 4096}}, {}, 131072),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, {}, 8192),
    ({"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
      "model_type": "gemma3_text"}, {}, 131072),
    ({"max_position_embeddings": 32768}, {"model_max_length": 16384}, 16384),
    ({"n_positions": 1024, "max_position_embeddings": 2048}, {}, 1024),
    ({"max_position_embeddings": 8192, "model_max_length": 131072}, {}, 131072),  # Command-R
    ({"hidden_size": 16}, {}, None),
])
def test_native_context_follows_vllm(config, tokenizer, expected):
    assert hf.native_context_length(config, config.get("model_type"), tokenizer) == expected


@pytest.mark.parametrize("config, label, bits", [
    ({"quantization_config": {"quant_method": "mxfp4"}}, "mxfp4", 4),
    ({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                              "bnb_4bit_quant_type": "nf4"}}, "bnb-4bit", 4),
    ({"quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {
        "group_0": {"weights": {"num_bits": 8, "type": "float"}, "input_activations": {"num_bits": 8}}}}}, "fp8", 8),
    ({"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
        "group_0": {"weights": {"num_bits": 4, "type": "int"}, "input_activations": None}}}}, "w4a16", 4),
    ({"quantization_config": {"quant_method": "gptq_marlin", "bits": 8}}, "gptq", 8),
    ({"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}, "nvfp4", 4),
    ({"text_config": {"quantization_config": {"quant_method": "fp8"}}}, "fp8", 8),
])
def test_quantization_methods(config, label, bits):
    info = quantization_from_config(config, None)
    assert (info["label"], info["bits"]) == (label, bits)


def test_parameters_of_packed_formats():
    mxfp4 = {"method": "mxfp4", "bits": 4}
    tensors = [("model.layers.0.mlp.experts.gate_up_proj_blocks", "U8", 100),
               ("model.layers.0.mlp.experts.gate_up_proj_scales", "U8", 7),
               ("model.layers.0.self_attn.q_proj.weight", "BF16", 50)]
    assert parameter_count(tensors, mxfp4) == 250
    bnb = {"method": "bitsandbytes", "bits": 4}
    assert parameter_count([("a.weight", "U8", 10), ("a.weight.absmax", "F32", 3),
                            ("a.weight.quant_state.bitsandbytes__nf4", "U8", 5)], bnb) == 20
    assert parameter_count([("a.weight", "BF16", 10), ("a.weight", "I32", 10)], None) == 20


def test_corrupt_inputs_raise_scan_errors(tmp_path):
    model = mf.llama31_8b(tmp_path)
    shard = model.path / "model-00002-of-00004.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])  # truncated inside the header
    with pytest.raises(ScanError, match="truncated") as info:
        hf.read_model_folder(model.path)
    assert info.value.path == str(shard)
    shard.unlink()
    with pytest.raises(ScanError, match="incomplete"):
        hf.read_model_folder(model.path)
    (model.path / "config.json").write_text('{"model_type": "llama",\n  oops}')
    with pytest.raises(ScanError, match="line 2, column 3"):
        hf.read_model_folder(model.path)


def test_hf_cache_layout(tmp_path):
    cache = tmp_path / "hub"
    model = mf.qwen25_vl_7b_awq(tmp_path / "src")
    snapshot = mf.as_hf_cache(model.path, cache, model.repo_id, commit="a" * 40)
    gguf_folder = tmp_path / "src" / "gguf"
    mf.llama32_1b_gguf(gguf_folder)
    mf.as_hf_cache(gguf_folder, cache, "bartowski/Llama-3.2-1B-Instruct-GGUF", commit="b" * 40)
    found = discover([cache])
    assert found.problems == []
    by_key = {m.key: m for m in found.models}
    repo = str(cache / "models--Qwen--Qwen2.5-VL-7B-Instruct-AWQ")
    awq = by_key[repo].entry
    assert awq["source"] == {"huggingface_id": "Qwen/Qwen2.5-VL-7B-Instruct-AWQ", "revision": "a" * 40}
    assert awq["backend_config"]["model_path"] == str(snapshot)
    weights = [f for f in awq["artifacts"]["files"] if f["path"].endswith(".safetensors")]
    assert all(f["sha256"] == hashlib.sha256((snapshot / f["path"]).read_bytes()).hexdigest() for f in weights)
    assert by_key[repo].raw_name == "Qwen2.5-VL-7B-Instruct-AWQ" and by_key[repo].quantization == "awq"
    gguf_key = str(cache / "models--bartowski--Llama-3.2-1B-Instruct-GGUF" / "Llama-3.2-1B-Instruct-Q4_K_M.gguf")
    assert by_key[gguf_key].entry["source"]["huggingface_id"] == "bartowski/Llama-3.2-1B-Instruct-GGUF"
    assert by_key[gguf_key].entry["source_provider"] == "hf"


def test_cache_reads_the_revision_main_points_to(tmp_path):
    cache = tmp_path / "hub"
    old = mf.llama2_7b_gptq(tmp_path / "v1")
    mf.as_hf_cache(old.path, cache, "org/model", commit="1" * 40)
    new = mf.llama31_8b(tmp_path / "v2")
    mf.as_hf_cache(new.path, cache, "org/model", commit="2" * 40)
    (cache / "models--org--model" / "refs" / "main").write_text("1" * 40)
    (model,) = discover([cache]).models
    assert model.entry["source"]["revision"] == "1" * 40 and model.quantization == "gptq"


def test_a_snapshot_folder_given_directly_knows_its_repo(tmp_path):
    model = mf.mistral_7b_v03(tmp_path / "src")
    snapshot = mf.as_hf_cache(model.path, tmp_path / "hub", model.repo_id)
    (found,) = discover([snapshot]).models
    assert found.key == str(tmp_path / "hub" / "models--mistralai--Mistral-7B-Instruct-v0.3")
    assert found.entry["source"]["huggingface_id"] == model.repo_id


def test_unchanged_folders_are_not_read_again(built, monkeypatch):
    first = discover([built["meta-llama/Llama-3.1-8B-Instruct"].path.parent])
    known = Known(m.entry | {"name": m.key} for m in first.models)
    monkeypatch.setattr(hf, "read_safetensors_header", lambda path: pytest.fail(f"read {path}"))
    again = discover([built["meta-llama/Llama-3.1-8B-Instruct"].path.parent], known)
    assert [m.entry for m in again.models] == [m.entry for m in first.models]
