"""`modelreg import llama-swap`: a llama-swap config.yaml read as llama-swap reads it (macros, `${PORT}`, groups,
matrix sets), each model's facts scanned into the discovered layer and its configuration set in the curated layer."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import yaml

from modelreg.discovery.facts import ScanError
from modelreg.discovery.scan import discover
from modelreg.errors import BadInput, RegistryError
from modelreg.launch.backends import LLAMA_CPP, LLAMA_CPP_PYTHON, SPECS, VLLM
from modelreg.launch.catalogue import Catalogue
from modelreg.launch.flags import parse_extra_args
from modelreg.launch.planning.checks import launch_problems
from modelreg.launch.planning.plan import backend_catalogue, backend_executable
from modelreg.paths import get_path, set_path
from modelreg.proxy.routing import REQUEST_DEFAULTS
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.store import atomic_write, read_layer, registry_lock
from modelreg.values import ENV_NAME, looks_secret

RESERVED_MACROS = ("PID", "PORT", "MODEL_ID")
DEFAULT_START_PORT = 5800
DEFAULT_PROXY = "http://localhost:${PORT}"
MIN_HEALTH_CHECK_TIMEOUT = 15  # llama-swap raises a smaller healthCheckTimeout to this
DEFAULT_GROUP = "(default)"  # llama-swap's group of the models no group names: one of them runs at a time
_MACRO_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_MACRO_USE = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
_ENV_MACRO = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}

# llama-swap's top-level keys modelreg does not carry over, and why (the models' own keys are read in _model)
_CONFIG_NOT_CARRIED = {
    "logLevel": "the proxy's log level is its own (uvicorn's); not a model setting",
    "logTimeFormat": "the proxy's own log format; not a model setting",
    "logToStdout": "backend output goes to each backend's log (`modelreg logs NAME`)",
    "logRequests": "not a model setting; per-request logging is the proxy's own",
    "metricsMaxInMemory": "a proxy setting, and the import writes models only: set `activity_limit` in settings.json",
    "captureBuffer": "modelreg does not capture request bodies",
    "store": "modelreg's activity goes to a rotating JSONL file (`activity_max_bytes`), not a database",
    "ui": "modelreg's GUI is `modelreg gui` (its own port), with nothing of llama-swap's UI to configure",
    "performance": "modelreg does not poll system statistics",
    "includeAliasesInList": "a proxy setting, and the import writes models only: set `list_aliases` in "
                            "settings.json",
    "unloadTimeout": "the `stop_grace` setting (one for every model) is the grace before SIGKILL; set it in "
                     "settings.json",
    "apiKeys": "keys are a proxy setting, never written into the registry by an import: put them in the "
               "`proxy_api_keys` setting",
    "upstream": "nothing to configure: modelreg's `/upstream/{model}/...` passes every path and method through",
    "profiles": "llama-swap profiles pin model IDs at runtime; modelreg profiles are settings overlays "
                "(`--profile`), not the same thing",
    "selectors": "modelreg routes `role:<name>` to the role's best model (roles, role_priority); set those instead",
    "hooks": "modelreg does not preload models at start; `modelreg restart NAME` starts one ahead of use",
    "peers": "modelreg does not forward to remote servers; export a gateway config (`modelreg export litellm`) "
             "for several hosts",
    "scheduler": "modelreg serves requests in arrival order; there are no per-model priorities",
}
_CONFIG_USED = {"startPort", "globalTTL", "healthCheckTimeout", "routing", "groups", "matrix", "sendLoadingState"}
_MODEL_KEYS = {"cmd", "cmdStop", "proxy", "aliases", "env", "checkEndpoint", "ttl", "unloadTimeout", "unlisted",
               "useModelName", "name", "description", "concurrencyLimit", "filters", "macros", "metadata",
               "sendLoadingState", "timeouts", "compat", "capabilities"}
_MODEL_NOT_CARRIED = {
    "cmdStop": "modelreg stops a backend with SIGTERM to its process group, then SIGKILL after `stop_grace`",
    "description": "modelreg's /v1/models has no description",
    "metadata": "modelreg's /v1/models does not pass metadata through",
    "unloadTimeout": "the `stop_grace` setting (one for every model) is the grace before SIGKILL",
    "timeouts": "the proxy's upstream timeouts are not set per model",
    "compat": "modelreg has no websocket passthrough",
}


@dataclass
class ImportedModel:
    """One llama-swap model as the import reads it: the argv its cmd runs, what goes into each layer, and what is
    left behind (with why)."""

    name: str
    line: int
    argv: list[str] = field(default_factory=list)
    backend: str | None = None
    curated: dict[str, Any] = field(default_factory=dict)  # dotted path -> value
    discovered: dict[str, Any] | None = None
    file_found: bool = False
    not_carried: list[str] = field(default_factory=list)  # "key: why"
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the model is not imported at all

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("discovered")
        return data


@dataclass
class LlamaSwapImport:
    """What an import read and did."""

    path: str
    models: list[ImportedModel]
    not_carried: list[str]  # top-level keys: "key: why"
    dry_run: bool
    changed: bool = False  # whether the registry files changed (False on a dry run and on a repeated import)

    def imported(self) -> list[ImportedModel]:
        return [m for m in self.models if m.skipped is None]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "dry_run": self.dry_run, "changed": self.changed,
                "models": [m.to_dict() for m in self.models], "not_carried": self.not_carried}


# ---- reading the file -------------------------------------------------------------------------------------------
MAX_VALUES = 100_000  # keys, items and texts of the file once its aliases are written out


class _Lines:
    """The line of every key and list item of the YAML file, for messages."""

    def __init__(self, path: Path, node: yaml.Node | None):
        self.path = path
        self.found: dict[tuple, int] = {}
        self._walked: set[int] = set()
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, at: tuple) -> None:
        if id(node) in self._walked:  # a YAML alias: its lines are where the anchor is (and aliases nest: no loop)
            return
        self._walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and (*at, key.value) not in self.found:
                    self.found[(*at, key.value)] = key.start_mark.line + 1
                    self._walk(value, (*at, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                self.found[(*at, index)] = value.start_mark.line + 1
                self._walk(value, (*at, index))

    def of(self, *at: Any) -> int:
        for cut in range(len(at), 0, -1):
            if at[:cut] in self.found:
                return self.found[at[:cut]]
        return 1

    def error(self, at: tuple, message: str) -> BadInput:
        where = ".".join(str(part) for part in at)
        return BadInput(f"{self.path}:{self.of(*at)}: {where + ': ' if where else ''}{message}; nothing was imported")


def read_config(path: Path) -> tuple[dict[str, Any], _Lines]:
    """The file's YAML as plain data, and where each key is; BadInput with file and line for what cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file; give the path of llama-swap's config.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); nothing was imported"
                       ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BadInput(f"{path}{line}: not valid YAML ({problem}); fix the file, nothing was imported") from None
    lines = _Lines(path, node)
    if _expanded_size(data, {}) > MAX_VALUES:
        raise lines.error((), f"the file expands to more than {MAX_VALUES} values (YAML aliases inside aliases); "
                              "a llama-swap config is far smaller")
    if not isinstance(data, dict):
        raise lines.error((), "the file is not a llama-swap config (no mapping with `models:` at the top)")
    if not isinstance(data.get("models"), dict) or not data["models"]:
        raise lines.error(("models",), "no models: a llama-swap config lists them under `models:`, one mapping per "
                                       "model ID")
    return data, lines


