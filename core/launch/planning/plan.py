"""Turns a merged registry entry into how its backend is started: the only code that builds launch commands."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import BadInput
from modelreg.fields import default_executables
from modelreg.launch.advice.fit import CONTEXT_FIELD, EXTRA_ARGS, context_places, effective_context, fit_summary
from modelreg.launch.backends import (
    LLAMA_CPP,
    LLAMA_CPP_PYTHON,
    OLLAMA,
    PROCESS_BACKENDS,
    SPECS,
    VLLM,
    canonical_backend,
    is_projector_name,
    ollama_option_names,
)
from modelreg.launch.catalogue import Catalogue, catalogue_for
from modelreg.launch.flags import ParsedArgs, extra_args_problems, flag_value
from modelreg.paths import get_path
from modelreg.values import (
    env_mapping_problems,
    env_name_problem,
    env_references,
    resolve_env_value,
    shown_env_value,
)

if TYPE_CHECKING:
    from modelreg.settings import Settings


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
    ollama_model: str | None = None  # an Ollama plan's, the same as served_model_id
    ollama_options: dict[str, Any] = field(default_factory=dict)
    fit_max_context: int | None = None  # the fit estimate's largest context, for diagnoses
    api_key_env: str | None = None  # backend_config.api_key_env: the variable holding the backend's API key
    # backend_config.env as written: `$NAME` references stay references here (only the started process gets values)
    env: dict[str, str] = field(default_factory=dict)
    entry: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_process(self) -> bool:
        return self.backend in PROCESS_BACKENDS

    @property
    def signature(self) -> str:
        """Changes exactly when what would be started changes (the proxy restarts a backend whose signature moved)."""
        # the environment as a digest: the signature goes into state files, and a literal value may be a secret
        env = hashlib.sha256(json.dumps(self.env, sort_keys=True).encode()).hexdigest() if self.env else None
        return json.dumps([self.backend, self.argv, self.ollama_model, self.ollama_options, env], sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("entry")
        data["env"] = self.shown_env()
        return data

    def shown_env(self) -> dict[str, str]:
        """backend_config.env as previews and logs show it: references as written, secret-looking values masked."""
        return {name: shown_env_value(name, value) for name, value in self.env.items()}

    def command_line(self) -> str:
        """The start as one shell line for people to read: the environment it adds (as `shown_env`), then argv."""
        words = [f"{name}={_shell_env_word(value)}" for name, value in self.shown_env().items()]
        return " ".join([*words, shlex.join(self.argv)])

    def api_key(self) -> str | None:
        """The backend's API key, read from `api_key_env` now (never stored); BadInput when the variable is unset."""
        return self._read_key(self.api_key_env) if self.api_key_env else None

    def _read_key(self, env: str) -> str:
        value = os.environ.get(env, "").strip()
        if not value:
            raise BadInput(f"model {self.name!r}: backend_config.api_key_env names ${env}, which is not set; export "
                           "it before starting modelreg (or clear api_key_env)")
        return value

    def auth_headers(self) -> dict[str, str]:
        """The header that carries the backend's API key (none without api_key_env)."""
        key = self.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def process_env(self) -> dict[str, str]:
        """Environment variables the started process needs besides ours: backend_config.env with its references
        read from this process's environment now, and the backend's API key in its own variable (never its --api-key
        flag: any local user reads a process's argv in /proc, and vLLM writes its arguments into its log). BadInput
        names a reference to a variable that is not set."""
        env = {}
        for name, value in self.env.items():
            try:
                env[name] = resolve_env_value(value, os.environ)
            except KeyError as exc:
                raise BadInput(f"model {self.name!r}: backend_config.env.{name} refers to ${exc.args[0]}, which is "
                               f"not set; export it before starting modelreg (or change backend_config.env.{name})"
                               ) from None
        if self.api_key_env and self.backend in API_KEY_VARIABLES:
            env[API_KEY_VARIABLES[self.backend]] = self._read_key(self.api_key_env)
        return env


