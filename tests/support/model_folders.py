"""Builders for real model folders in temp dirs: public models' config files, safetensors and GGUF files, the
Hugging Face cache layout and an Ollama store, all written by the real libraries at a small scale.

The config.json / tokenizer_config.json facts are those of the public model cards (layers, heads, context, rope,
quantization_config). Weights keep each model's real tensor names, dtypes and packing; every dimension is divided by
SCALE (rounded up to a multiple of 8 so int4 packing stays exact), so files stay small while headers look real.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors import TensorSpec, serialize_file

SCALE = 64
ST_DTYPES = {"BF16": ("bfloat16", 2), "F16": ("float16", 2), "F32": ("float32", 4), "I32": ("int32", 4),
             "U8": ("uint8", 1), "F8_E4M3": ("float8_e4m3fn", 1)}

LLAMA31_TEMPLATE = (
    "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n"
    "{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n"
    "{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if tools is not none %}\n"
    "    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n")
QWEN25VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|>"
    "<|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QWEN3_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {{- \"# Tools\\n\\nYou may call one or more functions "
    "to assist with the user query.\\n\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\" }}\n{%- endif %}\n"
    "{%- for message in messages %}\n    {{- '<|im_start|>' + message.role + '\\n' + message.content + "
    "'<|im_end|>\\n' }}"
    "\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n")
MISTRAL_V03_TEMPLATE = (
    "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n"
    "{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n{{- bos_token }}\n"
    "{%- for message in messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS] [\" }}\n        {%- endif %}\n"
    "        {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- endif %}\n{%- endfor %}\n")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
    "message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
OLLAMA_LLAMA31_TEMPLATE = (
    "{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>\n{{- if .System }}\n\n{{ .System }}\n"
    "{{- end }}\n{{- if .Tools }}\n\nYou are a helpful assistant with tool calling capabilities.\n"
    "{{- end }}<|eot_id|>\n"
    "{{- end }}\n{{- range $i, $_ := .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}"
    "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")


# ---- the public models' config files (facts from their model cards) ------------------------------------------------

LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256,
}
QWEN25_VL_7B_AWQ = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
    "max_window_layers": 28, "model_type": "qwen2_5_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "quantization_config": {"bits": 4, "group_size": 128, "modules_to_not_convert": ["visual"],
                            "quant_method": "awq", "version": "gemm", "zero_point": True},
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.49.0.dev0", "use_cache": True, "use_sliding_window": False,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 152064,
}
QWEN3_VL_8B_FP8 = {
    "architectures": ["Qwen3VLForConditionalGeneration"], "image_token_id": 151655, "model_type": "qwen3_vl",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128], "modules_to_not_convert": ["lm_head", "visual"]},
    "text_config": {
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643, "dtype": "bfloat16",
        "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
        "initializer_range": 0.02, "intermediate_size": 12288, "max_position_embeddings": 262144,
        "model_type": "qwen3_vl_text", "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        "rope_theta": 5000000, "use_cache": True, "vocab_size": 151936,
    },
    "tie_word_embeddings": False, "transformers_version": "4.57.0.dev0", "video_token_id": 151656,
    "vision_config": {"deepstack_visual_indexes": [8, 16, 24], "depth": 27, "hidden_act": "gelu_pytorch_tanh",
                      "hidden_size": 1152, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 4304,
                      "model_type": "qwen3_vl", "num_heads": 16, "num_position_embeddings": 2304,
                      "out_hidden_size": 4096, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
    "vision_end_token_id": 151653, "vision_start_token_id": 151652,
}
LLAMA2_7B_CHAT = {
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pad_token_id": 0, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.30.2", "use_cache": True, "vocab_size": 32000,
}
# AutoGPTQ's quantize_config.json of TheBloke/Llama-2-7B-Chat-GPTQ (config.json has no quantization_config).
GPTQ_QUANTIZE_CONFIG = {"bits": 4, "group_size": 128, "damp_percent": 0.01, "desc_act": False, "static_groups": False,
                        "sym": True, "true_sequential": True, "model_name_or_path": None,
                        "model_file_base_name": "model"}
MISTRAL_7B_V03 = {
    "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0",
    "use_cache": True, "vocab_size": 32768,
}
GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0, "eos_token_id": 200002,
    "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880, "initial_context_length": 4096,
    "initializer_range": 0.02, "intermediate_size": 2880, "layer_types": ["sliding_attention", "full_attention"] * 12,
    "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64,
    "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 8, "num_local_experts": 32,
    "output_router_logits": False, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                     "rope_type": "yarn", "truncate": False},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088,
}


# ---- tensors ---------------------------------------------------------------------------------------------------


def scaled(dim: int, scale: int = SCALE) -> int:
    return max(8, math.ceil(dim / scale / 8) * 8)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    parameters: int  # model parameters this tensor stands for (packed int4 counts 8 per int32; scales count 0)


def decoder_tensors(cfg: dict, dtype: str, quant: str | None = None, qkv_bias: bool = False,
                    scale: int = SCALE) -> list[Tensor]:
    """A Llama-style decoder's tensors (real names), scaled; `quant` packs linear layers as awq / gptq / fp8."""
    text = {**cfg, **(cfg.get("text_config") or {})}
    hidden, inter = scaled(text["hidden_size"], scale), scaled(text["intermediate_size"], scale)
    vocab = scaled(text["vocab_size"], scale)
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    q_out = scaled(text["num_attention_heads"] * head_dim, scale)
    kv_out = scaled(text["num_key_value_heads"] * head_dim, scale)
    group = 8

    def plain(name: str, *shape: int, kind: str = dtype) -> list[Tensor]:
        return [Tensor(name, shape, kind, math.prod(shape))]

    def linear(name: str, out: int, inp: int) -> list[Tensor]:
        if quant == "awq":
            return [Tensor(f"{name}.qweight", (inp, out // 8), "I32", inp * out),
                    Tensor(f"{name}.qzeros", (inp // group, out // 8), "I32", 0),
                    Tensor(f"{name}.scales", (inp // group, out), "F16", 0)]
        if quant == "gptq":
            return [Tensor(f"{name}.qweight", (inp // 8, out), "I32", inp * out),
                    Tensor(f"{name}.qzeros", (inp // group, out // 8), "I32", 0),
                    Tensor(f"{name}.scales", (inp // group, out), "F16", 0),
                    Tensor(f"{name}.g_idx", (inp,), "I32", 0)]
        if quant == "fp8":
            return [Tensor(f"{name}.weight", (out, inp), "F8_E4M3", out * inp),
                    Tensor(f"{name}.weight_scale_inv", (math.ceil(out / 8), math.ceil(inp / 8)), "F32", 0)]
        return plain(f"{name}.weight", out, inp)

    prefix = "model.language_model" if cfg.get("text_config") else "model"
    tensors = plain(f"{prefix}.embed_tokens.weight", vocab, hidden)
    for i in range(text["num_hidden_layers"]):
        layer = f"{prefix}.layers.{i}"
        tensors += plain(f"{layer}.input_layernorm.weight", hidden)
        for proj, out in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
            tensors += linear(f"{layer}.self_attn.{proj}", out, hidden)
            if qkv_bias:
                tensors += plain(f"{layer}.self_attn.{proj}.bias", out)
        tensors += linear(f"{layer}.self_attn.o_proj", hidden, q_out)
        tensors += linear(f"{layer}.mlp.gate_proj", inter, hidden)
        tensors += linear(f"{layer}.mlp.up_proj", inter, hidden)
        tensors += linear(f"{layer}.mlp.down_proj", hidden, inter)
        tensors += plain(f"{layer}.post_attention_layernorm.weight", hidden)
    tensors += plain(f"{prefix}.norm.weight", hidden)
    tensors += plain("lm_head.weight", vocab, hidden)
    return tensors


def gpt_oss_tensors(cfg: dict, scale: int = SCALE) -> list[Tensor]:
    """gpt-oss: bf16 attention, MXFP4 experts (uint8 blocks of 32 4-bit weights in 16 bytes, uint8 scales)."""
    hidden, inter, vocab = scaled(cfg["hidden_size"], scale), scaled(cfg["intermediate_size"], scale), scaled(
        cfg["vocab_size"], scale)
    experts, heads = cfg["num_local_experts"], cfg["num_attention_heads"]
    q_out, kv_out = scaled(heads * cfg["head_dim"], scale), scaled(cfg["num_key_value_heads"] * cfg["head_dim"], scale)

    def t(name: str, shape: tuple[int, ...], dtype: str = "BF16", parameters: int | None = None) -> Tensor:
        return Tensor(name, shape, dtype, math.prod(shape) if parameters is None else parameters)

    tensors = [t("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(cfg["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        tensors += [t(f"{layer}.input_layernorm.weight", (hidden,)), t(f"{layer}.self_attn.sinks", (heads,))]
        for proj, out, inp in (("q_proj", q_out, hidden), ("k_proj", kv_out, hidden), ("v_proj", kv_out, hidden),
                               ("o_proj", hidden, q_out)):
            tensors += [t(f"{layer}.self_attn.{proj}.weight", (out, inp)), t(f"{layer}.self_attn.{proj}.bias", (out,))]
        tensors += [t(f"{layer}.mlp.router.weight", (experts, hidden)), t(f"{layer}.mlp.router.bias", (experts,))]
        for proj, out, inp in (("gate_up_proj", 2 * inter, hidden), ("down_proj", hidden, inter)):
            blocks = (experts, out, math.ceil(inp / 32), 16)
            tensors += [t(f"{layer}.mlp.experts.{proj}_blocks", blocks, "U8", 2 * math.prod(blocks)),
                        t(f"{layer}.mlp.experts.{proj}_scales", blocks[:3], "U8", 0),
                        t(f"{layer}.mlp.experts.{proj}_bias", (experts, out))]
        tensors.append(t(f"{layer}.post_attention_layernorm.weight", (hidden,)))
    return tensors + [t("model.norm.weight", (hidden,)), t("lm_head.weight", (vocab, hidden))]


def vision_tensors(vision: dict, dtype: str, prefix: str, scale: int = SCALE) -> list[Tensor]:
    hidden, inter = scaled(vision["hidden_size"], scale), scaled(vision["intermediate_size"], scale)
    patch = vision["patch_size"]
    embed = (hidden, 3, 2, patch, patch)
    out = [Tensor(f"{prefix}.patch_embed.proj.weight", embed, dtype, math.prod(embed))]
    for i in range(vision["depth"]):
        block = f"{prefix}.blocks.{i}"
        for name, shape in (("norm1.weight", (hidden,)), ("attn.qkv.weight", (3 * hidden, hidden)),
                            ("attn.proj.weight", (hidden, hidden)), ("norm2.weight", (hidden,)),
                            ("mlp.up_proj.weight", (inter, hidden)), ("mlp.down_proj.weight", (hidden, inter))):
            out.append(Tensor(f"{block}.{name}", shape, dtype, math.prod(shape)))
    return out


def write_safetensors(path: Path, tensors: list[Tensor], metadata: dict[str, str] | None = None) -> int:
    """Write `tensors` (zeros) with the safetensors library; returns the data size in bytes."""
    buffers, specs, total = [], {}, 0
    for t in tensors:
        st_dtype, width = ST_DTYPES[t.dtype]
        buf = np.zeros(max(1, math.prod(t.shape) * width), dtype=np.uint8)
        buffers.append(buf)
        specs[t.name] = TensorSpec(dtype=st_dtype, shape=t.shape, data_ptr=buf.ctypes.data, data_len=buf.nbytes)
        total += buf.nbytes
    serialize_file(specs, str(path), metadata=metadata or {"format": "pt"})
    return total


def write_shards(folder: Path, tensors: list[Tensor], shards: int) -> None:
    """`model.safetensors`, or `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`."""
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors)
        return
    per = math.ceil(len(tensors) / shards)
    weight_map, total = {}, 0
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = tensors[i * per:(i + 1) * per]
        total += write_safetensors(folder / name, part)
        weight_map.update({t.name: name for t in part})
    write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# ---- Hugging Face model folders ----------------------------------------------------------------------------------


@dataclass
class BuiltModel:
    path: Path
    repo_id: str
    parameters: int
    expect: dict[str, Any] = field(default_factory=dict)


def _folder(root: Path, repo_id: str, config: dict, tensors: list[Tensor], shards: int,
            files: dict[str, Any], expect: dict[str, Any]) -> BuiltModel:
    folder = root / repo_id.split("/")[-1]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config)
    for name, content in files.items():
        if isinstance(content, str):
            (folder / name).write_text(content)
        else:
            write_json(folder / name, content)
    write_shards(folder, tensors, shards)
    return BuiltModel(folder, repo_id, sum(t.parameters for t in tensors), expect)


def llama31_8b(root: Path, scale: int = SCALE, repo_id: str | None = None) -> BuiltModel:
    tensors = decoder_tensors(LLAMA31_8B, "BF16", scale=scale)
    return _folder(root, repo_id or "meta-llama/Llama-3.1-8B-Instruct", LLAMA31_8B, tensors, 4, {
        "tokenizer_config.json": {"bos_token": "<|begin_of_text|>", "chat_template": LLAMA31_TEMPLATE,
                                  "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>",
                                  "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"},
        "generation_config.json": {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
                                   "temperature": 0.6, "top_p": 0.9},
        "README.md": "---\nlicense: llama3.1\n---\n# Llama 3.1 8B Instruct\n",
    }, {"quantization": "bf16", "context_length": 131072, "num_kv_heads": 8, "vision": False, "tools": True})


def qwen25_vl_7b_awq(root: Path, scale: int = SCALE, repo_id: str | None = None) -> BuiltModel:
    tensors = decoder_tensors(QWEN25_VL_7B_AWQ, "F16", quant="awq", qkv_bias=True, scale=scale)
    tensors += vision_tensors(QWEN25_VL_7B_AWQ["vision_config"], "F16", "visual", scale)
    return _folder(root, repo_id or "Qwen/Qwen2.5-VL-7B-Instruct-AWQ", QWEN25_VL_7B_AWQ, tensors, 2, {
        "tokenizer_config.json": {"model_max_length": 131072, "tokenizer_class": "Qwen2Tokenizer",
                                  "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "chat_template.json": {"chat_template": QWEN25VL_TEMPLATE},
        "preprocessor_config.json": {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
                                     "temporal_patch_size": 2, "merge_size": 2,
                                     "image_processor_type": "Qwen2VLImageProcessor",
                                     "processor_class": "Qwen2_5_VLProcessor"},
        "generation_config.json": {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "temperature": 1e-06},
    }, {"quantization": "awq", "context_length": 128000, "num_kv_heads": 4, "vision": True, "tools": False})


def qwen3_vl_8b_fp8(root: Path, scale: int = SCALE, repo_id: str | None = None) -> BuiltModel:
    tensors = decoder_tensors(QWEN3_VL_8B_FP8, "BF16", quant="fp8", scale=scale)
    tensors += vision_tensors(QWEN3_VL_8B_FP8["vision_config"], "BF16", "model.visual", scale)
    return _folder(root, repo_id or "Qwen/Qwen3-VL-8B-Instruct-FP8", QWEN3_VL_8B_FP8, tensors, 2, {
        "tokenizer_config.json": {"model_max_length": 262144, "tokenizer_class": "Qwen2Tokenizer",
                                  "eos_token": "<|im_end|>"},
        "chat_template.jinja": QWEN3_TEMPLATE,
        "preprocessor_config.json": {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
                                     "image_processor_type": "Qwen2VLImageProcessorFast",
                                     "processor_class": "Qwen3VLProcessor"},
    }, {"quantization": "fp8", "context_length": 262144, "num_kv_heads": 8, "vision": True, "tools": True})


def llama2_7b_gptq(root: Path, scale: int = SCALE, repo_id: str | None = None) -> BuiltModel:
    """TheBloke's GPTQ layout: one model.safetensors and the old AutoGPTQ quantize_config.json."""
    return _folder(root, repo_id or "TheBloke/Llama-2-7B-Chat-GPTQ", LLAMA2_7B_CHAT,
                   decoder_tensors(LLAMA2_7B_CHAT, "F16", quant="gptq", scale=scale), 1, {
                       "quantize_config.json": GPTQ_QUANTIZE_CONFIG,
                       "tokenizer_config.json": {"model_max_length": 4096, "chat_template": LLAMA2_TEMPLATE,
                                                 "tokenizer_class": "LlamaTokenizer"},
                   }, {"quantization": "gptq", "context_length": 4096, "num_kv_heads": 32, "vision": False,
                       "tools": False})


def mistral_7b_v03(root: Path, scale: int = SCALE, repo_id: str | None = None) -> BuiltModel:
    built = _folder(root, repo_id or "mistralai/Mistral-7B-Instruct-v0.3", MISTRAL_7B_V03,
                    decoder_tensors(MISTRAL_7B_V03, "BF16", scale=scale), 3, {
                        "tokenizer_config.json": {"model_max_length": 1000000000000000019884624838656,
                                                  "chat_template": MISTRAL_V03_TEMPLATE,
                                                  "tokenizer_class": "LlamaTokenizer"},
                    }, {"quantization": "bf16", "context_length": 32768, "num_kv_heads": 8, "vision": False,
                        "tools": True})
    # Mistral also ships the same weights as consolidated.safetensors (for mistral_inference); not a second model.
    write_safetensors(built.path / "consolidated.safetensors", decoder_tensors(MISTRAL_7B_V03, "BF16", scale=scale)[:3])
    return built


def gpt_oss_20b(root: Path, scale: int = SCALE, repo_id: str | None = None) -> BuiltModel:
    return _folder(root, repo_id or "openai/gpt-oss-20b", GPT_OSS_20B, gpt_oss_tensors(GPT_OSS_20B, scale), 3, {
        "chat_template.jinja": "{#- gpt-oss harmony format -#}{%- if tools -%}<|start|>developer<|message|>"
                               "{%- endif -%}{%- for message in messages -%}<|start|>{{ message.role }}<|message|>"
                               "{{ message.content }}<|end|>{%- endfor -%}",
        "tokenizer_config.json": {"model_max_length": 1000000000000000019884624838656,
                                  "tokenizer_class": "PreTrainedTokenizerFast"},
    }, {"quantization": "mxfp4", "context_length": 131072, "num_kv_heads": 8, "vision": False, "tools": True})


HF_MODELS = (llama31_8b, qwen25_vl_7b_awq, qwen3_vl_8b_fp8, llama2_7b_gptq, mistral_7b_v03, gpt_oss_20b)


# ---- the Hugging Face cache layout -------------------------------------------------------------------------------


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def as_hf_cache(folder: Path, cache_dir: Path, repo_id: str, commit: str | None = None) -> Path:
    """Move a model folder into `cache_dir` as huggingface_hub lays it out; returns the snapshot folder.

    `models--org--name/blobs/<sha256 for LFS files, git blob id for others>`, `refs/main` holding the commit,
    `snapshots/<commit>/<file>` as relative symlinks to the blobs.
    """
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        lfs = path.suffix in (".safetensors", ".gguf")
        blob = repo_dir / "blobs" / (hashlib.sha256(data).hexdigest() if lfs else git_blob_id(data))
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    shutil.rmtree(folder)
    return snapshot


# ---- GGUF files --------------------------------------------------------------------------------------------------


def write_gguf(path: Path, arch: str, *, context: int, layers: int, heads: int, kv_heads: int, hidden: int,
               file_type: gguf.LlamaFileType | None = gguf.LlamaFileType.MOSTLY_Q4_K_M, vocab: int = 2000,
               template: str | None = None, name: str | None = None, extra: dict[str, Any] | None = None,
               split: tuple[int, int] | None = None, tensors: int = 4) -> Path:
    """A small real GGUF (gguf library): llama.cpp's metadata keys, a vocabulary, Q4_K and F32 tensors.

    Parameters in the file: `tensors` Q4_K tensors of 2 x 256 weights plus one F32 norm of 64.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch)
    if name:
        writer.add_name(name)
    if file_type is not None:
        writer.add_file_type(file_type)
    if arch != "clip" and not (split and split[0] > 1):  # later split parts hold tensors, not metadata
        writer.add_context_length(context)
        writer.add_block_count(layers)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_embedding_length(hidden)
        writer.add_feed_forward_length(hidden * 3)
        writer.add_rope_freq_base(500000.0)
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list([f"t{i}".encode() for i in range(vocab)])
        writer.add_token_types([1] * vocab)
        writer.add_token_merges([f"t{i} t{i + 1}" for i in range(vocab - 1)])
    if split:
        writer.add_uint16("split.no", split[0] - 1)
        writer.add_uint16("split.count", split[1])
    for key, value in (extra or {}).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    if template:
        writer.add_chat_template(template)
    for i in range(tensors):
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((2, 144), dtype=np.uint8),
                          raw_dtype=gguf.GGMLQuantizationType.Q4_K)  # 2 rows of 256 weights in Q4_K blocks
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def llama32_1b_gguf(folder: Path) -> Path:
    return write_gguf(folder / "Llama-3.2-1B-Instruct-Q4_K_M.gguf", "llama", context=131072, layers=16, heads=32,
                      kv_heads=8, hidden=2048, template=LLAMA31_TEMPLATE, name="Llama 3.2 1B Instruct")


def qwen25_vl_gguf_with_projector(folder: Path) -> tuple[Path, Path]:
    model = write_gguf(folder / "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf", "qwen2vl", context=128000, layers=28,
                       heads=28, kv_heads=4, hidden=3584, template=QWEN25VL_TEMPLATE)
    projector = write_gguf(folder / "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf", "clip", context=0, layers=0, heads=0,
                           kv_heads=0, hidden=0, file_type=gguf.LlamaFileType.MOSTLY_F16,
                           extra={"clip.has_vision_encoder": True, "clip.projector_type": "qwen2.5vl_merger"})
    return model, projector


def split_gguf(folder: Path, parts: int = 2) -> list[Path]:
    return [write_gguf(folder / f"Qwen2.5-14B-Instruct-Q5_K_M-{i:05d}-of-{parts:05d}.gguf", "qwen2", context=32768,
                       layers=48, heads=40, kv_heads=8, hidden=5120, file_type=gguf.LlamaFileType.MOSTLY_Q5_K_M,
                       template=QWEN3_TEMPLATE if i == 1 else None, split=(i, parts))
            for i in range(1, parts + 1)]


# ---- an Ollama store ---------------------------------------------------------------------------------------------


MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"


def _blob(models: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (models / "blobs").mkdir(parents=True, exist_ok=True)
    (models / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def ollama_model(models: Path, name: str, gguf_file: Path, *, family: str, parameter_size: str, file_type: str,
                 template: str | None = None, params: dict | None = None, projector: Path | None = None,
                 host: str = "registry.ollama.ai") -> Path:
    """One model in an Ollama store as `ollama pull` leaves it: blobs by sha256 and a compact manifest."""
    layers = [{"mediaType": "application/vnd.ollama.image.model", **_blob(models, gguf_file.read_bytes())}]
    if projector:
        layers.append({"mediaType": "application/vnd.ollama.image.projector", **_blob(models, projector.read_bytes())})
    if template:
        layers.append({"mediaType": "application/vnd.ollama.image.template", **_blob(models, template.encode())})
    layers.append({"mediaType": "application/vnd.ollama.image.license",
                   **_blob(models, b"LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\n")})
    if params:
        layers.append({"mediaType": "application/vnd.ollama.image.params",
                       **_blob(models, json.dumps(params).encode())})
    config = {"model_format": "gguf", "model_family": family, "model_families": [family],
              "model_type": parameter_size, "file_type": file_type, "architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA,
                "config": {"mediaType": CONFIG_MEDIA, **_blob(models, json.dumps(config).encode())},
                "layers": layers}
    base, _, tag = name.partition(":")
    namespace, _, model = base.rpartition("/")
    path = models / "manifests" / host / (namespace or "library") / model / (tag or "latest")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, separators=(",", ":")))
    return path


def ollama_store(models: Path, scratch: Path) -> dict[str, Path]:
    """An Ollama store with llama3.1:latest (tools), llava:7b (projector layer), huihui_ai/qwen3-abliterated:8b."""
    llama = write_gguf(scratch / "llama31.gguf", "llama", context=131072, layers=32, heads=32, kv_heads=8,
                       hidden=4096, template=None)
    llava = write_gguf(scratch / "llava.gguf", "llama", context=4096, layers=32, heads=32, kv_heads=32, hidden=4096,
                       file_type=gguf.LlamaFileType.MOSTLY_Q4_0)
    clip = write_gguf(scratch / "llava-mmproj.gguf", "clip", context=0, layers=0, heads=0, kv_heads=0, hidden=0,
                      file_type=gguf.LlamaFileType.MOSTLY_F16, extra={"clip.has_vision_encoder": True})
    qwen3 = write_gguf(scratch / "qwen3.gguf", "qwen3", context=40960, layers=36, heads=32, kv_heads=8, hidden=4096,
                       template=QWEN3_TEMPLATE)
    return {
        "llama3.1:latest": ollama_model(models, "llama3.1:latest", llama, family="llama", parameter_size="8.0B",
                                        file_type="Q4_K_M", template=OLLAMA_LLAMA31_TEMPLATE,
                                        params={"stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}),
        "llava:7b": ollama_model(models, "llava:7b", llava, family="llama", parameter_size="7B", file_type="Q4_0",
                                 projector=clip, template="[INST] {{ if .System }}{{ .System }} {{ end }}"
                                                          "{{ .Prompt }} [/INST]"),
        "huihui_ai/qwen3-abliterated:8b": ollama_model(models, "huihui_ai/qwen3-abliterated:8b", qwen3,
                                                       family="qwen3", parameter_size="8.2B", file_type="Q4_K_M"),
    }
