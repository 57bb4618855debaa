"""Text a person typed (a command-line VALUE, a GUI field) to a field's value and back: one parser for every kind."""
from __future__ import annotations

import json
import math
import re
import shlex
from typing import Any, Callable

from modelreg.errors import BadInput, NotAJSONNumber, finite_json_float, refuse_json_constant

NOT_SET = "(not set)"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an environment variable's name: letters, digits, _; no digit first
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def format_value(value: Any, kind: str = "auto") -> str:
    """The text a person would type for `value` (the inverse of parse_value)."""
    if value is None:
        return NOT_SET if kind in ("bool", "backend") else ""
    if kind == "args":
        return shlex.join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("json", "auto") and not isinstance(value, str):
        return json.dumps(value, indent=2 if kind == "json" else None, ensure_ascii=False)
    return str(value)


def _json(text: str, label: str, or_text: bool = False) -> Any:
    """JSON as the standard says: NaN and Infinity (which Python's parser accepts) are refused, and so is nesting
    too deep to process. `or_text`: text that is not JSON is returned as it is."""
    try:
        return json.loads(text, parse_constant=refuse_json_constant, parse_float=finite_json_float)
    except json.JSONDecodeError as exc:
        if or_text:
            return text
        raise BadInput(f"{label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except NotAJSONNumber as exc:
        raise BadInput(f"{label}: {exc} is not a JSON number (files with it cannot be read back); write a number "
                       "or null") from None
    except RecursionError:
        raise BadInput(f"{label}: the value nests objects or lists too deep; flatten it") from None


def parse_value(text: str, kind: str = "auto", label: str = "value") -> Any:
    """Typed text to a value of `kind` (see modelreg.fields.FIELD_KINDS). An empty field is None (no value in
    this layer), except for `auto`, which gives JSON when the text parses and the plain string otherwise.
    BadInput names the field and what to write."""
    if kind == "auto":
        return _json(text, label, or_text=True)
    text = (text or "").strip()
    if text in ("", NOT_SET):
        return None
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise BadInput(f"{label}: {text!r} is not a whole number; write e.g. 24001") from None
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise BadInput(f"{label}: {text!r} is not a number; write e.g. 600") from None
        if not math.isfinite(number):
            raise BadInput(f"{label}: {text!r} is not a finite number; write e.g. 600")
        return number
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise BadInput(f"{label}: {text!r} is not true or false")
        return text.lower() == "true"
    if kind == "args":
        return _args(text, label)
    if kind == "list":
        if text.startswith("["):
            return _string_list(_json(text, label), label)
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "json":
        value = _json(text, label)
        if not isinstance(value, dict):
            raise BadInput(f"{label}: expected a JSON object {{...}}, got {type(value).__name__}")
        return value
    return text


def _args(text: str, label: str) -> list[str]:
    """Command-line arguments written as a JSON list of strings or as shell text."""
    if text.startswith("["):
        return _string_list(_json(text, label), label)
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise BadInput(f"{label}: cannot split {text!r} with shell rules ({exc}); close the quote") from None


def _string_list(value: Any, label: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f'{label}: expected a JSON list of strings such as ["--max-model-len", "4096"]')
    return value


def human_size(size: float) -> str:
    """A byte count as text in binary units: `512 B`, `1.5 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def env_name_problem(value: Any) -> str | None:
    """Why `value` is not the name of an environment variable (where a key is kept: never the key), or None."""
    if isinstance(value, str) and ENV_NAME.fullmatch(value):
        return None
    return f"{value!r} is not an environment variable name (letters, digits, _)"


def env_mapping_problems(value: Any) -> list[str]:
    """Why `value` cannot be a backend_config.env mapping (variable name -> text with references), one per problem."""
    if not isinstance(value, dict):
        return [f"{type(value).__name__} is not an object of variable name -> value"]
    problems = []
    for name, text in value.items():
        if problem := env_name_problem(name):
            problems.append(problem)
        elif problem := env_value_problem(text):
            problems.append(f"{name}: {problem}")
    return problems


def env_name(value: str | None) -> str | None:
    """`value` when it is None or an environment variable's name, else ValueError (the models' validator)."""
    if value is not None and (problem := env_name_problem(value)):
        raise ValueError(problem)
    return value


# A reference in a backend_config.env value: `$NAME` or `${NAME}`; `$$` is a literal `$`.
_ENV_REFERENCE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<dollar>\$))")
# Names of variables that usually hold a secret, and the prefixes of well-known key formats.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|PRIVATE", re.IGNORECASE)
# (and a URL with a password: HTTPS_PROXY=http://user:pass@proxy:3128)
_SECRET_VALUE = re.compile(r"^(sk-|hf_|ghp_|gho_|github_pat_|xox[abp]-|glpat-|AKIA)|://[^/?#@\s]*:[^/?#@\s]*@")
MASK = "***"


def env_value_problem(value: Any) -> str | None:
    """Why `value` cannot be a backend_config.env value (text with `$NAME` / `${NAME}` references), or None."""
    if not isinstance(value, str):
        return f"{value!r} is {type(value).__name__}, not text"
    if "$" in _ENV_REFERENCE.sub("", value):
        return f"{value!r} has a `$` that starts no $NAME or ${{NAME}} reference; write $$ for a literal $"
    if "\0" in value:
        return f"{value!r} holds a NUL character, which no environment variable can hold"
    return None


def env_references(value: str) -> list[str]:
    """The variables a backend_config.env value refers to, in order."""
    return [m["braced"] or m["bare"] for m in _ENV_REFERENCE.finditer(value) if not m["dollar"]]


def rewrite_env_value(value: str, reference: Callable[[str], str]) -> str:
    """The value with each reference replaced by `reference(NAME)` and each `$$` by `$`."""
    def replace(match: re.Match[str]) -> str:
        return "$" if match["dollar"] else reference(match["braced"] or match["bare"])
    return _ENV_REFERENCE.sub(replace, value)


def resolve_env_value(value: str, environ: dict[str, str] | Any) -> str:
    """The value with each reference replaced from `environ`; KeyError names a variable that is not set."""
    return rewrite_env_value(value, lambda name: environ[name])


def looks_secret(name: str, value: str) -> bool:
    """Whether an environment value as written may be a secret: its variable's name says so (HF_TOKEN, API_KEY) or
    it starts like a well-known key format (sk-, hf_)."""
    return bool(_SECRET_NAME.search(name) or _SECRET_VALUE.search(value))


def shown_env_value(name: str, value: str) -> str:
    """An environment value as previews, logs and status show it: a pure reference (`$HF_TOKEN`) as written (it is a
    name, not the value), anything else that looks secret as ***."""
    if looks_secret(name, value) and _ENV_REFERENCE.sub("", value) != "":
        return MASK
    return value


def parse_size(text: str | int | float) -> int:
    """`16GiB`, `16G` (binary), `24GB` (decimal), `512MiB`, or a number of bytes."""
    if isinstance(text, (int, float)):
        return int(text)
    match = _SIZE.match(str(text))
    if not match:
        raise BadInput(f"GPU memory {text!r} is not a size; write it like 16GiB, 24GB or 12288MiB")
    number, unit, binary = float(match[1]), match[2].upper(), match[3]
    power = "KMGT".index(unit) + 1 if unit else 0
    base = 1024 if (binary or not str(text).strip().upper().endswith("B")) and unit else 1000
    return int(number * base ** power)
