"""Quantization and weight dtype detection from config files, safetensors headers and GGUF file types."""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

from gguf import GGMLQuantizationType, LlamaFileType

# safetensors dtype -> the label used when a model is not quantized (vLLM's and the upstream registry's spelling).
DTYPE_LABELS = {
    "BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64",
    "F8_E4M3": "fp8", "F8_E5M2": "fp8", "F8_E8M0": "fp8",
}
TORCH_DTYPE_LABELS = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
# Integer weight-only methods (quant_method -> label); the marlin spellings are kernels for the same formats.
WEIGHT_ONLY_METHODS = {"awq": "awq", "awq_marlin": "awq", "gptq": "gptq", "gptq_marlin": "gptq", "marlin": "gptq",
                       "auto-round": "auto-round", "hqq": "hqq", "aqlm": "aqlm", "eetq": "eetq", "exl2": "exl2"}
# Tensor name endings that hold quantization bookkeeping, not model parameters.
AUX_SUFFIXES = (
    ".qzeros", ".scales", ".g_idx", ".weight_scale", ".weight_scale_inv", ".input_scale", ".weight_zero_point",
    ".weight_shape", ".weight_g_idx", ".weight_global_scale", ".input_global_scale", ".k_scale", ".v_scale",
    "_scales", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".SCB", ".weight_format",
)


def quantization_from_config(config: Mapping[str, Any], quantize_config: Mapping[str, Any] | None) -> dict | None:
    """The quantization a Hugging Face folder declares: `{"method", "label", "bits", ...}` or None.

    Reads `quantization_config` in config.json (AWQ, GPTQ, FP8, compressed-tensors, bitsandbytes, MXFP4, ModelOpt,
    ...) and the old AutoGPTQ `quantize_config.json` beside it.
    """
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        qc = (config.get("text_config") or {}).get("quantization_config")
    if not isinstance(qc, dict):
        if quantize_config:
            bits = quantize_config.get("bits", 4)
            return {"method": "gptq", "label": "gptq", "bits": bits, "group_size": quantize_config.get("group_size"),
                    "desc_act": quantize_config.get("desc_act"), "source": "quantize_config.json"}
        return None
    method = str(qc.get("quant_method") or qc.get("quantization_method") or "").lower()
    detail: dict[str, Any] = {"method": method or "unknown", "source": "config.json"}
    if method in WEIGHT_ONLY_METHODS:
        detail.update(label=WEIGHT_ONLY_METHODS[method], bits=qc.get("bits", qc.get("w_bit")),
                      group_size=qc.get("group_size", qc.get("q_group_size")))
    elif method == "bitsandbytes":
        bits = 4 if qc.get("load_in_4bit") else 8 if qc.get("load_in_8bit") else None
        detail.update(label=f"bnb-{bits}bit" if bits else "bitsandbytes", bits=bits,
                      quant_type=qc.get("bnb_4bit_quant_type"))
    elif method == "compressed-tensors":
        detail.update(_compressed_tensors(qc))
    elif method == "modelopt":
        algo = str(qc.get("quant_algo") or (qc.get("quantization") or {}).get("quant_algo") or "modelopt").lower()
        detail.update(label=algo, bits=4 if "fp4" in algo else 8 if "8" in algo else None)
    elif method:
        detail.update(label=method, bits=qc.get("bits"))
        if method == "fp8":
            detail["bits"] = 8
            detail["weight_block_size"] = qc.get("weight_block_size")
        elif method == "mxfp4":
            detail["bits"] = 4
    else:
        return None
    return {k: v for k, v in detail.items() if v is not None}


def _compressed_tensors(qc: Mapping[str, Any]) -> dict[str, Any]:
    """Name a compressed-tensors scheme by its first weight group: fp8, nvfp4, w4a16, w8a8 ..."""
    groups = qc.get("config_groups") or {}
    group: Mapping[str, Any] = next(iter(groups.values()), {}) if isinstance(groups, dict) else {}
    weights = group.get("weights") or {}
    acts = group.get("input_activations") or {}
    bits, kind = weights.get("num_bits"), weights.get("type")
    if kind == "float" and bits == 8:
        label = "fp8"
    elif kind == "float" and bits == 4:
        label = "nvfp4"
    elif kind == "int" and bits:
        label = f"w{bits}a{acts.get('num_bits') or 16}"
    else:
        label = str(qc.get("format") or "compressed-tensors")
    return {"label": label, "bits": bits, "format": qc.get("format"), "scheme_type": kind}


def dtype_of(counts: Mapping[str, int]) -> str | None:
    """The dominant safetensors dtype by parameter count (ties broken by name, so the result is stable)."""
    if not counts:
        return None
    return max(sorted(counts), key=lambda d: counts[d])


def label_for_dtype(dtype: str | None, torch_dtype: str | None = None) -> str | None:
    if dtype in DTYPE_LABELS:
        return DTYPE_LABELS[dtype]
    return TORCH_DTYPE_LABELS.get(str(torch_dtype).replace("torch.", "")) if torch_dtype else None


def parameter_count(tensors: Iterable[tuple[str, str, int]], quant: Mapping[str, Any] | None) -> int:
    """Model parameters from (name, dtype, elements) of safetensors tensors.

    Packed formats store several weights per element: int32-packed AWQ/GPTQ/compressed-tensors weights hold 32/bits
    each, uint8 4-bit (bitsandbytes, MXFP4 blocks) two each. Scales, zero points and other bookkeeping are skipped.
    """
    if not quant:
        return sum(elements for name, _, elements in tensors
                   if not (name.endswith(AUX_SUFFIXES) or ".quant_state." in name))
    bits = quant.get("bits") or 4
    packed_all = quant.get("method") in ("awq", "gptq")
    total = 0
    for name, dtype, elements in tensors:
        if name.endswith(AUX_SUFFIXES) or ".quant_state." in name:
            continue
        if dtype == "I32" and (packed_all or name.endswith((".qweight", ".weight_packed"))):
            elements *= 32 // bits
        elif dtype == "U8" and (bits == 4 or name.endswith("_blocks")):
            elements *= 2
        total += elements
    return total


def gguf_file_type_label(file_type: Any) -> str | None:
    """`general.file_type` (llama.cpp's LlamaFileType) as a label such as q4_k_m, f16, bf16."""
    try:
        name = LlamaFileType(int(file_type)).name
    except (TypeError, ValueError):
        return None
    if name == "GUESSED":
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()


def gguf_tensor_type_label(type_counts: Mapping[int, int]) -> str | None:
    """The dominant tensor type by elements, for GGUF files without `general.file_type`."""
    if not type_counts:
        return None
    ggml_type = max(sorted(type_counts), key=lambda t: type_counts[t])
    try:
        return GGMLQuantizationType(ggml_type).name.lower()
    except ValueError:
        return None


def count_by(pairs: Iterable[tuple[Any, int]]) -> dict:
    counts: Counter = Counter()
    for key, value in pairs:
        counts[key] += value
    return dict(sorted(counts.items(), key=lambda kv: str(kv[0])))