def _expanded_size(value: Any, sizes: dict[int, int]) -> int:
    """How many values `value` holds once every alias is written out, counted once per shared object."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) not in sizes:
        sizes[id(value)] = 0  # a self-referencing alias counts as nothing more
        items = value.values() if isinstance(value, dict) else value
        sizes[id(value)] = 1 + sum(_expanded_size(item, sizes) for item in items)
    return sizes[id(value)]


# ---- macros -------------------------------------------------------------------------------------------------------
def _macro_text(value: Any) -> str:
    """A macro value as it reads inside a longer text (as llama-swap formats it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _substitute(value: Any, name: str, macro: Any) -> Any:
    """`${name}` replaced in every text of `value`; a text that is only the macro takes the macro's own type."""
    slug = "${" + name + "}"
    if isinstance(value, str):
        if value == slug:
            return macro
        return value.replace(slug, _macro_text(macro)) if slug in value else value
    if isinstance(value, dict):
        return {key: _substitute(item, name, macro) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, name, macro) for item in value]
    return value


def _apply(value: Any, macros: list[tuple[str, Any]]) -> Any:
    """Every macro substituted, the last declared first: so a macro's own value, substituted later, still gets the
    macros declared before it (llama-swap's order: a macro may use only macros declared above it)."""
    for name, macro in reversed(macros):
        value = _substitute(value, name, macro)
    return value


def _macros(declared: Any, lines: _Lines, at: tuple) -> list[tuple[str, Any]]:
    """A `macros:` mapping checked as llama-swap checks it, in declaration order."""
    if declared is None:
        return []
    if not isinstance(declared, dict):
        raise lines.error(at, "macros must be a mapping of name: value")
    checked = []
    for name, value in declared.items():
        where = (*at, name)
        if not isinstance(name, str) or not _MACRO_NAME.fullmatch(name) or len(name) >= 64:
            raise lines.error(where, "a macro name is letters, digits, _ and - (at most 63); rename it")
        if name in RESERVED_MACROS:
            raise lines.error(where, f"{name} is a reserved macro name ({', '.join(RESERVED_MACROS)}); rename it")
        if value is None or isinstance(value, (dict, list)):
            raise lines.error(where, "a macro value is a string, number or bool")
        if isinstance(value, str) and "${" + name + "}" in value:
            raise lines.error(where, "the macro refers to itself")
        checked.append((name, value))
    return checked


