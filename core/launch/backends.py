"""The backends modelreg starts: their names, other spellings, and what the launcher knows of each."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from modelreg.errors import BadInput
from modelreg.fields import BACKEND_ALIASES, BACKENDS, backend_key
from modelreg.store import atomic_write

VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON, OLLAMA = BACKENDS
PROCESS_BACKENDS = (VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON)

@dataclass(frozen=True)
class BackendSpec:
    """What the launcher knows about one backend's command line and readiness."""

    ready_path: str | None
    # flags the launcher sets itself (extra_args may not repeat them), canonical spelling
    reserved: frozenset[str]
    # flag that sets the context size (extra_args may set it; the launcher then leaves it out)
    context_flag: str | None
    # spellings that mean the same flag: alias -> canonical
    flag_aliases: dict[str, str] = field(default_factory=dict)
    # flags that take a value; None means every flag does
    value_flags: frozenset[str] | None = frozenset()
    repeatable: frozenset[str] = frozenset()
    underscores_are_dashes: bool = False


SPECS: dict[str, BackendSpec] = {
    VLLM: BackendSpec(
        ready_path="/health",
        reserved=frozenset({"--host", "--port", "--served-model-name", "--model"}),
        context_flag="--max-model-len",
        underscores_are_dashes=True,
        value_flags=frozenset({
            "--max-model-len", "--gpu-memory-utilization", "--tensor-parallel-size", "--pipeline-parallel-size",
            "--dtype", "--kv-cache-dtype", "--max-num-seqs", "--max-num-batched-tokens", "--swap-space",
            "--cpu-offload-gb", "--limit-mm-per-prompt", "--chat-template", "--quantization", "--tokenizer",
            "--tokenizer-mode", "--revision", "--download-dir", "--load-format", "--seed", "--block-size",
            "--tool-call-parser", "--reasoning-parser", "--max-seq-len-to-capture", "--api-key",
            "--generation-config", "--override-generation-config", "--hf-overrides", "--mm-processor-kwargs",
            "--rope-scaling", "--rope-theta", "--task", "--device", "--distributed-executor-backend",
            "--max-logprobs", "--uvicorn-log-level", "--lora-modules", "--max-lora-rank", "--max-loras",
            "--speculative-config", "--compilation-config", "-O", "--kv-transfer-config", "--data-parallel-size",
            "--response-role", "--root-path", "--allowed-local-media-path", "--config", "--runner",
            "--chat-template-content-format", "--guided-decoding-backend", "--max-cpu-loras", "--code-revision",
            "--tokenizer-revision", "--hf-config-path", "--model-impl", "--override-pooler-config",
        }),
        repeatable=frozenset({"--middleware", "--lora-modules", "--allowed-origins"}),
    ),
    LLAMA_CPP: BackendSpec(
        ready_path="/health",
        reserved=frozenset({"--host", "--port", "--model", "--alias"}),
        context_flag="--ctx-size",
        flag_aliases={"-m": "--model", "-a": "--alias", "-c": "--ctx-size", "-ngl": "--n-gpu-layers",
                      "--gpu-layers": "--n-gpu-layers", "-t": "--threads", "-b": "--batch-size",
                      "-ub": "--ubatch-size", "-np": "--parallel", "-fa": "--flash-attn", "-ctk": "--cache-type-k",
                      "-ctv": "--cache-type-v", "-ts": "--tensor-split", "-sm": "--split-mode",
                      "-mg": "--main-gpu", "-n": "--n-predict", "-s": "--seed", "-to": "--timeout",
                      "-ot": "--override-tensor", "-md": "--model-draft", "-mm": "--mmproj"},
        value_flags=frozenset({
            "--model", "--alias", "--ctx-size", "--n-gpu-layers", "--threads", "--threads-batch", "--batch-size",
            "--ubatch-size", "--parallel", "--flash-attn", "--cache-type-k", "--cache-type-v", "--tensor-split",
            "--split-mode", "--main-gpu", "--n-predict", "--seed", "--timeout", "--override-tensor",
            "--model-draft", "--mmproj", "--chat-template", "--chat-template-file", "--rope-scaling",
            "--rope-freq-base", "--rope-freq-scale", "--lora", "--lora-scaled", "--override-kv", "--api-key",
            "--api-key-file", "--reasoning-format", "--reasoning-budget", "--temp", "--top-k", "--top-p",
            "--min-p", "--repeat-penalty", "--keep", "--defrag-thold", "--slot-save-path", "--grammar",
            "--grammar-file", "--hf-repo", "--hf-file", "--control-vector", "--numa", "--device",
            "--cache-reuse", "--threads-http", "--draft-max", "--draft-min", "--spm-infill", "--pooling",
        }),
        repeatable=frozenset({"--lora", "--lora-scaled", "--override-kv", "--control-vector", "--override-tensor"}),
    ),
    LLAMA_CPP_PYTHON: BackendSpec(
        ready_path="/v1/models",  # no /health; the port opens only once the model is loaded
        reserved=frozenset({"--host", "--port", "--model", "--model_alias"}),
        context_flag="--n_ctx",
        value_flags=None,  # every flag of llama_cpp.server takes a value (booleans too: `--verbose false`)
    ),
    OLLAMA: BackendSpec(ready_path=None, reserved=frozenset(), context_flag="--num-ctx", value_flags=None,
                         underscores_are_dashes=True),
}


def canonical_backend(backend: Any, name: str = "?") -> str:
    """The registry's name for a backend, accepting the upstream spellings; BadInput for an unknown one."""
    if not isinstance(backend, str) or not backend.strip():
        raise BadInput(f"model {name!r} has no backend; set one with "
                       f"`modelreg set {name} backend vllm` (one of: {', '.join(BACKENDS)})")
    key = backend_key(backend)
    if key is None:
        raise BadInput(f"model {name!r}: unknown backend {backend!r}; use one of: {', '.join(BACKENDS)} "
                       f"(also accepted: {', '.join(sorted(BACKEND_ALIASES))})")
    return key


def is_projector_name(name: str) -> bool:
    """A GGUF file named as a vision projector (`mmproj`): loaded beside a model, never as one."""
    return "mmproj" in name.lower()


def user_cache_dir() -> Path:
    """modelreg's per-user cache ($XDG_CACHE_HOME/modelreg, else ~/.cache/modelreg): outside any registry folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelreg"


@cache
def ollama_option_names() -> frozenset[str]:
    """The option names Ollama models take (the `ollama` client's Options model), cached per installed client so
    that planning a launch does not import the client (and httpx and pydantic's models with it)."""
    spec = find_spec("ollama")
    if spec is None or not spec.origin:
        raise BadInput("the `ollama` Python client is not installed; reinstall modelreg (`make setup`)")
    types_file = Path(spec.origin).with_name("_types.py")
    stat = types_file.stat()
    key = f"{types_file}:{stat.st_mtime_ns}:{stat.st_size}"
    cached = user_cache_dir() / "ollama-options.json"
    try:
        data = json.loads(cached.read_bytes())
        if data.get("key") == key:
            return frozenset(data["options"])
    except (OSError, ValueError, AttributeError):
        pass
    from ollama._types import Options  # the client's own list of option names

    names = sorted(Options.model_fields)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, json.dumps({"key": key, "options": names}).encode())
    except OSError:
        pass  # a read-only home: the next start reads the client again
    return frozenset(names)
