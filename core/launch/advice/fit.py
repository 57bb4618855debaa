"""Fit estimate: weight memory and KV-cache bytes per token from discovered facts, and the largest context that fits."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from modelreg.errors import BadInput
from modelreg.launch.backends import LLAMA_CPP, OLLAMA, SPECS, VLLM, canonical_backend
from modelreg.launch.flags import flag_value, with_flag, without_flag
from modelreg.values import human_size, parse_size

if TYPE_CHECKING:
    from modelreg.settings import Settings

GIB = 1024 ** 3
BLOCK_TOKENS = 16            # vLLM's default KV block size; its cache holds whole blocks
# A suggested context is a multiple of this: llama.cpp pads its context up to a multiple of 256 (so a finer one would
# be padded past what fits), and it is whole 16-token vLLM KV blocks. A coarser step only gives tokens away.
CONTEXT_STEP = 256
# Memory a backend needs besides weights and KV cache (see README, "Fit estimate").
OVERHEAD_BYTES = {"vllm": 2 * GIB, "gguf": GIB // 2}
VISION_OVERHEAD_BYTES = GIB  # the vision encoder's activations when the backend profiles the largest image
_VLLM_KV_DTYPES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "bfloat16": 2, "float16": 2}


_PLAIN_TYPE_BYTES = {"f16": 2.0, "bf16": 2.0, "f32": 4.0}  # llama.cpp's default KV cache types, without gguf


def _ggml_type_bytes(name: str | None) -> float:
    if not name:
        return 2.0
    if name.lower() in _PLAIN_TYPE_BYTES:
        return _PLAIN_TYPE_BYTES[name.lower()]
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # numpy and gguf load only for a quantized cache type

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[name.upper()]]
    except KeyError as exc:
        raise BadInput(f"unknown llama.cpp cache type {name!r}; use f16, q8_0, q4_0 ...") from exc
    return size / block


def kv_bytes_per_token(arch: dict[str, Any], k_bytes: float = 2, v_bytes: float | None = None) -> int | None:
    """KV-cache bytes one token takes in every layer: 2 * layers * kv_heads * head_dim * dtype_bytes.

    Key and value widths may differ (GGUF key_length / value_length). MLA models (DeepSeek V2/V3: `kv_lora_rank`)
    cache one latent vector per layer: (kv_lora_rank + qk_rope_head_dim) * dtype_bytes, as vLLM does.
    """
    layers = arch.get("num_layers")
    if not layers:
        return None
    if arch.get("kv_lora_rank"):
        return int(layers * (arch["kv_lora_rank"] + (arch.get("qk_rope_head_dim") or 0)) * k_bytes)
    kv_heads, head_dim = arch.get("num_kv_heads"), arch.get("head_dim")
    if not kv_heads or not head_dim:
        return None
    v_dim = arch.get("v_head_dim") or head_dim
    return int(layers * kv_heads * (head_dim * k_bytes + v_dim * (k_bytes if v_bytes is None else v_bytes)))


def suggested_context(tokens: int) -> int | None:
    """The context to suggest where at most `tokens` fit: rounded down to a multiple of CONTEXT_STEP (to whole KV
    blocks below that); None when not one block fits."""
    step = CONTEXT_STEP if tokens >= CONTEXT_STEP else BLOCK_TOKENS
    return tokens // step * step or None


def tokens_that_fit(kv_bytes: int, per_token: int) -> int:
    """Tokens a KV cache of `kv_bytes` holds, in whole 16-token blocks (vLLM's num_blocks * block_size)."""
    return max(0, kv_bytes // (per_token * BLOCK_TOKENS) * BLOCK_TOKENS)


def _engine(entry: dict[str, Any]) -> tuple[str, str]:
    """("vllm" or "gguf", the backend whose flags extra_args are read with)."""
    try:
        backend = canonical_backend(entry.get("backend"))
    except BadInput:
        backend = None
    if backend == VLLM or (backend is None and (entry.get("metadata") or {}).get("format") == "safetensors"):
        return "vllm", VLLM
    return "gguf", backend or LLAMA_CPP


def _rope_factor(args: list[str], backend: str) -> float | None:
    """The context scale factor a rope-scaling flag in extra_args sets, or None without one."""
    def number(flag: str) -> float | None:
        try:
            value = flag_value(args, flag, backend)
            return float(value) if value else None
        except (ValueError, BadInput):
            return None
    if backend == VLLM:
        try:  # vLLM takes rope scaling as a config override: --hf-overrides '{"rope_scaling": {"factor": 4, ...}}'
            overrides = json.loads(flag_value(args, "--hf-overrides", backend) or "null")
        except (ValueError, BadInput):
            overrides = None
        rope = overrides.get("rope_scaling") if isinstance(overrides, dict) else None
        return float(rope["factor"]) if isinstance(rope, dict) and rope.get("factor") else None
    scale = number("--rope-scale" if backend == LLAMA_CPP else "--rope_freq_scale")
    if backend == LLAMA_CPP:
        freq_scale = number("--rope-freq-scale")
        return scale or (1 / freq_scale if freq_scale else None)
    return 1 / scale if scale else None


def context_cap(args: list[str], backend: str, native: int | None) -> tuple[int | None, str]:
    """The largest context a model serves: its native context, or the rope-scaled one where extra_args scale it."""
    if not native:
        return None, "GPU memory"
    factor = _rope_factor(args, backend)
    if factor and factor > 1:
        return int(native * factor), "rope-scaled context"
    return int(native), "native context"


def estimate(entry: dict[str, Any], gpu_memory: str | int, utilization: float) -> dict[str, Any]:
    """The fit of one (merged or discovered) entry on a GPU of `gpu_memory` at `utilization`.

    budget   = gpu_memory * utilization
    kv_bytes = budget - weights - overhead
    tokens   = kv_bytes // kv_bytes_per_token, rounded down to whole 16-token blocks
    """
    meta = entry.get("metadata") or {}
    arch = meta.get("architecture") or {}
    scan = meta.get("scan") or {}
    args = list((entry.get("backend_config") or {}).get("extra_args") or [])
    engine, backend = _engine(entry)
    utilization = float(flag_value(args, "--gpu-memory-utilization", backend) or utilization)
    if engine == "vllm":
        kv_dtype = flag_value(args, "--kv-cache-dtype", backend) or "auto"
        k_bytes: float = _VLLM_KV_DTYPES.get(kv_dtype.lower()) or 2
        v_bytes = None
    else:
        k_type = flag_value(args, "--cache-type-k", backend) or "f16"
        v_type = flag_value(args, "--cache-type-v", backend) or "f16"
        kv_dtype = f"{k_type}/{v_type}"
        k_bytes, v_bytes = _ggml_type_bytes(k_type), _ggml_type_bytes(v_type)
    gpu_bytes = parse_size(gpu_memory)
    per_token = kv_bytes_per_token(arch, k_bytes, v_bytes)
    weights = scan.get("weights_bytes") or entry.get("size_bytes")
    native = arch.get("context_length")
    vision = bool((entry.get("capabilities") or {}).get("vision"))
    overhead = OVERHEAD_BYTES[engine] + (VISION_OVERHEAD_BYTES if vision else 0)
    budget = int(gpu_bytes * utilization)
    result: dict[str, Any] = {
        "engine": "vllm" if engine == "vllm" else "llama.cpp",
        "gpu_memory_bytes": gpu_bytes,
        "utilization": utilization,
        "budget_bytes": budget,
        "weights_bytes": weights,
        "overhead_bytes": overhead,
        "kv_cache_dtype": kv_dtype,
        "kv_bytes_per_token": per_token,
        "native_context": native,
        "configured_context": effective_context(entry),
    }
    if not weights or not per_token:
        missing = [k for k, v in (("weights size", weights), ("KV layout (layers, KV heads, head dim)", per_token))
                   if not v]
        result.update(known=False, reason=f"not enough facts: {' and '.join(missing)} unknown; run `modelreg scan`")
        return result
    kv_bytes = budget - weights - overhead
    memory_context = tokens_that_fit(kv_bytes, per_token)
    cap, cap_name = context_cap(args, backend, native)
    max_context = min(memory_context, cap) if cap else memory_context
    result.update(memory_context=memory_context, context_cap=cap,
                  max_context_cap=cap_name if cap and cap <= memory_context else "GPU memory")
    wanted = result["configured_context"] or native
    result.update(known=True, kv_cache_bytes=max(0, kv_bytes), max_context=max_context,
                  weights_fit=kv_bytes > 0,
                  fits_native=max_context >= native if native else False,
                  fits=kv_bytes > 0 and (wanted is None or max_context >= wanted))
    if kv_bytes <= 0:
        result["reason"] = (f"weights ({human_size(weights)}) and overhead ({human_size(overhead)}) exceed the "
                            f"{human_size(budget)} budget; use a smaller quantization or a larger GPU")
    elif native and max_context < native and (suggested := suggested_context(max_context)):
        result["suggested_max_model_len"] = suggested
        result["suggested_args"] = [SPECS[backend].context_flag, str(suggested)]  # the backend's own spelling
    return result


CONTEXT_FIELD = "generation_defaults.context_window"
EXTRA_ARGS = "backend_config.extra_args"
OLLAMA_CONTEXT_OPTION = "generation_defaults.num_ctx"  # Ollama takes generation_defaults it knows as options


def _positive_int(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def context_places(entry: dict[str, Any]) -> dict[str, int]:
    """Each place that sets this entry's context, with its value: the context field, the backend's own context flag in
    extra_args (`--ctx-size`/`-c`, `--max-model-len`, `--n_ctx`, Ollama's `--num-ctx`) and Ollama's `num_ctx`."""
    places: dict[str, int] = {}  # in the order the launch applies them: the last one set is what the backend takes
    defaults = entry.get("generation_defaults") or {}
    try:
        backend: str | None = canonical_backend(entry.get("backend"), entry.get("name") or "?")
    except BadInput:
        backend = None
    if backend == OLLAMA and (num_ctx := _positive_int(defaults.get("num_ctx"))):
        places[OLLAMA_CONTEXT_OPTION] = num_ctx
    if window := _positive_int(defaults.get("context_window")):
        places[CONTEXT_FIELD] = window
    if backend is None:
        return places
    extra = (entry.get("backend_config") or {}).get("extra_args")
    if isinstance(extra, list):
        flag = SPECS[backend].context_flag
        try:
            text = (flag_value([str(arg) for arg in extra], flag, backend) or "").strip()
        except BadInput:
            text = ""
        if text.isdigit():  # 0 too: llama-server's `-c 0` is the model's own context, still a place that is set
            places[f"{EXTRA_ARGS} {flag}"] = int(text)
    return places


def place_field(place: str) -> str:
    """The curated field a context place is in (`backend_config.extra_args --ctx-size` is in extra_args)."""
    return place.split(" ", 1)[0]


def effective_context(entry: dict[str, Any]) -> int | None:
    """The entry's one configured context, as the editor, `fit`, the launch, /v1/models and the exports report it:
    the value of its context places (they agree, or one is set); where they differ (an error the launch check names),
    the one the backend would take, its flag in extra_args. None when no place sets it."""
    places = context_places(entry)
    return list(places.values())[-1] if places else None


def fit_summary(entry: dict[str, Any], settings: Settings, gpu_memory: str | int | None = None,
                utilization: float | None = None) -> dict[str, Any]:
    """The fit estimate for `modelreg show` / `modelreg fit`, planned for the active profile's GPU settings."""
    return estimate(entry, gpu_memory if gpu_memory is not None else settings.gpu_memory,
                    utilization if utilization is not None else settings.gpu_memory_utilization)


def with_context(entry: dict[str, Any], context: int | None) -> list[str]:
    """The entry's extra_args with its backend's context flag set to `context` (an earlier value replaced; None:
    removed)."""
    try:
        backend = canonical_backend(entry.get("backend"), entry.get("name") or "?")
    except BadInput as exc:
        raise BadInput(f"{entry.get('name')!r}: backend {entry.get('backend')!r} has no context flag to set") from exc
    flag = SPECS[backend].context_flag
    args = [str(a) for a in (entry.get("backend_config") or {}).get("extra_args") or []]
    return without_flag(args, flag, backend) if context is None else with_flag(args, flag, str(context), backend)


def context_change(entry: dict[str, Any], context: int | None) -> dict[str, Any]:
    """The curated changes that set the entry's context where it lives: in each place that holds it (so places that
    disagreed agree again), else in the backend's context flag, the one `fit` suggests. None removes it: the flag
    leaves extra_args, and a field's change is None (the caller removes the field)."""
    changes: dict[str, Any] = {}
    for place in context_places(entry) or {EXTRA_ARGS: 0}:
        field = place_field(place)
        changes[field] = with_context(entry, context) if field == EXTRA_ARGS else context
    return changes


def context_home(entry: dict[str, Any]) -> str:
    """Where `context_change` writes, as the Fit page's Apply names it: the context flag, unless only a field holds
    the context."""
    fields = [place for place in context_places(entry) if place_field(place) != EXTRA_ARGS]
    if fields and len(fields) == len(context_places(entry)):
        return "context window" if fields[-1] == CONTEXT_FIELD else fields[-1]
    return SPECS[canonical_backend(entry.get("backend"), entry.get("name") or "?")].context_flag