def _texts(value: Any, at: tuple) -> Iterator[tuple[tuple, str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, (*at, index))


def _no_macros_left(value: Any, lines: _Lines, at: tuple, allowed: tuple[str, ...] = ()) -> None:
    for where, text in _texts(value, at):
        for name in _MACRO_USE.findall(text):
            if name not in allowed:
                raise lines.error(where, f"unknown macro ${{{name}}}; declare it under `macros:` (above the macros "
                                         "that use it), or use ${PORT} only in cmd")


def _env_values(value: Any, lines: _Lines, at: tuple, environ: dict[str, str] | Any) -> Any:
    """`${env.NAME}` replaced by the variable's value (as llama-swap does when it loads the file)."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            if match[1] not in environ:
                raise lines.error(at, f"${{env.{match[1]}}} names a variable that is not set; export {match[1]} "
                                      "before importing (llama-swap would refuse the file too)")
            return environ[match[1]]
        whole = _ENV_MACRO.fullmatch(value)
        replaced = _ENV_MACRO.sub(replace, value)
        if whole:  # llama-swap substitutes into the file's text, so `startPort: ${env.PORT}` is a number
            try:
                typed = yaml.safe_load(replaced)
            except yaml.YAMLError:
                typed = None
            return typed if isinstance(typed, (int, float, bool)) else replaced
        return replaced
    if isinstance(value, dict):
        return {key: _env_values(item, lines, (*at, key), environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_env_values(item, lines, (*at, index), environ) for index, item in enumerate(value)]
    return value


def strip_comment_lines(cmd: str) -> str:
    """cmd without its comment lines (a `|` block may hold `# ...` lines)."""
    return "\n".join(line for line in cmd.split("\n") if not line.strip().startswith("#"))


def command_argv(cmd: str) -> list[str]:
    """cmd split as llama-swap splits it: comment lines out, a trailing backslash joins lines, POSIX shell words."""
    lines = []
    for line in cmd.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        lines.append(stripped[:-1] + " " if stripped.endswith("\\") else line)
    return shlex.split("\n".join(lines))


@dataclass
class _Expanded:
    """The config after macros: each model's values, its argv, and the port `${PORT}` gave it."""

    config: dict[str, Any]
    models: dict[str, dict[str, Any]]
    ports: dict[str, int]


def expand(data: dict[str, Any], lines: _Lines, environ: dict[str, str] | Any) -> _Expanded:
    """Macros (global, per model, inside macros, `${MODEL_ID}`), `${PORT}` from startPort in model-ID order, and
    `${env.NAME}` as llama-swap resolves them; a model's `env` keeps `${env.NAME}` as a reference instead (see
    _env_mapping). BadInput names file, line and key of anything llama-swap would refuse."""
    global_macros = _macros(data.get("macros"), lines, ("macros",))
    config = {key: _apply(value, global_macros) for key, value in data.items() if key not in ("models", "macros")}
    _no_macros_left(config, lines, ())
    # `${env.NAME}` is read only in the keys the import uses: an unset variable elsewhere (an apiKeys entry, a peer's
    # key) does not stop it
    config = {key: _env_values(value, lines, (key,), environ) if key in _CONFIG_USED else value
              for key, value in config.items()}
    start = config.get("startPort", DEFAULT_START_PORT)
    if not isinstance(start, int) or isinstance(start, bool) or not 1 <= start <= 65535:
        raise lines.error(("startPort",), f"{start!r} is not a port number")
    models: dict[str, dict[str, Any]] = {}
    ports: dict[str, int] = {}
    next_port = start
    for name in sorted(data["models"], key=str):
        raw = data["models"][name]
        at = ("models", name)
        if not isinstance(raw, dict):
            raise lines.error(at, "a model is a mapping with at least `cmd`")
        if not isinstance(raw.get("cmd"), str) or not raw["cmd"].strip():
            raise lines.error((*at, "cmd"), "every model needs `cmd`, the command that starts its server")
        own = _macros(raw.get("macros"), lines, (*at, "macros"))
        merged = [("MODEL_ID", str(name)), *global_macros]
        for macro in own:
            names = [m[0] for m in merged]
            if macro[0] in names:
                merged[names.index(macro[0])] = macro
            else:
                merged.append(macro)
        model = {key: value for key, value in raw.items() if key != "macros"}
        for key in ("cmd", "cmdStop"):
            if isinstance(model.get(key), str):
                model[key] = strip_comment_lines(model[key])
        model.setdefault("proxy", DEFAULT_PROXY)
        if model["proxy"] is None:
            model["proxy"] = DEFAULT_PROXY
        model = _apply(model, merged)
        if "${PORT}" in str(model.get("cmd")):
            model = _substitute(model, "PORT", next_port)
            ports[str(name)] = next_port
            next_port += 1
        elif "${PORT}" in str(model.get("proxy")):
            raise lines.error((*at, "proxy"), "proxy uses ${PORT} (its default) but cmd does not; ${PORT} is only "
                                              "given to a model whose cmd uses it: set proxy to the URL cmd's server "
                                              "listens on, e.g. http://127.0.0.1:9000 (llama-swap refuses it too)")
        _no_macros_left({k: v for k, v in model.items() if k != "cmdStop"}, lines, at)
        _no_macros_left(model.get("cmdStop"), lines, (*at, "cmdStop"), allowed=("PID",))
        env = model.pop("env", None)
        model = _env_values(model, lines, at, environ)
        if env is not None:
            model["env"] = env
        models[str(name)] = model
    return _Expanded(config, models, ports)


def _env_mapping(env: Any, lines: _Lines, at: tuple) -> dict[str, str]:
    """llama-swap's `env` list (`NAME=value`) as backend_config.env: `${env.NAME}` becomes the reference `${NAME}`,
    read by the proxy at each start (its value is never written into the registry), and a literal `$` becomes `$$`."""
    if not isinstance(env, list):
        raise lines.error(at, 'env is a list of "NAME=value" strings')
    mapping = {}
    for index, item in enumerate(env):
        if not isinstance(item, str) or "=" not in item:
            raise lines.error((*at, index), f'{item!r} is not "NAME=value"')
        name, value = item.split("=", 1)
        if not ENV_NAME.fullmatch(name):
            raise lines.error((*at, index), f"{name!r} is not an environment variable name")
        parts = _ENV_MACRO.split(value)  # text, name, text, name, ...
        mapping[name] = "".join("${" + part + "}" if odd else part.replace("$", "$$")
                                for odd, part in ((i % 2 == 1, p) for i, p in enumerate(parts)))
    return mapping


# ---- groups and matrix sets ---------------------------------------------------------------------------------------
def _routing(config: dict[str, Any], models: dict[str, Any], lines: _Lines,
             not_carried: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """exclusive_group per model from llama-swap's groups or matrix sets, and per model what of them is lost."""
    router = get_path(config, "routing.router") or {}
    settings = router.get("settings") or {} if isinstance(router, dict) else {}
    legacy = "groups" in config or "matrix" in config
    if legacy and (router.get("use") or settings):
        raise lines.error(("routing",), "the config uses both the legacy top-level groups/matrix and "
                                        "routing.router (llama-swap refuses that); keep one")
    groups = config.get("groups") if legacy else settings.get("groups")
    matrix = config.get("matrix") if legacy else settings.get("matrix")
    use = router.get("use") or ("matrix" if matrix is not None and not groups else "group")
    if "scheduler" in (config.get("routing") or {}):
        not_carried.append(f"routing.scheduler: {_CONFIG_NOT_CARRIED['scheduler']}")
    if use == "matrix":
        if legacy and groups:
            raise lines.error(("matrix",), "the config has both groups and matrix (llama-swap refuses that); keep one")
        return _matrix_groups(matrix, models, lines, ("matrix",) if legacy else ("routing", "router", "settings",
                                                                                   "matrix"))
    at = ("groups",) if legacy else ("routing", "router", "settings", "groups")
    return _group_groups(groups or {}, models, lines, at, not_carried)


def _group_groups(groups: Any, models: dict[str, Any], lines: _Lines, at: tuple,
                  not_carried: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    if not isinstance(groups, dict):
        raise lines.error(at, "groups is a mapping of group name: {swap, exclusive, persistent, members}")
    chosen: dict[str, str] = {}
    lost: dict[str, list[str]] = {}
    for group, spec in groups.items():
        where = (*at, group)
        if not isinstance(spec, dict) or not isinstance(spec.get("members"), list):
            raise lines.error(where, "a group needs `members`, a list of model IDs")
        for member in spec["members"]:
            if member not in models:
                raise lines.error((*where, "members"), f"{member!r} is not a model of this config")
            if member in chosen or member in lost:
                raise lines.error((*where, "members"), f"{member!r} is in two groups (llama-swap refuses that)")
            lost[member] = []
            if spec.get("swap", True):
                chosen[member] = str(group)
            if spec.get("exclusive", True):
                lost[member].append(f"group {group}: exclusive (starting a member unloads the other groups): a "
                                    "modelreg exclusive_group only stops members of its own group")
            if spec.get("persistent"):
                lost[member].append(f"group {group}: persistent: modelreg never unloads another group's models")
    for name in models:
        if name not in lost:  # llama-swap's default group: one of these runs at a time, and it unloads the others
            chosen[name] = DEFAULT_GROUP
            lost[name] = [f"group {DEFAULT_GROUP} (models of no group): starting one unloads the other groups; a "
                          "modelreg exclusive_group only stops members of its own group"] if groups else []
    return chosen, lost


_SET_TOKEN = re.compile(r"\s*(?:([&|()])|\+([^\s&|()]+)|([^\s&|()+]+))")


def _expand_set(text: str, sets: dict[str, str], variables: dict[str, str], seen: tuple[str, ...] = ()
                ) -> list[frozenset[str]]:
    """A matrix set expression (`(a | b) & c`, `+other`) as the concrete model sets it allows."""
    tokens = []
    position = 0
    while position < len(text.rstrip()):
        match = _SET_TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read {text[position:]!r}")
        tokens.append(match.groups())
        position = match.end()
    index = 0

    def alternatives() -> list[frozenset[str]]:
        nonlocal index
        result = conjunction()
        while index < len(tokens) and tokens[index][0] == "|":
            index += 1
            result = result + conjunction()
        return result

    def conjunction() -> list[frozenset[str]]:
        nonlocal index
        result = atom()
        while index < len(tokens) and tokens[index][0] == "&":
            index += 1
            right = atom()
            result = [a | b for a in result for b in right]
        return result

    def atom() -> list[frozenset[str]]:
        nonlocal index
        if index >= len(tokens):
            raise ValueError("the expression ends too early")
        operator, ref, name = tokens[index]
        index += 1
        if operator == "(":
            inner = alternatives()
            if index >= len(tokens) or tokens[index][0] != ")":
                raise ValueError("a ( is not closed")
            index += 1
            return inner
        if ref:
            if ref not in sets or ref in seen:
                raise ValueError(f"+{ref} is not another set" if ref not in sets else f"+{ref} includes itself")
            return _expand_set(sets[ref], sets, variables, (*seen, ref))
        if name:
            return [frozenset({variables.get(name, name)})]
        raise ValueError(f"unexpected {operator!r}")

    found = alternatives()
    if index != len(tokens):
        raise ValueError(f"unexpected {tokens[index][0] or tokens[index][1] or tokens[index][2]!r}")
    return found


def _matrix_groups(matrix: Any, models: dict[str, Any], lines: _Lines,
                   at: tuple) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Matrix sets as exclusive groups: two models that no set allows together must not run together, so they share
    a group (the groups are the connected parts of the "may not run together" graph); pairs a set allows inside such
    a group are what is lost (a modelreg group runs one member at a time)."""
    if not isinstance(matrix, dict) or not isinstance(matrix.get("sets"), dict):
        raise lines.error(at, "matrix needs `sets`, a mapping of set name: expression")
    variables = {str(k): str(v) for k, v in (matrix.get("vars") or {}).items()}
    sets = {str(k): str(v) for k, v in matrix["sets"].items()}
    allowed: set[frozenset[str]] = set()
    for name, expression in sets.items():
        try:
            combos = _expand_set(expression, sets, variables)
        except ValueError as exc:
            raise lines.error((*at, "sets", name), f"{exc}; write model IDs joined by &, | and ( )") from None
        for combo in combos:
            unknown = sorted(combo - set(models))
            if unknown:
                raise lines.error((*at, "sets", name), f"{', '.join(unknown)} is not a model of this config")
            allowed |= {frozenset({a, b}) for a in combo for b in combo if a != b}
    names = sorted(models)
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for a in names:
        for b in names:
            if a < b and frozenset({a, b}) not in allowed:
                parent[root(b)] = root(a)
    parts: dict[str, list[str]] = {}
    for name in names:
        parts.setdefault(root(name), []).append(name)
    chosen: dict[str, str] = {}
    lost: dict[str, list[str]] = {name: [] for name in names}
    numbered = [members for members in parts.values() if len(members) > 1]
    for number, members in enumerate(numbered, 1):
        for name in members:
            chosen[name] = f"matrix-{number}"
            together = sorted(other for other in members if frozenset({name, other}) in allowed)
            if together:
                lost[name].append(f"matrix: may run with {', '.join(together)}, but they share exclusive_group "
                                  f"matrix-{number} with models it may not run with")
    if matrix.get("evict_costs"):
        for name in names:
            lost[name].append("matrix.evict_costs: modelreg stops the other members of the group, whatever the cost")
    return chosen, lost


# ---- one model ----------------------------------------------------------------------------------------------------
def recognise(argv: list[str]) -> tuple[str, list[str], str | None] | None:
    """(backend, the flags after the program, a positional model) for a command modelreg knows how to run."""
    program = os.path.basename(argv[0])
    if program.startswith("llama-server"):
        return LLAMA_CPP, argv[1:], None
    if program.startswith("vllm") and argv[1:2] == ["serve"]:
        rest = argv[2:]
        if rest and not rest[0].startswith("-"):
            return VLLM, rest[1:], rest[0]
        return VLLM, rest, None
    if re.fullmatch(r"python[0-9.]*", program) and argv[1:3] == ["-m", "llama_cpp.server"]:
        return LLAMA_CPP_PYTHON, argv[3:], None
    return None


_SERVED_FLAGS = {"--alias", "--served-model-name", "--model_alias"}


def _split_flags(backend: str, args: list[str], catalogue: Catalogue) -> tuple[dict[str, str], list[str], list[str],
                                                                             str | None]:
    """The launcher-owned flags' values (by canonical name), the rest as extra_args, what was left out (with why),
    and why the model cannot be imported (a flag that makes the server fetch its own model)."""
    spec = SPECS[backend]
    parsed = parse_extra_args(args, catalogue)
    owned: dict[str, str] = {}
    dropped: set[int] = set()
    left_out: list[str] = []
    blocker = None
    for arg in parsed.args:
        separate = list(args[arg.index + 1:arg.index + 1 + len(arg.values)]) == list(arg.values)
        span = range(arg.index, arg.index + 1 + (len(arg.values) if separate else 0))
        name = arg.flag.name
        if name in spec.refused:
            dropped.update(span)
            left_out.append(f"{arg.token}: {spec.refused[name]}")
        elif name in spec.owned:
            dropped.update(span)
            if name in ("--port", "--host", "--model") or name in _SERVED_FLAGS:
                owned[name] = arg.values[0] if arg.values else ""
                if name in _SERVED_FLAGS and len(arg.values) > 1:
                    left_out.append(f"{arg.token} {' '.join(arg.values[1:])}: only the first served name is kept")
            else:
                blocker = (f"{arg.token} makes the server fetch or choose its model itself; download the model "
                           "(`modelreg download`) and give its file with -m")
    extra = [token for index, token in enumerate(args) if index not in dropped]
    return owned, extra, left_out, blocker


def _port(model: dict[str, Any], allocated: int | None, owned: dict[str, str], item: ImportedModel) -> int | None:
    proxy = urlparse(str(model.get("proxy") or ""))
    try:
        proxy_port = proxy.port
    except ValueError:
        proxy_port = None
    if proxy.hostname and proxy.hostname not in _LOOPBACK and proxy.hostname != owned.get("--host"):
        item.not_carried.append(f"proxy: {model['proxy']}: modelreg connects to the address the backend binds "
                                "(backend_config.host)")
    flag_port = int(owned["--port"]) if owned.get("--port", "").isdigit() else None
    port = allocated or flag_port or proxy_port
    if flag_port and proxy_port and flag_port != proxy_port:
        item.notes.append(f"cmd's --port {flag_port} and proxy's port {proxy_port} differ; the backend listens on "
                          f"--port, so the port is {flag_port}")
        port = flag_port
    return port


def _served(model: dict[str, Any], owned: dict[str, str], item: ImportedModel) -> str | None:
    use = model.get("useModelName")
    flag = next((owned[f] for f in _SERVED_FLAGS if f in owned), None)
    if isinstance(use, str) and use and flag and flag != use:
        item.notes.append(f"useModelName {use!r} and cmd's served name {flag!r} differ; modelreg serves and sends "
                          f"one name: {use!r}")
    return use if isinstance(use, str) and use else flag


def _aliases(value: Any, lines: _Lines, at: tuple, item: ImportedModel) -> list[str]:
    if not isinstance(value, list):
        raise lines.error(at, "aliases is a list of names")
    names = []
    for index, alias in enumerate(value):
        if isinstance(alias, str) and alias:
            names.append(alias)
        elif isinstance(alias, dict) and isinstance(alias.get("id"), str) and alias["id"]:
            names.append(alias["id"])
            for key in sorted(set(alias) - {"id"}):
                item.not_carried.append(f"aliases[{index}].{key}: a modelreg alias is a name only, listed as the "
                                        "model it names")
        else:
            raise lines.error((*at, index), f"{alias!r} is not an alias name or an {{id, name, unlisted}} object")
    return names


def _model_file(text: str, base: Path, backend: str, item: ImportedModel) -> str:
    """The model path as the registry keeps it: `~` expanded, a relative path taken from the config's folder (a
    vLLM hub ID that is not a path here stays as it is)."""
    path = Path(os.path.expanduser(text))
    if path.is_absolute():
        return str(path)
    beside = base / path
    if beside.exists() or backend != VLLM:
        item.notes.append(f"the relative model path {text} is read from the config's folder: {beside}")
        return str(beside)
    item.notes.append(f"{text} is not a path here; vLLM downloads it from the hub at start (`modelreg download "
                      f"{text}` keeps it on disk)")
    return text


def _discovered(name: str, path: str, item: ImportedModel) -> dict[str, Any]:
    """The model's facts read from its file, or an entry marked missing when the file is not on this machine."""
    if os.path.exists(path):
        try:
            found = discover([path])
        except (ScanError, OSError) as exc:
            item.notes.append(f"cannot read {path}: {exc}")
            found = None
        if found is not None:
            item.notes += [f"{problem.path}: {problem.message}" for problem in found.problems]
            if len(found.models) == 1:
                item.file_found = True
                return {"name": name, **found.models[0].entry}
    item.notes.append(f"{path} is not on this machine: the model is recorded as missing until a scan finds it")
    return {"name": name, "backend_config": {"model_path": path}, "missing": True}


def _model(name: str, model: dict[str, Any], expanded: _Expanded, routing: tuple[dict[str, str], dict[str, list]],
           lines: _Lines, settings: Settings, base: Path) -> ImportedModel:
    at = ("models", name)
    item = ImportedModel(name, lines.of(*at))
    try:
        item.argv = command_argv(model["cmd"])
    except ValueError as exc:
        raise lines.error((*at, "cmd"), f"cannot split the command ({exc}); close the quote") from None
    if not item.argv:
        raise lines.error((*at, "cmd"), "the command is empty")
    known = recognise(item.argv)
    if known is None:
        item.skipped = (f"{item.argv[0]} is not a backend modelreg knows (it runs llama-server, `vllm serve` and "
                        "`python -m llama_cpp.server`); add the model with `modelreg scan` and set its backend")
        return item
    backend, args, positional = known
    item.backend = backend
    entry_exe = {"backend_config": {"executable": item.argv[0]}}
    catalogue = backend_catalogue(backend, settings, entry_exe)
    owned, extra, left_out, blocker = _split_flags(backend, args, catalogue) if catalogue else ({}, args, [], None)
    if blocker:
        item.skipped = blocker
        return item
    item.not_carried += [f"cmd {text}" for text in left_out]
    model_text = owned.get("--model") or positional
    if not model_text:
        item.skipped = "cmd names no model file (-m / --model); modelreg starts a model from its file"
        return item
    config: dict[str, Any] = {"backend": backend}
    port = _port(model, expanded.ports.get(name), owned, item)
    if port is None:
        item.skipped = "no port: cmd has no ${PORT} or --port, and proxy names none"
        return item
    config["backend_config.port"] = port
    config["backend_config.extra_args"] = extra
    if owned.get("--host"):
        config["backend_config.host"] = owned["--host"]
    if not _same_program(item.argv[0], backend_executable(backend, settings)):
        config["backend_config.executable"] = item.argv[0]
    if "env" in model:
        env = _env_mapping(model["env"], lines, (*at, "env"))
        if env:
            config["backend_config.env"] = env
    ttl = model.get("ttl", -1)
    global_ttl = expanded.config.get("globalTTL", 0)
    config["backend_config.idle_ttl"] = ttl if isinstance(ttl, (int, float)) and ttl >= 0 else global_ttl
    timeout = expanded.config.get("healthCheckTimeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        config["backend_config.ready_timeout"] = max(MIN_HEALTH_CHECK_TIMEOUT, timeout)
    group = routing[0].get(name)
    if group:
        config["backend_config.exclusive_group"] = group
    item.not_carried += routing[1].get(name, [])
    sends = model.get("sendLoadingState", expanded.config.get("sendLoadingState"))
    if isinstance(sends, bool):  # llama-swap's false sends nothing a chat UI shows: comments keep the stream alive
        config["backend_config.loading_state"] = "reasoning" if sends else "comments"
    limit = model.get("concurrencyLimit")
    if isinstance(limit, int) and limit > 0:
        config["backend_config.max_concurrency"] = limit
    served = _served(model, owned, item)
    if served:
        config["served_model_id"] = served
    if "aliases" in model and model["aliases"]:
        config["model_aliases"] = _aliases(model["aliases"], lines, (*at, "aliases"), item)
    if isinstance(model.get("name"), str) and model["name"]:
        config["display_name"] = model["name"]
    if model.get("unlisted"):
        config["deprecated"] = True
    _filters(model.get("filters"), config, item)
    _capabilities(model.get("capabilities"), config, item)
    endpoint = model.get("checkEndpoint", "/health")
    if endpoint not in (None, SPECS[backend].ready_path):
        item.not_carried.append(f"checkEndpoint {endpoint}: modelreg probes {SPECS[backend].ready_path} for "
                                f"{backend}")
    for key in sorted(model):
        if key in _MODEL_NOT_CARRIED:
            item.not_carried.append(f"{key}: {_MODEL_NOT_CARRIED[key]}")
        elif key not in _MODEL_KEYS:
            item.not_carried.append(f"{key}: not a llama-swap model key")
    item.curated = config
    model_path = _model_file(model_text, base, backend, item)
    item.discovered = _discovered(name, model_path, item)
    entry = _entry(item)
    errors = [p.message for p in launch_problems(entry, settings) if p.error and p.field != "backend_config.port"]
    if errors:
        item.skipped = "the command would not pass modelreg's launch check: " + "; ".join(errors)
    return item


def _same_program(program: str, default: str) -> bool:
    if program == default:
        return True
    # by path, not by what a link points to: a build pinned under another name is another program to its user
    found, expected = shutil.which(program), shutil.which(default)
    return bool(found and expected and os.path.abspath(found) == os.path.abspath(expected))


def _filters(filters: Any, config: dict[str, Any], item: ImportedModel) -> None:
    if not isinstance(filters, dict):
        return
    fields = {request: key for key, request in REQUEST_DEFAULTS.items()}
    for key, value in (filters.get("setParams") or {}).items():
        if key in fields:
            config[f"generation_defaults.{fields[key]}"] = value
        else:
            item.not_carried.append(f"filters.setParams.{key}: the proxy fills in only "
                                    f"{', '.join(sorted(fields))}")
    if filters.get("setParams"):
        item.notes.append("filters.setParams became generation_defaults: modelreg fills them in where a request "
                          "leaves them out; llama-swap overrides what the request sends")
    if filters.get("stripParams"):
        item.not_carried.append("filters.stripParams: the proxy passes every request field on")
    if filters.get("setParamsByID"):
        item.not_carried.append("filters.setParamsByID: an alias names the same model with the same defaults")


def _capabilities(capabilities: Any, config: dict[str, Any], item: ImportedModel) -> None:
    if not isinstance(capabilities, dict):
        return
    if "tools" in capabilities:
        config["capabilities.tools"] = bool(capabilities["tools"])
    if "in" in capabilities:
        config["capabilities.vision"] = "image" in (capabilities.get("in") or [])
    for key in ("out", "reranker", "context"):
        if key in capabilities:
            item.not_carried.append(f"capabilities.{key}: modelreg reads what it can from the model file")


def _entry(item: ImportedModel) -> dict[str, Any]:
    """The merged entry the import would give the model (discovered facts under its curated configuration)."""
    entry = json.loads(json.dumps(item.discovered or {"name": item.name}))
    entry.pop("missing", None)
    for path, value in item.curated.items():
        set_path(entry, path, value)
    return entry


# ---- the import ---------------------------------------------------------------------------------------------------
def plan_import(registry: Registry, path: str | os.PathLike, environ: dict[str, str] | Any = None
                ) -> LlamaSwapImport:
    """What importing this llama-swap config would write (nothing is written); BadInput for a file llama-swap
    would refuse, with file, line and key."""
    path = Path(path)
    data, lines = read_config(path)
    expanded = expand(data, lines, os.environ if environ is None else environ)
    not_carried = [f"{key}: {why}" for key, why in _CONFIG_NOT_CARRIED.items() if key in data]
    for key in sorted(set(data) - set(_CONFIG_NOT_CARRIED) - _CONFIG_USED - {"models", "macros"}):
        not_carried.append(f"{key}: not a llama-swap key")
    routing = _routing(expanded.config, expanded.models, lines, not_carried)
    base = path.resolve().parent
    models = [_model(name, model, expanded, routing, lines, registry.settings, base)
              for name, model in expanded.models.items()]
    _no_secret_values(data, models, lines, os.environ if environ is None else environ)
    _check_names(registry, models)
    return LlamaSwapImport(str(path), models, not_carried, dry_run=True)


def _no_secret_values(data: dict[str, Any], models: list[ImportedModel], lines: _Lines,
                      environ: dict[str, str] | Any) -> None:
    """BadInput where a `${env.NAME}` that holds a secret (HF_TOKEN, sk-...) would be written as its value into the
    registry files, which previews, exports and /v1/models show (a model's `env` keeps it a reference, and a key
    flag in `cmd` is left behind)."""
    secrets = {name: environ[name] for name in set(_ENV_MACRO.findall(str(data)))
               if name in environ and len(environ[name]) >= 8 and looks_secret(name, environ[name])}  # "0" is no key
    for item in models:
        written = json.dumps([item.curated, item.discovered], default=str)
        for name, value in secrets.items():
            if json.dumps(value)[1:-1] in written:
                raise lines.error(("models", item.name), f"${{env.{name}}} looks like a secret, and the import would "
                                  "write its value into the registry files; pass it in the model's `env:` list (kept "
                                  "as a reference) or as its API key in backend_config.api_key_env")


def _check_names(registry: Registry, models: list[ImportedModel]) -> None:
    """A model whose name the registry already gives another model file is left out (it would replace that one)."""
    entries = registry.discovered_entries()
    existing = {e.get("name"): e for e in entries}
    for item in models:
        if item.skipped or item.discovered is None:
            continue
        path = get_path(item.discovered, "backend_config.model_path")
        others = sorted(str(e.get("name")) for e in entries
                        if e.get("name") != item.name and get_path(e, "backend_config.model_path") == path)
        if others:
            item.notes.append(f"the registry also lists this file as {', '.join(others)}; both entries now name it "
                              "(each with its own configuration)")
        old = existing.get(item.name)
        if old is None:
            continue
        old_path = get_path(old, "backend_config.model_path")
        new_path = get_path(item.discovered, "backend_config.model_path")
        if isinstance(old_path, str) and old_path != new_path:
            item.skipped = (f"the registry already has a model {item.name!r} for another file ({old_path}); rename "
                            "one of them (the llama-swap model ID is the registry name)")


def import_llama_swap(registry: Registry, path: str | os.PathLike, dry_run: bool = False,
                      environ: dict[str, str] | Any = None) -> LlamaSwapImport:
    """Import a llama-swap config: each model's facts into the discovered layer and its configuration into the
    curated layer, in one locked write (both or neither). A repeated import of the same file changes nothing."""
    result = plan_import(registry, path, environ)
    result.dry_run = dry_run
    chosen = result.imported()
    if dry_run or not chosen:
        return result
    with registry_lock(registry.config_dir):
        before = {file: read_layer(file).raw for file in (registry.discovered_path, registry.curated_path)}
        facts = [item.discovered for item in chosen if item.discovered and item.file_found]
        missing = [item.discovered for item in chosen if item.discovered and not item.file_found]
        try:
            known = {e.get("name"): e for e in registry.discovered_entries()}
            # a missing-file entry does not replace facts an earlier scan read (the file may be on another disk now)
            fresh_missing = [entry for entry in missing if entry["name"] not in known]
            registry.discovered_writer().upsert(facts + fresh_missing, rebuild=False,
                                                missing=[e["name"] for e in missing if e["name"] in known])
            registry.apply_curated_many({item.name: item.curated for item in chosen},
                                        f"import llama-swap {result.path}")
        except (RegistryError, OSError):
            for file, raw in before.items():  # both layers or neither
                if raw is None:
                    file.unlink(missing_ok=True)
                elif read_layer(file).raw != raw:
                    atomic_write(file, raw)
            raise
        result.changed = any(read_layer(file).raw != raw for file, raw in before.items())
    return result
