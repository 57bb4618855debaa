"""Turns a merged registry entry into how its backend is started: the only code that builds launch commands."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BadInput
from core.registry import get_path
from core.settings import Settings

VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON, OLLAMA = "vllm", "llama.cpp", "llama-cpp-python", "ollama"
BACKENDS = (VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON, OLLAMA)
PROCESS_BACKENDS = (VLLM, LLAMA_CPP, LLAMA_CPP_PYTHON)

# Other spellings found in registry files (the upstream files write `gguf` for a llama.cpp-served GGUF).
BACKEND_ALIASES = {
    "gguf": LLAMA_CPP,
    "llamacpp": LLAMA_CPP,
    "llama-cpp": LLAMA_CPP,
    "llama_cpp": LLAMA_CPP,
    "llama-server": LLAMA_CPP,
    "llama_cpp_python": LLAMA_CPP_PYTHON,
    "llama-cpp-py": LLAMA_CPP_PYTHON,
    "llama_cpp.server": LLAMA_CPP_PYTHON,
}


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


@dataclass(frozen=True)
class LaunchPlan:
    """How to start one model: the argv for a process backend, or the daemon request for Ollama."""

    name: str
    backend: str
    argv: list[str]
    host: str
    port: int | None
    base_url: str  # where clients reach the OpenAI-compatible API (without /v1)
    ready_url: str | None
    served_model_id: str
    ready_timeout: float
    vision: bool = False
    ollama_model: str | None = None
    ollama_options: dict[str, Any] = field(default_factory=dict)
    fit_max_context: int | None = None  # the fit estimate's largest context, for diagnoses
    entry: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_process(self) -> bool:
        return self.backend in PROCESS_BACKENDS

    @property
    def signature(self) -> str:
        """Changes exactly when what would be started changes (the proxy restarts a backend whose signature moved)."""
        return json.dumps([self.backend, self.argv, self.ollama_model, self.ollama_options], sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("entry")
        return data


def canonical_backend(backend: Any, name: str = "?") -> str:
    """The registry's name for a backend, accepting the upstream spellings; BadInput for an unknown one."""
    if not isinstance(backend, str) or not backend.strip():
        raise BadInput(f"model {name!r} has no backend; set one with "
                       f"`modelreg set {name} backend vllm` (one of: {', '.join(BACKENDS)})")
    key = backend.strip().lower()
    key = BACKEND_ALIASES.get(key, key)
    if key not in BACKENDS:
        raise BadInput(f"model {name!r}: unknown backend {backend!r}; use one of: {', '.join(BACKENDS)} "
                       f"(also accepted: {', '.join(sorted(BACKEND_ALIASES))})")
    return key


def flag_name(token: str, backend: str) -> str | None:
    """The canonical flag a token names (`--max_model_len=4` -> `--max-model-len`), or None for a value."""
    spec = SPECS[backend]
    if not token.startswith("-") or len(token) < 2 or _is_number(token):
        return None
    flag = token.split("=", 1)[0]
    if spec.underscores_are_dashes and flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
    return spec.flag_aliases.get(flag, flag)


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _takes_value(flag: str, spec: BackendSpec) -> bool:
    return spec.value_flags is None or flag in spec.value_flags


def check_extra_args(name: str, backend: str, extra_args: Any) -> list[str]:
    """Refuse extra_args the launcher cannot pass on as given; return them as a list of strings.

    Errors name the model and the flag: a flag given twice, a flag the launcher sets itself, a value-taking flag
    with no value after it.
    """
    if extra_args is None:
        return []
    if not isinstance(extra_args, list) or not all(isinstance(a, str) for a in extra_args):
        raise BadInput(f"model {name!r}: backend_config.extra_args must be a list of strings, "
                       f"got {json.dumps(extra_args)}")
    spec = SPECS[backend]
    seen: dict[str, int] = {}
    for index, token in enumerate(extra_args):
        flag = flag_name(token, backend)
        if flag is None:
            continue
        if flag in spec.reserved:
            raise BadInput(f"model {name!r}: extra_args sets {token.split('=', 1)[0]}, which the launcher sets "
                           f"itself from the entry (backend_config.port/host, served_model_id, model_path); "
                           f"remove it from extra_args and change the entry's field instead")
        if flag in seen and flag not in spec.repeatable:
            raise BadInput(f"model {name!r}: extra_args gives {flag} twice (arguments {seen[flag] + 1} and "
                           f"{index + 1}); keep one")
        seen[flag] = index
        if "=" in token or not _takes_value(flag, spec):
            continue
        following = extra_args[index + 1] if index + 1 < len(extra_args) else None
        if following is None or flag_name(following, backend) is not None and following.startswith("--"):
            where = "at the end of extra_args" if following is None else f"before {following}"
            raise BadInput(f"model {name!r}: {token} takes a value but has none ({where}); "
                           f"add the value after it or remove the flag")
    return list(extra_args)


def flag_value(args: list[str], flag: str, backend: str) -> str | None:
    """The value extra_args give a flag (either `--flag value` or `--flag=value`), or None."""
    wanted = flag_name(flag, backend)
    for index, token in enumerate(args):
        if flag_name(token, backend) != wanted:
            continue
        if "=" in token:
            return token.split("=", 1)[1]
        return args[index + 1] if index + 1 < len(args) else None
    return None


def _served_model_id(entry: dict) -> str | None:
    value = entry.get("served_model_id")
    # the upstream files hold the string "None" where their writer stringified a missing id
    return value if isinstance(value, str) and value.strip() and value not in ("None", "null") else None


