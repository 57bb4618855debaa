"""The backends modelreg starts: their names, other spellings, and what the launcher knows of each."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from modelreg.errors import BadInput
from modelreg.fields import BACKEND_ALIASES, BACKENDS, backend_key
from modelreg.store import atomic_write, user_cache_dir

VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON, OLLAMA = BACKENDS
PROCESS_BACKENDS = (VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON)


@dataclass(frozen=True)
class BackendSpec:
    """What the launcher knows about one backend's command line and readiness (its flags come from its catalogue)."""

    ready_path: str | None
    # flags the launcher sets itself, by canonical spelling: extra_args may not set them, in any spelling; the value
    # names the entry field that sets them instead
    owned: dict[str, str]
    # flag that sets the context size (extra_args may set it; the launcher then leaves it out)
    context_flag: str
    # flags that may be given more than once (each adds a value)
    repeatable: frozenset[str] = frozenset()
    # environment variables the backend reads that would override the argv's host, port or model: never passed on
    unset_env: tuple[str, ...] = ()
    # flags extra_args may not hold at all, in any spelling: canonical flag -> what to do instead
    refused: dict[str, str] = field(default_factory=dict)


_HOST, _PORT = "backend_config.host", "backend_config.port"
# A config file's keys would escape every check of extra_args (a `uds:` key made vLLM serve on a UNIX socket); the
# flags go in extra_args themselves, where each is checked. A secret in extra_args lands in the registry files, argv
# and exports.
_CONFIG_FILE = "its keys would escape the checks of extra_args; put each setting in extra_args as a flag instead"
_API_KEY = "it puts a secret in the registry files, argv and exports; use backend_config.api_key_env"
_HF_TOKEN = "it puts a secret in the registry files, argv and exports; export HF_TOKEN before starting modelreg"
_MODEL, _SERVED = "backend_config.model_path", "served_model_id"
SPECS: dict[str, BackendSpec] = {
    VLLM: BackendSpec(
        ready_path="/health",
        owned={"--host": _HOST, "--port": _PORT, "--uds": f"{_HOST} and {_PORT}", "--model": _MODEL,
               "--served-model-name": _SERVED},
        context_flag="--max-model-len",
        repeatable=frozenset({"--middleware"}),  # the only append action of `vllm serve`
        refused={"--config": _CONFIG_FILE, "--api-key": _API_KEY, "--hf-token": _HF_TOKEN},
    ),
    LLAMA_CPP: BackendSpec(
        ready_path="/health",
        owned={"--host": _HOST, "--port": _PORT, "--model": _MODEL, "--model-url": _MODEL, "--hf-repo": _MODEL,
               "--hf-file": _MODEL, "--docker-repo": _MODEL, "--models-dir": _MODEL, "--models-preset": _MODEL,
               "--alias": _SERVED},
        context_flag="--ctx-size",
        # none repeat: llama-server keeps only the last of a flag given twice (several values go comma-separated)
        unset_env=("LLAMA_ARG_HOST", "LLAMA_ARG_PORT", "LLAMA_ARG_MODEL", "LLAMA_ARG_MODEL_URL", "LLAMA_ARG_HF_REPO",
                   "LLAMA_ARG_DOCKER_REPO", "LLAMA_ARG_MODELS_DIR", "LLAMA_ARG_MODELS_PRESET", "LLAMA_ARG_ALIAS"),
        refused={"--api-key": _API_KEY, "--api-key-file": _API_KEY, "--hf-token": _HF_TOKEN,
                 "--spec-draft-hf": "it downloads a draft model at start; download it (`modelreg download`) and give "
                                    "its file with --spec-draft-model"},
    ),
    LLAMA_CPP_PYTHON: BackendSpec(
        ready_path="/v1/models",  # no /health; the port opens only once the model is loaded
        owned={"--host": _HOST, "--port": _PORT, "--model": _MODEL, "--model_alias": _SERVED,
               "--hf_model_repo_id": _MODEL},
        context_flag="--n_ctx",
        # llama_cpp.server's uvicorn.run reads HOST and PORT over its own settings, and CONFIG_FILE over its argv
        unset_env=("HOST", "PORT", "CONFIG_FILE"),
        # --config_file replaces every other argument with the file's settings
        refused={"--config_file": _CONFIG_FILE, "--api_key": _API_KEY},
    ),
    OLLAMA: BackendSpec(ready_path=None, owned={}, context_flag="--num-ctx"),
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
    # one file per installed client: several environments of one user (each with its own client) then do not
    # overwrite each other's cache, which would make every start in the others import the client again
    cached = user_cache_dir() / f"ollama-options-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
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