def _shell_env_word(value: str) -> str:
    """A shown environment value as a shell word: references keep working inside double quotes."""
    if not env_references(value) and "$$" not in value:
        return shlex.quote(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$$", "\\$")
    return f'"{escaped}"'


def _served_model_id(entry: dict) -> str | None:
    value = entry.get("served_model_id")
    # the upstream files hold the string "None" where their writer stringified a missing id
    return value if isinstance(value, str) and value.strip() and value not in ("None", "null") else None


def _model_file(name: str, backend: str, model_path: Any) -> str:
    if not isinstance(model_path, str) or not model_path:
        raise BadInput(f"model {name!r} has no backend_config.model_path; set it with "
                       f"`modelreg set {name} backend_config.model_path /path/to/model`")
    if backend in (LLAMA_CPP, LLAMA_CPP_PYTHON):
        folder = Path(model_path).expanduser()
        if folder.is_dir():
            ggufs = sorted(p for p in folder.glob("*.gguf") if not is_projector_name(p.name))
            if len(ggufs) != 1:
                raise BadInput(f"model {name!r}: backend_config.model_path {model_path} is a folder with "
                               f"{len(ggufs)} model .gguf files; point it at one file")
            return str(ggufs[0])
    return str(Path(model_path).expanduser()) if model_path.startswith("~") else model_path


# ---- upstream API key (backend_config.api_key_env) -----------------------------------------------------------------
# How a backend gets its key: the variable it reads it from, set for the started process only (argv is anyone's to
# read: /proc/<pid>/cmdline, ps).
API_KEY_VARIABLES = {VLLM: "VLLM_API_KEY", LLAMA_CPP: "LLAMA_API_KEY", LLAMA_CPP_PYTHON: "API_KEY"}


def _api_key_env(name: str, config: dict) -> str | None:
    env = config.get("api_key_env")
    if env in (None, ""):
        return None
    if problem := env_name_problem(env):
        raise BadInput(f"model {name!r}: backend_config.api_key_env {problem}; give the name of the variable that "
                       "holds the key (e.g. MY_BACKEND_KEY), never the key")
    return env  # extra_args cannot hold a key flag (SPECS' refused flags)


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _ollama_options(name: str, entry: dict, extra_args: list[str]) -> dict[str, Any]:
    """Ollama load/run options: generation defaults the daemon understands, then extra_args (`--num-ctx 4096`)."""
    known = ollama_option_names()
    options: dict[str, Any] = {}
    defaults = get_path(entry, "generation_defaults", {}) or {}
    for key, value in defaults.items():
        if key in known and value is not None:
            options[key] = value
    if context := effective_context(entry):
        options["num_ctx"] = context
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
    try:
        fit = fit_summary(entry, settings)
    except BadInput:
        return None  # the fit is advice for diagnoses; a bad gpu_memory setting is reported by `modelreg fit`
    return (fit.get("max_context") or None) if fit.get("known") else None


def backend_executable(backend: str, settings: Settings) -> str:
    """The program settings say runs this backend (a profile that overrides `executables` for one backend keeps the
    defaults of the others)."""
    return settings.executables.get(backend) or default_executables()[backend]


def installed_gguf_backend(settings: Settings) -> tuple[str, str | None]:
    """The backend a new GGUF model's stub suggests: llama.cpp when its llama-server is found, else
    llama-cpp-python when its Python can import llama_cpp, else llama.cpp with a note saying what to install."""
    if shutil.which(backend_executable(LLAMA_CPP, settings)):
        return LLAMA_CPP, None
    if _imports_llama_cpp(shutil.which(backend_executable(LLAMA_CPP_PYTHON, settings))):
        return LLAMA_CPP_PYTHON, None
    return LLAMA_CPP, ("neither llama.cpp's llama-server nor llama-cpp-python is installed here: install one (or set "
                       "its path in settings.json \"executables\") before starting GGUF models")


def _imports_llama_cpp(python: str | None) -> bool:
    """Whether this Python finds the llama_cpp package: asked in this process when it is this interpreter (the
    default), else in a child of that Python (another environment's packages are only seen from inside it)."""
    if python is None:
        return False
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not resolved: a venv's python is a link
        return importlib.util.find_spec("llama_cpp") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('llama_cpp') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def model_executable(backend: str, entry: dict[str, Any], settings: Settings) -> str:
    """The program that runs this model: its backend_config.executable (`~` expanded), else the settings' one."""
    own = (entry.get("backend_config") or {}).get("executable")
    if isinstance(own, str) and own.strip():
        return os.path.expanduser(own)
    return backend_executable(backend, settings)


def backend_catalogue(backend: str, settings: Settings, entry: dict[str, Any] | None = None) -> Catalogue | None:
    """The flags of the program that would run this backend, for this entry when given (its own executable); see
    catalogue_for."""
    if backend not in PROCESS_BACKENDS:
        return None
    return catalogue_for(backend, model_executable(backend, entry or {}, settings))


def chat_template_file(name: str, backend: str, entry: dict[str, Any], settings: Settings) -> str | None:
    """The chat template file the entry's `chat_template.path` names, checked: BadInput when it is not a readable
    file or the backend has no flag for one; None when the entry names none (the model's own template applies). A
    relative path is relative to the registry folder."""
    path = get_path(entry, "chat_template.path")
    if not isinstance(path, str) or not path.strip():
        return None
    if backend not in TEMPLATE_FLAGS:
        raise BadInput(f"model {name!r}: chat_template.path {path} is not supported by backend {backend} (it has no "
                       f"flag for a template file, only --hf_tokenizer_config_path for a whole tokenizer_config.json); "
                       f"serve the model with vllm or llama.cpp, or remove chat_template.path "
                       f"(`modelreg unset {name} chat_template`)")
    file = Path(path).expanduser()
    if not file.is_absolute():
        if settings.registry_folder is None:
            raise BadInput(f"model {name!r}: chat_template.path {path} is relative and no registry folder is known "
                           "to resolve it against; give an absolute path")
        file = settings.registry_folder / file
    fix = f"(`modelreg set {name} chat_template.path /path/to/template.jinja`)"
    try:
        kind = stat.S_IFMT(file.stat().st_mode)
    except FileNotFoundError:
        raise BadInput(f"model {name!r}: chat_template.path {path} does not exist ({file}); put the template there "
                       f"or change the path {fix}") from None
    except OSError as exc:
        raise BadInput(f"model {name!r}: chat_template.path {path}: cannot read {file} ({exc.strerror}); fix its "
                       f"permissions or change the path {fix}") from None
    if kind != stat.S_IFREG:
        what = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
                stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}.get(kind, "not a regular file")
        raise BadInput(f"model {name!r}: chat_template.path {path} is {what}, not a template file ({file}); point "
                       f"it at the template file {fix}")
    return str(file)


