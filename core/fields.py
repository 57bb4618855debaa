"""The one place that says which class every registry field belongs to: fact, config or default."""
from __future__ import annotations

import sys
from enum import Enum
from functools import lru_cache
from typing import Literal, get_args


class FieldClass(str, Enum):
    FACT = "fact"        # read from disk by a machine; written only into the discovered layer
    CONFIG = "config"    # the user's decision; written only into the curated layer
    DEFAULT = "default"  # discovered suggests it, curated may override it


# Dotted paths (or path prefixes ending in "*") and their class; the longest match wins.
# Anything not listed is a default: unknown keys are kept and may be overridden by curated.
FIELD_CLASSES: dict[str, FieldClass] = {
    # facts
    "download_*": FieldClass.FACT,
    "downloaded_at": FieldClass.FACT,
    "last_accessed": FieldClass.FACT,
    "artifacts": FieldClass.FACT,
    "source": FieldClass.FACT,
    "size_bytes": FieldClass.FACT,
    "missing": FieldClass.FACT,
    "performance": FieldClass.FACT,
    "probes": FieldClass.FACT,
    "metadata.architecture": FieldClass.FACT,
    "metadata.format": FieldClass.FACT,
    "metadata.model_type": FieldClass.FACT,
    "metadata.files_downloaded": FieldClass.FACT,
    "metadata.verified_complete": FieldClass.FACT,
    "metadata.ollama_*": FieldClass.FACT,
    "metadata.scan": FieldClass.FACT,
    # configuration
    "backend": FieldClass.CONFIG,
    "backend_config.port": FieldClass.CONFIG,
    "backend_config.extra_args": FieldClass.CONFIG,
    "backend_config.host": FieldClass.CONFIG,
    "backend_config.base_url": FieldClass.CONFIG,
    "backend_config.ready_timeout": FieldClass.CONFIG,
    "backend_config.exclusive_group": FieldClass.CONFIG,
    "backend_config.idle_ttl": FieldClass.CONFIG,
    "backend_config.loading_state": FieldClass.CONFIG,
    "backend_config.api_key_env": FieldClass.CONFIG,
    "backend_config.max_concurrency": FieldClass.CONFIG,
    "backend_config.executable": FieldClass.CONFIG,
    "backend_config.env": FieldClass.CONFIG,
    "generation_defaults": FieldClass.CONFIG,
    "roles": FieldClass.CONFIG,
    "role_priority": FieldClass.CONFIG,
    "model_aliases": FieldClass.CONFIG,
    "deprecated": FieldClass.CONFIG,
    "profile": FieldClass.CONFIG,
    "metadata._config_needed": FieldClass.CONFIG,
}

# The backends a model can run on (modelreg.launch knows how to start each), and the other spellings registry files
# use for them (the upstream files write `gguf` for a llama.cpp-served GGUF).
BACKENDS: tuple[str, ...] = ("vllm", "llama.cpp", "llama-cpp-python", "ollama")


def default_executables() -> dict[str, str]:
    """The program each backend runs when the settings name none."""
    return {"vllm": "vllm", "llama.cpp": "llama-server", "llama-cpp-python": sys.executable}


# what a streamed request gets while its model starts (setting and backend_config.loading_state)
LoadingState = Literal["reasoning", "comments", "off"]
LOADING_STATES: tuple[str, ...] = get_args(LoadingState)
BACKEND_ALIASES: dict[str, str] = {
    "gguf": "llama.cpp",
    "llamacpp": "llama.cpp",
    "llama-cpp": "llama.cpp",
    "llama_cpp": "llama.cpp",
    "llama-server": "llama.cpp",
    "llama_cpp_python": "llama-cpp-python",
    "llama-cpp-py": "llama-cpp-python",
    "llama_cpp.server": "llama-cpp-python",
}


def backend_key(backend: str) -> str | None:
    """The registry's name for a backend spelling (any case, upstream aliases), None when unknown."""
    key = backend.strip().lower()
    key = BACKEND_ALIASES.get(key, key)
    return key if key in BACKENDS else None

# Fields a curated stub lists for the user to fill (null = not decided yet).
STUB_FIELDS: tuple[str, ...] = (
    "backend",
    "backend_config.port",
    "backend_config.extra_args",
    "generation_defaults",
    "roles",
)


# How a person writes each known field's value (a CLI argument, a GUI field); anything else is "auto":
# JSON when it parses, else the plain string.
FIELD_KINDS: dict[str, str] = {
    "backend": "backend",
    "backend_config.port": "int",
    "backend_config.extra_args": "args",
    "backend_config.model_path": "text",
    "backend_config.host": "text",
    "backend_config.ready_timeout": "float",
    "backend_config.exclusive_group": "text",
    "backend_config.loading_state": "text",
    "backend_config.idle_ttl": "float",
    "backend_config.api_key_env": "text",
    "backend_config.max_concurrency": "int",
    "backend_config.executable": "text",
    "backend_config.env": "json",
    "display_name": "text",
    "served_model_id": "text",
    "quantization": "text",
    "family": "text",
    "capabilities.vision": "bool",
    "capabilities.tools": "bool",
    "capabilities.embedding": "bool",
    "roles": "list",
    "model_aliases": "list",
    "deprecated": "bool",
    "generation_defaults": "json",
    "generation_defaults.temperature": "float",
    "generation_defaults.top_p": "float",
    "generation_defaults.top_k": "int",
    "generation_defaults.max_tokens": "int",
    "generation_defaults.presence_penalty": "float",
    "generation_defaults.frequency_penalty": "float",
    "generation_defaults.stop_sequences": "list",
    "generation_defaults.context_window": "int",
    "role_priority": "json",
    "chat_template": "json",
}


def field_kind(path: str) -> str:
    if path.startswith("backend_config.env."):
        return "text"  # one variable's value: `CUDA_VISIBLE_DEVICES 0` is the text "0", not a number
    return FIELD_KINDS.get(path, "auto")


@lru_cache(maxsize=4096)
def field_class(path: str) -> FieldClass:
    """Class of a dotted path: the longest declared prefix that covers it, else DEFAULT."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in FIELD_CLASSES:
            return FIELD_CLASSES[head]
        for pattern, cls in _WILDCARDS:
            if head.startswith(pattern) and "." not in head[len(pattern):]:
                return cls
    return FieldClass.DEFAULT


_WILDCARDS: tuple[tuple[str, FieldClass], ...] = tuple(
    (k[:-1], v) for k, v in FIELD_CLASSES.items() if k.endswith("*")
)