def _context_window(entry: dict) -> int | None:
    value = get_path(entry, "generation_defaults.context_window")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _model_file(name: str, backend: str, model_path: Any) -> str:
    if not isinstance(model_path, str) or not model_path:
        raise BadInput(f"model {name!r} has no backend_config.model_path; set it with "
                       f"`modelreg set {name} backend_config.model_path /path/to/model`")
    if backend in (LLAMA_CPP, LLAMA_CPP_PYTHON):
        folder = Path(model_path).expanduser()
        if folder.is_dir():
            from core.discovery.gguf_models import is_projector_name

            ggufs = sorted(p for p in folder.glob("*.gguf") if not is_projector_name(p.name))
            if len(ggufs) != 1:
                raise BadInput(f"model {name!r}: backend_config.model_path {model_path} is a folder with "
                               f"{len(ggufs)} model .gguf files; point it at one file")
            return str(ggufs[0])
    return str(Path(model_path).expanduser()) if model_path.startswith("~") else model_path


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _ollama_options(name: str, entry: dict, extra_args: list[str]) -> dict[str, Any]:
    """Ollama load/run options: generation defaults the daemon understands, then extra_args (`--num-ctx 4096`)."""
    from ollama._types import Options  # the client's own list of option names

    known = set(Options.model_fields)
    options: dict[str, Any] = {}
    defaults = get_path(entry, "generation_defaults", {}) or {}
    for key, value in defaults.items():
        if key in known and value is not None:
            options[key] = value
    if _context_window(entry):
        options["num_ctx"] = _context_window(entry)
    index = 0
    while index < len(extra_args):
        token = extra_args[index]
        if not token.startswith("--"):
            raise BadInput(f"model {name!r}: extra_args for ollama must be `--option value` pairs; "
                           f"{token!r} is not an option")
        key, _, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if key not in known:
            raise BadInput(f"model {name!r}: extra_args option {token.split('=', 1)[0]} is not an Ollama option "
                           f"(known: {', '.join(sorted(known))})")
        if not value:
            index += 1
            value = extra_args[index]
        options[key] = _parse_scalar(value)
        index += 1
    return options


def _parse_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _fit_max_context(entry: dict[str, Any], settings: Settings) -> int | None:
    from core.fit import fit_summary

    try:
        fit = fit_summary(entry, settings)
    except BadInput:
        return None  # the fit is advice for diagnoses; a bad gpu_memory setting is reported by `modelreg fit`
    return (fit.get("max_context") or None) if fit.get("known") else None


def launch_plan(entry: dict[str, Any], settings: Settings) -> LaunchPlan:
    """How to start this merged entry under these (profile-applied) settings; BadInput says what to fix."""
    name = entry.get("name") or "?"
    backend = canonical_backend(entry.get("backend"), name)
    config = entry.get("backend_config") or {}
    spec = SPECS[backend]
    extra = check_extra_args(name, backend, config.get("extra_args"))
    served = _served_model_id(entry) or name
    timeout = float(config.get("ready_timeout") or settings.ready_timeout)
    vision = bool(get_path(entry, "capabilities.vision")) or bool(get_path(entry, "metadata.architecture.vision"))

    if backend == OLLAMA:
        base_url = (config.get("base_url") or settings.ollama_host).rstrip("/")
        model = _served_model_id(entry) or str(config.get("model_path") or name).removeprefix("ollama:/")
        return LaunchPlan(name=name, backend=backend, argv=[], host=base_url, port=None, base_url=base_url,
                          ready_url=None, served_model_id=model, ready_timeout=timeout, vision=vision,
                          ollama_model=model, ollama_options=_ollama_options(name, entry, extra),
                          fit_max_context=_fit_max_context(entry, settings), entry=entry)

    port = config.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise BadInput(f"model {name!r} has no usable backend_config.port ({port!r}); set one with "
                       f"`modelreg set {name} backend_config.port 24001`")
    host = config.get("host") or settings.backend_host
    model_file = _model_file(name, backend, config.get("model_path"))
    # a profile that overrides `executables` for one backend keeps the defaults of the others
    executable = settings.executables.get(backend) or Settings.model_fields["executables"].default_factory()[backend]
    context = _context_window(entry)
    if flag_value(extra, spec.context_flag, backend) is not None:
        context = None  # extra_args set it; they win over the generation default

    if backend == VLLM:
        argv = [executable, "serve", model_file, "--host", host, "--port", str(port), "--served-model-name", served]
        if context:
            argv += ["--max-model-len", str(context)]
        if flag_value(extra, "--gpu-memory-utilization", backend) is None:
            argv += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    elif backend == LLAMA_CPP:
        argv = [executable, "-m", model_file, "--host", host, "--port", str(port), "--alias", served]
        if context:
            argv += ["-c", str(context)]
    else:
        argv = [executable, "-m", "llama_cpp.server", "--model", model_file, "--host", host, "--port", str(port),
                "--model_alias", served]
        if context:
            argv += ["--n_ctx", str(context)]
    argv += extra
    base_url = f"http://{_connect_host(host)}:{port}"
    return LaunchPlan(name=name, backend=backend, argv=argv, host=host, port=port, base_url=base_url,
                      ready_url=base_url + spec.ready_path, served_model_id=served, ready_timeout=timeout,
                      vision=vision, fit_max_context=_fit_max_context(entry, settings), entry=entry)


def launch_argv(entry: dict[str, Any], settings: Settings) -> list[str]:
    """The argv that starts this entry (empty for Ollama, which runs in its daemon)."""
    return launch_plan(entry, settings).argv