# the flags that hand a backend a chat template file
TEMPLATE_FLAGS = {VLLM: ["--chat-template"], LLAMA_CPP: ["--jinja", "--chat-template-file"]}


@dataclass(frozen=True)
class LaunchProblem:
    """One problem with one field; `error` False is a note (a flag spelled in a way the backend reads as another)."""

    field: str
    message: str
    error: bool = True
    # about a file on this machine (a chat template): the registry may be edited on another machine than the one
    # that runs the model, so `validate` only warns
    local: bool = False


@dataclass
class CheckedConfig:
    """An entry's launch configuration as checked: what would make its start fail (and notes), and what was read to
    find it, for the plan."""

    problems: list[LaunchProblem]
    catalogue: Catalogue | None
    args: ParsedArgs
    extra: list[str] = field(default_factory=list)
    template: str | None = None
    api_key_env: str | None = None
    ollama_options: dict[str, Any] = field(default_factory=dict)


def check_config(name: str, backend: str, entry: dict[str, Any], settings: Settings,
                 port_required: bool = False) -> CheckedConfig:
    """Every problem of the entry's launch configuration for this (canonical) backend: a port outside 1-65535 (or
    none, when `port_required`), extra_args the backend's own parser rejects or that set what the launcher owns, a
    chat template file that is missing or that the backend cannot take, an API key variable that is not a name."""
    config = entry.get("backend_config") or {}
    problems: list[LaunchProblem] = []
    port = config.get("port")
    if backend in PROCESS_BACKENDS and (port is not None or port_required) and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        problems.append(LaunchProblem("backend_config.port", f"model {name!r}: backend_config.port {port!r} is not a "
                                      f"port; use a whole number from 1 to 65535 (`modelreg set {name} "
                                      "backend_config.port 24001`)"))
    catalogue = backend_catalogue(backend, settings, entry)
    parsed = extra_args_problems(backend, config.get("extra_args"), catalogue)
    problems += [LaunchProblem(EXTRA_ARGS, f"model {name!r}: backend_config.extra_args: {p.message}", p.error)
                 for p in parsed.problems]
    if catalogue is not None and catalogue.notes and config.get("extra_args"):
        problems += [LaunchProblem(EXTRA_ARGS, note, error=False) for note in catalogue.notes]
    checked = CheckedConfig(problems, catalogue, parsed)
    if parsed.errors:
        return checked
    conflict = context_conflict(name, entry)
    if conflict:
        problems.append(LaunchProblem(CONTEXT_FIELD, conflict))
    checked.extra = [str(arg) for arg in config.get("extra_args") or []]
    try:
        checked.template = chat_template_file(name, backend, entry, settings)
    except BadInput as exc:
        problems.append(LaunchProblem("chat_template", str(exc), local="is not supported by" not in str(exc)))
    try:
        checked.api_key_env = _api_key_env(name, config)
    except BadInput as exc:
        problems.append(LaunchProblem("backend_config.api_key_env", str(exc)))
    problems += _env_problems(name, backend, config.get("env"))
    problems += _executable_problems(name, backend, config.get("executable"))
    if backend == OLLAMA:
        try:
            checked.ollama_options = _ollama_options(name, entry, checked.extra)
        except BadInput as exc:
            problems.append(LaunchProblem(EXTRA_ARGS, str(exc)))
    return checked


