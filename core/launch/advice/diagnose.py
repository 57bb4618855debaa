"""Reads a backend's log (and its entry) after a failed start and says what went wrong and what to change."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Callable

from modelreg.launch.advice.fit import context_change, context_home, suggested_context
from modelreg.launch.backends import LLAMA_CPP, LLAMA_CPP_PYTHON, SPECS, VLLM, canonical_backend
from modelreg.launch.catalogue import committed_catalogue
from modelreg.launch.flags import flag_value, with_flag

LONG_CONTEXT = 65536  # a context this long (vLLM's 128K default for many models) makes startup slow and memory-hungry


@dataclass(frozen=True)
class Finding:
    rule: str
    summary: str      # what went wrong, in one line
    suggestion: str   # what to change
    evidence: str     # the log line that shows it

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class _Context:
    log: str
    entry: dict[str, Any]
    name: str
    backend: str | None
    extra_args: list[str]
    argv: list[str]
    timed_out: bool
    fit_max_context: int | None


def _search(patterns: list[str], text: str) -> re.Match[str] | None:
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
        if match:
            return match
    return None


def _line(text: str, match: re.Match[str], width: int = 400) -> str:
    """The log line a match is on; a long line is cut to a window around the match."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start:end if end != -1 else len(text)].strip()
    if len(line) <= width:
        return line
    offset = max(0, match.start() - start - width // 2)
    return ("..." if offset else "") + line[offset:offset + width] + ("..." if offset + width < len(line) else "")


def _context_flag(backend: str | None) -> str:
    return SPECS[backend or VLLM].context_flag


def _with_flag(ctx: _Context, flag: str, value: str | None) -> list[str]:
    return with_flag(ctx.extra_args, flag, value, ctx.backend or VLLM)


def _set_command(ctx: _Context, args: list[str]) -> str:
    return _set_commands(ctx, {"backend_config.extra_args": args})


def _set_commands(ctx: _Context, changes: dict[str, Any]) -> str:
    return " && ".join(f"modelreg set {shlex.quote(ctx.name)} {path} {shlex.quote(json.dumps(value))}"
                       for path, value in changes.items())


def _suggested_context(ctx: _Context, from_log: int | None = None) -> int | None:
    """The context to suggest: the backend's own estimate from the log (it measured the memory), else the fit
    estimate, rounded as the fit rounds it."""
    value = from_log or ctx.fit_max_context
    return suggested_context(value) if value else None


def _context_advice(ctx: _Context, from_log: int | None = None) -> str:
    """A smaller context, set where the entry's context lives (context_change)."""
    flag = _context_flag(ctx.backend)
    value = _suggested_context(ctx, from_log)
    if value is None:
        return (f"set a smaller context with {flag} (run `modelreg fit {shlex.quote(ctx.name)}` for the largest "
                f"that fits), e.g. {_set_commands(ctx, _context_change(ctx, 8192))}")
    source = "the backend's own estimate" if from_log else "the fit estimate"
    return f"set {_context_home(ctx)} {value} ({source}): {_set_commands(ctx, _context_change(ctx, value))}"


def _entry(ctx: _Context) -> dict[str, Any]:
    return {**ctx.entry, "backend": ctx.backend or VLLM,
            "backend_config": {**(ctx.entry.get("backend_config") or {}), "extra_args": ctx.extra_args}}


def _context_change(ctx: _Context, context: int) -> dict[str, Any]:
    """The changes that set the context where the entry's context lives."""
    return context_change(_entry(ctx), context)


def _context_home(ctx: _Context) -> str:
    return context_home(_entry(ctx))


def reported_context_size(log: str) -> int | None:
    """The context size a backend says it runs with (llama.cpp `n_ctx = N`, vLLM `max_seq_len=N`)."""
    found = re.findall(r"\bn_ctx\s*=\s*(\d+)|max_seq_len=(\d+)|Using max model len (\d+)", log)
    if not found:
        return None
    return int(next(group for group in found[-1] if group))


# ---- rules: each returns a Finding or None --------------------------------------------------------------------

def _missing_executable(ctx: _Context) -> Finding | None:
    for match in re.finditer(r"No such file or directory: '([^']+)'|^(?:\S+: )?(\S+): command not found"
                             r"|exec: \"([^\"]+)\": executable file not found in \$PATH", ctx.log, re.MULTILINE):
        missing = next(g for g in match.groups() if g)
        wanted = ctx.argv[0] if ctx.argv else None
        if wanted is not None and missing != wanted and not ("/" not in missing
                                                             and missing == wanted.rsplit("/", 1)[-1]):
            continue
        if wanted is None and "/" in missing and "FileNotFoundError" in _line(ctx.log, match):
            continue  # a data path the server itself could not find, not its executable
        backend = ctx.backend or "the backend"
        if (ctx.entry.get("backend_config") or {}).get("executable"):
            return Finding("missing_executable", f"the executable {missing!r} was not found",
                           f"this model's backend_config.executable names it: install it there or fix the path "
                           f"(`modelreg set {ctx.name} backend_config.executable /path/to/program`; unset it to "
                           "use the settings' program)", _line(ctx.log, match))
        return Finding(
            "missing_executable", f"the executable {missing!r} was not found",
            f"install {backend} or set its full path in settings.json: "
            f"\"executables\": {{\"{backend}\": \"/path/to/{missing.rsplit('/', 1)[-1]}\"}} "
            "(per profile under \"profiles\" if it differs by machine)",
            _line(ctx.log, match))
    return None


def _port_in_use(ctx: _Context) -> Finding | None:
    match = _search([r"couldn't bind HTTP server socket.*", r".*\[Errno (?:98|48)\].*address already in use.*",
                     r".*address already in use.*", r"port \d+ .*is already in use.*"], ctx.log)
    if not match:
        return None
    port = (ctx.entry.get("backend_config") or {}).get("port")
    return Finding(
        "port_in_use", f"the port{f' {port}' if port else ''} was already taken by another process",
        f"stop the process holding it (`modelreg launch-test` reports and stops orphans of earlier runs), or give "
        f"this model a free port: modelreg set {shlex.quote(ctx.name)} backend_config.port <free port>",
        _line(ctx.log, match))


def _kv_cache_too_small(ctx: _Context) -> Finding | None:
    old = re.search(r"max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in "
                    r"KV cache \((\d+)\)", ctx.log)
    if old:
        return Finding("kv_cache_too_small",
                       f"the context ({old.group(1)} tokens) does not fit the KV cache ({old.group(2)} tokens) "
                       "left in GPU memory",
                       _context_advice(ctx, int(old.group(2))), _line(ctx.log, old))
    new = re.search(r"max seq len \((\d+)\), \(([\d.]+ \w+) KV cache is needed, which is larger than the available "
                    r"KV cache memory \(([\d.]+ \w+)\)", ctx.log)
    if new:
        estimate = re.search(r"estimated maximum model length is (\d+)", ctx.log)
        return Finding("kv_cache_too_small",
                       f"the context ({new.group(1)} tokens) needs {new.group(2)} of KV cache but only "
                       f"{new.group(3)} is available",
                       _context_advice(ctx, int(estimate.group(1)) if estimate else None), _line(ctx.log, new))
    other = _search([r"No available memory for the cache blocks.*", r".*failed to allocate buffer for kv cache.*",
                     r".*llama_kv_cache_init\(\) failed.*"], ctx.log)
    if other:
        return Finding("kv_cache_too_small", "there was no memory left for the KV cache of this context",
                       _context_advice(ctx), _line(ctx.log, other))
    return None


def _cuda_oom(ctx: _Context) -> Finding | None:
    match = _search([r".*CUDA out of memory.*", r".*cudaMalloc failed: out of memory.*",
                     r".*CUDA error: out of memory.*", r".*OutOfMemoryError.*"], ctx.log)
    if not match:
        return None
    if ctx.backend == VLLM:
        util = flag_value(ctx.extra_args, "--gpu-memory-utilization", VLLM)
        advice = (f"free the GPU (stop other backends; orphans of crashed runs are reported by `modelreg "
                  f"launch-test`), or lower the memory this model needs: {_context_advice(ctx)}; "
                  f"also --max-num-seqs 1 or --enforce-eager"
                  + (f"; --gpu-memory-utilization is {util}" if util else ""))
    elif ctx.backend in (LLAMA_CPP, LLAMA_CPP_PYTHON):
        layers = "-ngl" if ctx.backend == LLAMA_CPP else "--n_gpu_layers"
        advice = (f"offload fewer layers to the GPU ({layers} lower) or use a smaller context: "
                  f"{_context_advice(ctx)}")
    else:
        advice = f"use a smaller context or a smaller quantization: {_context_advice(ctx)}"
    return Finding("cuda_oom", "the GPU ran out of memory while the backend started", advice, _line(ctx.log, match))


def _long_default_context(ctx: _Context) -> Finding | None:
    timeout_line = _search([r".*Timed out waiting for engines?.*", r".*Engine core initialization failed.*",
                            r"modelreg: not ready after .*"], ctx.log)
    if not (ctx.timed_out or timeout_line):
        return None
    flag = _context_flag(ctx.backend)
    if ctx.backend and flag_value(ctx.extra_args, flag, ctx.backend) is not None:
        return None
    context = reported_context_size(ctx.log)
    evidence_match = re.search(r"max_seq_len=\d+|\bn_ctx\s*=\s*\d+|Using max model len \d+", ctx.log)
    if context is None:
        arch = (ctx.entry.get("metadata") or {}).get("architecture") or {}
        native = arch.get("context_length") or arch.get("max_position_embeddings")
        context = int(native) if isinstance(native, (int, float)) else None
    if context is None or context < LONG_CONTEXT:
        return None
    evidence = _line(ctx.log, evidence_match) if evidence_match else (
        _line(ctx.log, timeout_line) if timeout_line else f"native context {context} (metadata.architecture)")
    return Finding(
        "long_default_context",
        f"the backend was still starting with the model's full default context of {context} tokens when the "
        "start timed out (no context length is set in extra_args)",
        _context_advice(ctx), evidence)


def _trust_remote_code(ctx: _Context) -> Finding | None:
    match = _search([r".*requires you to execute the configuration file in that repo.*",
                     r".*contains custom code which must be executed.*",
                     r".*set the option `?trust_remote_code=True`?.*",
                     r".*pass(?:ing)? the argument `trust_remote_code=True`.*"], ctx.log)
    if not match:
        return None
    args = _with_flag(ctx, "--trust-remote-code", None)
    return Finding("trust_remote_code", "the model ships its own Python code and the backend refused to run it",
                   f"if you trust the model's repository, add --trust-remote-code: {_set_command(ctx, args)}",
                   _line(ctx.log, match))


def _unknown_architecture(ctx: _Context) -> Finding | None:
    match = _search([r"Model architectures \[([^\]]*)\] (?:are not supported|failed to be inspected)",
                     r"unknown model architecture: '([^']+)'",
                     r"model type `([^`]+)` but Transformers does not recognize this architecture"], ctx.log)
    if not match:
        return None
    arch = match.group(1).strip("'\" ")
    backend = ctx.backend or "the backend"
    return Finding("unknown_architecture", f"{backend} does not know the architecture {arch}",
                   f"upgrade {backend} to a release that supports {arch}, or serve the model with another backend "
                   f"(modelreg set {shlex.quote(ctx.name)} backend ...); if {arch} is in the backend's supported "
                   "list, an import error earlier in the log is the real cause",
                   _line(ctx.log, match))


def _unknown_flag(ctx: _Context) -> Finding | None:
    match = _search([r"error: unrecognized arguments: (.+)$", r"error: invalid argument: (\S+)"], ctx.log)
    if not match:
        return None
    given = match.group(1).split()[0]
    flag = given.split("=", 1)[0]
    catalogue = committed_catalogue(ctx.backend) if ctx.backend else None
    closest = catalogue.closest(flag) if catalogue is not None else ()
    if closest and flag in ctx.extra_args:
        args = [closest[0] if token == flag else token for token in ctx.extra_args]
        advice = f"did you mean {closest[0]}? {_set_command(ctx, args)}"
    else:
        advice = (f"remove {flag} from extra_args or correct it "
                  f"(`{ctx.argv[0] if ctx.argv else 'the backend'} --help` lists the flags)")
    return Finding("unknown_flag", f"{ctx.backend or 'the backend'} does not know the flag {flag}", advice,
                   _line(ctx.log, match))


def _missing_value(ctx: _Context) -> Finding | None:
    match = _search([r'error while handling argument "([^"]+)": expected value for argument',
                     r"error: argument ([^:\s]+)(?:/\S+)?: expected (?:one|\d+) arguments?"], ctx.log)
    if not match:
        return None
    return Finding("missing_value", f"the flag {match.group(1)} was given without its value",
                   f"add the value after {match.group(1)} in extra_args, or remove the flag", _line(ctx.log, match))


def _context_above_model(ctx: _Context) -> Finding | None:
    match = re.search(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len "
                      r"\((\w+)=([\d.]+)", ctx.log)
    if not match:
        return None
    limit = int(float(match.group(3)))
    return Finding("context_above_model",
                   f"the context {match.group(1)} is longer than the model's own {limit} ({match.group(2)})",
                   f"set {_context_home(ctx)} {limit} or less: {_set_commands(ctx, _context_change(ctx, limit))}",
                   _line(ctx.log, match))


def _model_not_found(ctx: _Context) -> Finding | None:
    match = _search([r"HFValidationError: Repo id must be in the form.*", r"failed to open GGUF file '([^']*)'.*",
                     r".*exiting due to model loading error.*",
                     r"ValueError: Model path does not exist: (\S+)"], ctx.log)
    if not match:
        return None
    path = (ctx.entry.get("backend_config") or {}).get("model_path") or "the model path"
    return Finding("model_not_found", f"the backend could not load the model from {path} (missing or unreadable)",
                   f"check that {path} exists; if the files moved, rescan (`modelreg scan`) or set "
                   f"backend_config.model_path: modelreg set {shlex.quote(ctx.name)} backend_config.model_path "
                   "/path/to/model", _line(ctx.log, match))


def _template_file_missing(ctx: _Context) -> Finding | None:
    match = _search([r'error while handling argument "--chat-template-file": error: failed to open file .*',
                     r".*The supplied chat template \(.*\) appears path-like, but doesn't exist!.*"], ctx.log)
    if not match:
        return None
    return Finding("chat_template_missing", "the chat template file could not be opened",
                   f"put the template at chat_template.path or change it: modelreg set {shlex.quote(ctx.name)} "
                   "chat_template.path /path/to/template.jinja", _line(ctx.log, match))


def api_key_refused(name: str, url: str | None, status: int, key_sent: bool) -> Finding:
    """The readiness probe got 401/403: the backend wants an API key that modelreg did not send, or another one."""
    quoted = shlex.quote(name)
    if key_sent:
        summary = "the backend refused the API key from backend_config.api_key_env"
        suggestion = ("make the variable that api_key_env names hold the key the backend was started with (a key "
                      "in extra_args wins over it: remove it there)")
    else:
        summary = "the backend requires an API key and modelreg sent none"
        suggestion = (f"put the key in an environment variable and name it: modelreg set {quoted} "
                      "backend_config.api_key_env MY_BACKEND_KEY (then remove the key from extra_args)")
    return Finding("api_key", summary, suggestion, f"GET {url} answered HTTP {status}")


RULES: tuple[Callable[[_Context], Finding | None], ...] = (
    _missing_executable, _unknown_flag, _missing_value, _template_file_missing, _model_not_found, _port_in_use,
    _context_above_model, _kv_cache_too_small, _cuda_oom, _trust_remote_code, _unknown_architecture,
    _long_default_context,
)


def diagnose(log: str, entry: dict[str, Any] | None = None, *, argv: list[str] | None = None,
             timed_out: bool = False, fit_max_context: int | None = None) -> list[Finding]:
    """Every rule that matches this log, most specific first (empty when none does).

    `timed_out`: the start was given up after the ready timeout; `fit_max_context`: the largest context the fit
    estimate says fits, used in suggestions when the backend's own log gives none.
    """
    entry = entry or {}
    config = entry.get("backend_config") or {}
    try:
        backend = canonical_backend(entry.get("backend"), entry.get("name", "?"))
    except Exception:
        backend = None
    extra = config.get("extra_args")
    extra = extra if isinstance(extra, list) else []
    ctx = _Context(log=log, entry=entry, name=entry.get("name") or "MODEL", backend=backend,
                   extra_args=[str(a) for a in extra], argv=list(argv or []), timed_out=timed_out,
                   fit_max_context=fit_max_context)
    return [finding for rule in RULES if (finding := rule(ctx)) is not None]
