"""The fit estimate against vLLM's own KV-cache arithmetic and figures from real vLLM startup logs."""
from __future__ import annotations

import json

import pytest

from modelreg.discovery import hf
from modelreg.errors import BadInput
from modelreg.launch.advice.fit import (
    BLOCK_TOKENS,
    GIB,
    OVERHEAD_BYTES,
    estimate,
    fit_summary,
    kv_bytes_per_token,
    parse_size,
    tokens_that_fit,
)
from modelreg.launch.backends import SPECS
from modelreg.registry import Registry
from support import model_folders as mf

# config.json facts of two more public models (facebook/opt-125m: no GQA; Qwen/Qwen3-14B: GQA, explicit head_dim)
OPT_125M = {"architectures": ["OPTForCausalLM"], "hidden_size": 768, "num_attention_heads": 12,
            "num_hidden_layers": 12, "ffn_dim": 3072, "max_position_embeddings": 2048, "model_type": "opt",
            "torch_dtype": "float16", "vocab_size": 50272}
QWEN3_14B = {"architectures": ["Qwen3ForCausalLM"], "head_dim": 128, "hidden_size": 5120, "num_attention_heads": 40,
             "num_hidden_layers": 40, "num_key_value_heads": 8, "max_position_embeddings": 40960,
             "model_type": "qwen3", "torch_dtype": "bfloat16", "vocab_size": 151936}
DEEPSEEK_V2_LITE = {"architectures": ["DeepseekV2ForCausalLM"], "hidden_size": 2048, "num_attention_heads": 16,
                    "num_key_value_heads": 16, "num_hidden_layers": 27, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
                    "qk_nope_head_dim": 128, "v_head_dim": 128, "max_position_embeddings": 163840,
                    "model_type": "deepseek_v2"}


def arch_of(config: dict) -> dict:
    return hf.architecture_facts(config, {})