def _env_problems(name: str, backend: str, env: Any) -> list[LaunchProblem]:
    """backend_config.env that is not a mapping of names to text, or that sets what the launcher owns: a variable
    that would move the backend's host, port or model, or the one that carries its API key."""
    if env is None:
        return []
    field_name = "backend_config.env"
    problems = [LaunchProblem(field_name, f"model {name!r}: {field_name}: {problem}")
                for problem in env_mapping_problems(env)]
    if problems:
        return problems
    if env and backend not in PROCESS_BACKENDS:
        return [LaunchProblem(field_name, f"model {name!r}: {field_name} is set, but {backend} models run in the "
                                          f"{backend} daemon, which keeps its own environment; remove it")]
    owned = {key: "it would override the host, port or model the launcher sets; use the backend_config field"
             for key in SPECS[backend].unset_env}
    if backend in API_KEY_VARIABLES:
        owned[API_KEY_VARIABLES[backend]] = "it carries the backend's API key; use backend_config.api_key_env"
    return [LaunchProblem(field_name, f"model {name!r}: {field_name}.{key} is set by modelreg: {owned[key]}")
            for key in env if key in owned]


def _executable_problems(name: str, backend: str, executable: Any) -> list[LaunchProblem]:
    """A backend_config.executable for a backend modelreg runs no program for, or one not found on this machine (a
    note: the registry may be edited on another machine than the one that runs the model)."""
    if executable is None:
        return []
    field_name = "backend_config.executable"
    if not isinstance(executable, str) or not executable.strip():
        return [LaunchProblem(field_name, f"model {name!r}: {field_name} {executable!r} is not a program path; give "
                                          "one, or remove it to use the settings' program")]
    if backend not in PROCESS_BACKENDS:
        return [LaunchProblem(field_name, f"model {name!r}: {field_name} is set, but {backend} models run in the "
                                          f"{backend} daemon, not a program of ours; remove it")]
    if shutil.which(os.path.expanduser(executable)) is None:
        return [LaunchProblem(field_name, f"model {name!r}: {field_name} {executable} is not an executable program "
                                          "here; install it there or fix the path", error=False, local=True)]
    return []