def vllm_kv_tokens(config: dict, available_bytes: int, dtype_bytes: int = 2, block_size: int = 16) -> int:
    """vLLM's own arithmetic, written from its source rather than from ours.

    ModelConfig.get_total_num_kv_heads / get_head_size pick the KV heads and head size from the config;
    FullAttentionSpec.page_size_bytes = 2 * block_size * num_kv_heads * head_size * dtype_size per layer;
    the KV cache gets available_memory // page_size_bytes // num_layers blocks of block_size tokens.
    """
    text = {**config, **(config.get("text_config") or {})}
    kv_heads = text.get("num_key_value_heads") or text["num_attention_heads"]
    head_size = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    page_size_bytes = 2 * block_size * kv_heads * head_size * dtype_bytes
    return int(available_bytes // page_size_bytes // text["num_hidden_layers"]) * block_size


@pytest.mark.parametrize("config, per_token", [
    (mf.LLAMA31_8B, 2 * 32 * 8 * 128 * 2),          # GQA: 8 KV heads for 32 query heads
    (mf.QWEN25_VL_7B_AWQ, 2 * 28 * 4 * 128 * 2),    # GQA, vision-language
    (mf.QWEN3_VL_8B_FP8, 2 * 36 * 8 * 128 * 2),     # GQA in text_config
    (QWEN3_14B, 2 * 40 * 8 * 128 * 2),
    (mf.LLAMA2_7B_CHAT, 2 * 32 * 32 * 128 * 2),     # no GQA: a KV head per query head
    (OPT_125M, 2 * 12 * 12 * 64 * 2),               # no GQA, no num_key_value_heads key at all
])
def test_kv_bytes_per_token_is_vllms(config, per_token):
    assert kv_bytes_per_token(arch_of(config)) == per_token
    for available in (1 * GIB, 3 * GIB + 12345, 57 * GIB):
        assert tokens_that_fit(available, per_token) == vllm_kv_tokens(config, available)


@pytest.mark.parametrize("config, gib, logged_tokens, source", [
    # vllm-project/vllm#10517, Llama-3.1-8B-Instruct on an RTX 3090, vLLM 0.6: "kv_cache_size=2.89GiB" and
    # "the maximum number of tokens that can be stored in KV cache (23648)"
    (mf.LLAMA31_8B, 2.89, 23648, "vllm#10517"),
    # same thread: "kv_cache_size=3.81GiB", "# GPU blocks: 1952"
    (mf.LLAMA31_8B, 3.81, 1952 * 16, "vllm#10517"),
    # LMCache/LMCache#1739, Qwen3-14B: "Available KV cache memory: 6.51 GiB", "GPU KV cache size: 42,656 tokens"
    (QWEN3_14B, 6.51, 42656, "LMCache#1739"),
])
def test_tokens_match_real_vllm_logs(config, gib, logged_tokens, source):
    ours = tokens_that_fit(int(gib * GIB), kv_bytes_per_token(arch_of(config)))
    assert ours == pytest.approx(logged_tokens, rel=0.002), source  # the logs round GiB to two decimals


def test_whole_estimate_against_a_non_gqa_vllm_run():
    """vllm-project/vllm#2031: Llama-2-7B, one A100-80GB, gpu_memory_utilization 0.9: "# GPU blocks: 7351"."""
    entry = {"metadata": {"format": "safetensors", "architecture": arch_of(mf.LLAMA2_7B_CHAT),
                          "scan": {"weights_bytes": 13_476_839_424}}}  # the fp16 safetensors of Llama-2-7b
    fit = estimate(entry, "80GiB", 0.9)
    assert fit["memory_max_context"] == pytest.approx(7351 * BLOCK_TOKENS, rel=0.02)
    assert (fit["max_context"], fit["cap"]) == (4096, "native")  # Llama-2 takes 4,096 tokens, however much fits


def user_story_entry(extra_args: list[str] | None = None) -> dict:
    """Qwen2.5-VL-7B-Instruct-AWQ as the scan records it (the upstream registry's download size for weights)."""
    entry = {"backend": "vllm", "capabilities": {"vision": True},
             "metadata": {"format": "safetensors", "architecture": arch_of(mf.QWEN25_VL_7B_AWQ),
                          "scan": {"weights_bytes": 6_939_970_304}}}
    if extra_args is not None:
        entry["backend_config"] = {"extra_args": extra_args}
    return entry


def test_the_128k_default_does_not_fit_16gib_and_a_max_model_len_is_offered():
    fit = estimate(user_story_entry(), "16GiB", 0.9)
    assert fit["known"] and fit["weights_fit"] and not fit["fits_native"] and not fit["fits"]
    assert fit["native_context"] == 128000
    suggested = fit["suggested_max_model_len"]
    assert fit["suggested_args"] == ["--max-model-len", str(suggested)]
    assert suggested % 256 == 0 and fit["max_context"] - 256 < suggested <= fit["max_context"]
    assert (6_939_970_304 + OVERHEAD_BYTES["vllm"] + GIB + suggested * 57344) <= 16 * GIB * 0.9
    configured = estimate(user_story_entry(["--max-model-len", "4096", "--enforce-eager"]), "16GiB", 0.9)
    assert configured["configured_context"] == 4096 and configured["fits"]
    roomy = estimate(user_story_entry(), "80GiB", 0.9)
    assert roomy["fits_native"] and "suggested_args" not in roomy


def test_weights_that_do_not_fit_say_so():
    entry = {"metadata": {"format": "safetensors", "architecture": arch_of(mf.LLAMA31_8B),
                          "scan": {"weights_bytes": 16_060_522_496}}}
    fit = estimate(entry, "12GiB", 0.9)
    assert not fit["weights_fit"] and not fit["fits"] and fit["max_context"] == 0
    assert "exceed" in fit["reason"] and "suggested_args" not in fit


def test_kv_cache_dtype_and_utilization_flags_are_read_from_extra_args():
    base = estimate(user_story_entry(), "24GiB", 0.9)
    fp8 = estimate(user_story_entry(["--kv-cache-dtype", "fp8", "--gpu-memory-utilization=0.8"]), "24GiB", 0.9)
    assert fp8["kv_bytes_per_token"] * 2 == base["kv_bytes_per_token"]
    assert fp8["utilization"] == 0.8 and fp8["budget_bytes"] == int(24 * GIB * 0.8)


def test_gguf_models_use_llama_cpp_cache_types():
    arch = {"num_layers": 32, "num_kv_heads": 8, "head_dim": 128, "context_length": 131072}
    entry = {"backend": "llama.cpp", "metadata": {"format": "gguf", "architecture": arch},
             "size_bytes": 4_920_734_336, "backend_config": {"extra_args": ["-ctk", "q8_0", "-ctv", "q8_0"]}}
    fit = estimate(entry, "8GiB", 0.9)
    assert fit["engine"] == "llama.cpp" and fit["overhead_bytes"] == OVERHEAD_BYTES["gguf"]
    assert fit["kv_bytes_per_token"] == int(32 * 8 * 128 * 2 * 34 / 32)  # q8_0: 34 bytes per 32 values
    assert fit["suggested_args"] == ["--ctx-size", str(fit["suggested_max_model_len"])]
    assert estimate({**entry, "backend": "llama-cpp-python"}, "8GiB", 0.9)["suggested_args"][0] == "--n_ctx"


def test_mla_caches_one_latent_vector_per_layer():
    assert kv_bytes_per_token(arch_of(DEEPSEEK_V2_LITE)) == 27 * (512 + 64) * 2


def test_unknown_facts_give_no_estimate():
    fit = estimate({"name": "remote", "metadata": {}}, "16GiB", 0.9)
    assert fit["known"] is False and "not enough facts" in fit["reason"]


@pytest.mark.parametrize("text, size", [
    ("16GiB", 16 * GIB), ("16G", 16 * GIB), ("24GB", 24 * 10 ** 9), ("12288MiB", 12 * GIB), ("1.5 GiB", 3 * GIB // 2),
    (1000, 1000),
])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_a_bad_size_is_bad_input():
    with pytest.raises(BadInput, match="16GiB"):
        parse_size("sixteen gigs")


def test_fit_summary_plans_for_the_active_profile(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps(
        {"gpu_memory": "24GiB", "profiles": {"rtx4080": {"gpu_memory": "16GiB", "gpu_memory_utilization": 0.85}}}))
    entry = user_story_entry()
    assert fit_summary(entry, Registry(tmp_path).settings)["gpu_memory_bytes"] == 24 * GIB
    small = fit_summary(entry, Registry(tmp_path, profile="rtx4080").settings)
    assert (small["gpu_memory_bytes"], small["utilization"]) == (16 * GIB, 0.85)
    assert fit_summary(entry, Registry(tmp_path).settings, gpu_memory="48GiB")["gpu_memory_bytes"] == 48 * GIB


def test_max_context_is_capped_at_native_unless_a_rope_flag_scales_it():
    entry = {"backend": "llama.cpp", "metadata": {"format": "gguf", "architecture": arch_of(mf.LLAMA2_7B_CHAT),
                                                  "scan": {"weights_bytes": 13_476_839_424}}}
    fit = estimate(entry, "80GiB", 0.9)
    assert fit["max_context"] <= fit["native_context"] == 4096 and fit["cap"] == "native"
    entry["backend_config"] = {"extra_args": ["--rope-scaling", "yarn", "--rope-scale", "4"]}
    fit = estimate(entry, "80GiB", 0.9)
    assert (fit["max_context"], fit["cap"]) == (4 * 4096, "rope-scaled")


@pytest.mark.parametrize("backend", ["vllm", "llama.cpp", "llama-cpp-python"])
def test_every_suggestion_passes_the_launch_check_for_its_backend(backend):
    from modelreg.launch.planning.checks import launch_problems
    from modelreg.settings import Settings
    entry = {"name": "m", "backend": backend, "metadata": {"format": "gguf", "architecture": arch_of(mf.LLAMA2_7B_CHAT),
                                                           "scan": {"weights_bytes": 13_476_839_424}}}
    fits = (estimate(entry, f"{gib}GiB", 0.9) for gib in range(14, 24))  # a GPU with room for < 4,096 tokens
    fit = next(f for f in fits if "suggested_args" in f)
    assert fit["suggested_args"][0] == SPECS[backend].context_flag
    entry["backend_config"] = {"port": 24001, "extra_args": fit["suggested_args"]}
    assert not [p.message for p in launch_problems(entry, Settings()) if p.error and p.field.endswith("extra_args")]