def launch_plan(entry: dict[str, Any], settings: Settings, checked: CheckedConfig | None = None) -> LaunchPlan:
    """How to start this merged entry under these (profile-applied) settings; BadInput says what to fix. `checked` is
    this entry's check_config already made (the editor checks once per rerun), else the plan makes it."""
    name = entry.get("name") or "?"
    backend = canonical_backend(entry.get("backend"), name)
    config = entry.get("backend_config") or {}
    spec = SPECS[backend]
    if checked is None or (backend in PROCESS_BACKENDS and config.get("port") is None):  # a port is required here
        checked = check_config(name, backend, entry, settings, port_required=True)
    errors = [problem.message for problem in checked.problems if problem.error]
    if errors:
        raise BadInput("; ".join(errors))
    extra, given, key_env = checked.extra, checked.args, checked.api_key_env
    served = _served_model_id(entry) or name
    timeout = float(config.get("ready_timeout") or settings.ready_timeout)
    vision = bool(get_path(entry, "capabilities.vision")) or bool(get_path(entry, "metadata.architecture.vision"))

    if backend == OLLAMA:
        base_url = (config.get("base_url") or settings.ollama_host).rstrip("/")
        model = _served_model_id(entry) or str(config.get("model_path") or name).removeprefix("ollama:/")
        return LaunchPlan(name=name, backend=backend, argv=[], host=base_url, port=None, base_url=base_url,
                          ready_url=None, served_model_id=model, ready_timeout=timeout, vision=vision,
                          ollama_model=model, ollama_options=checked.ollama_options,
                          fit_max_context=_fit_max_context(entry, settings), api_key_env=key_env, entry=entry)

    port = config["port"]
    host = config.get("host") or settings.backend_host
    model_file = _model_file(name, backend, config.get("model_path"))
    executable = model_executable(backend, entry, settings)
    template = checked.template

    def unset(flag: str) -> bool:  # extra_args win over what the launcher would add for the same flag
        return not given.has(flag)

    context = effective_context(entry) if unset(spec.context_flag) else None
    if backend == VLLM:
        argv = [executable, "serve", model_file, "--host", host, "--port", str(port), "--served-model-name", served]
        if context:
            argv += ["--max-model-len", str(context)]
        if unset("--gpu-memory-utilization"):
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
        # its default ends a running stream when another request arrives (clients see a cut answer)
        if unset("--interrupt_requests"):
            argv += ["--interrupt_requests", "false"]
    if template and unset(TEMPLATE_FLAGS[backend][-1]):
        argv += [*TEMPLATE_FLAGS[backend], template]
    argv += extra
    base_url = f"http://{_connect_host(host)}:{port}"
    ready_url = base_url + spec.ready_path if spec.ready_path else None
    return LaunchPlan(name=name, backend=backend, argv=argv, host=host, port=port, base_url=base_url,
                      ready_url=ready_url, served_model_id=served, ready_timeout=timeout, vision=vision,
                      fit_max_context=_fit_max_context(entry, settings), api_key_env=key_env,
                      env=dict(config.get("env") or {}), entry=entry)


def launch_argv(entry: dict[str, Any], settings: Settings) -> list[str]:
    """The argv that starts this entry (empty for Ollama, which runs in its daemon)."""
    return launch_plan(entry, settings).argv


def context_conflict(name: str, entry: dict[str, Any]) -> str | None:
    """The message when the entry's context places are set and differ (one would silently win)."""
    places = context_places(entry)
    if len(places) < 2 or len(set(places.values())) == 1:
        return None
    both = " and ".join(f"{where} is {value}" for where, value in places.items())
    count = "two" if len(places) == 2 else "three"
    return (f"model {name!r}: {count} places set the context and differ: {both}; keep one of them, or make them "
            "agree")


def served_context(entry: dict[str, Any]) -> int | None:
    """The context length the model is served with: its one effective context (`effective_context`), else the native
    context read from disk (None when none is known)."""
    native = get_path(entry, "metadata.architecture.context_length")
    native = native if isinstance(native, int) and not isinstance(native, bool) and native > 0 else None
    return effective_context(entry) or native


UNIFIED_KV = {"-kvu": True, "--kv-unified": True, "-no-kvu": False, "--no-kv-unified": False}


def per_request_context(entry: dict[str, Any]) -> int | None:
    """The context one request can use: llama-server splits `-c` over its `-np`/`--parallel` slots unless the KV
    cache is unified (`-kvu`, which llama-server also turns on when it picks the slot count itself)."""
    full = served_context(entry)
    extra = (entry.get("backend_config") or {}).get("extra_args")
    if full is None or entry.get("backend") != LLAMA_CPP or not isinstance(extra, list):
        return full
    args = [str(arg) for arg in extra]
    slots = flag_value(args, "--parallel", LLAMA_CPP)
    unified = [UNIFIED_KV[arg] for arg in args if arg in UNIFIED_KV]
    if not slots or not slots.isdigit() or int(slots) < 1 or (unified and unified[-1]):
        return full
    return full // int(slots)


def exclusive_group(entry: dict | None) -> str | None:
    """backend_config.exclusive_group: starting a member stops the group's other running members."""
    group = ((entry or {}).get("backend_config") or {}).get("exclusive_group")
    return group if isinstance(group, str) and group else None


def idle_ttl(entry: dict, settings: Settings) -> float | None:
    """Seconds without requests after which the backend is stopped: backend_config.idle_ttl, else the setting."""
    ttl = (entry.get("backend_config") or {}).get("idle_ttl")
    ttl = settings.idle_ttl if ttl is None else ttl
    return float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0 else None
