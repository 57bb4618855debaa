"""extra_args read as the backend reads them: which flag each token names, its values, and the checks before a
launch. One parser for `set`, `validate`, the editor and the launcher."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from modelreg.launch.backends import SPECS
from modelreg.launch.catalogue import MANY, NONE, ONE, OPTIONAL, TWO, Catalogue, Flag, committed_catalogue


@dataclass(frozen=True)
class Arg:
    """One flag of extra_args with its values, as the backend's parser reads it."""

    index: int                # position of the flag token in extra_args
    token: str
    flag: Flag
    values: tuple[str, ...]


@dataclass(frozen=True)
class ArgProblem:
    """Something in extra_args the backend would reject, or read differently from how it is written."""

    index: int
    token: str
    message: str
    error: bool = True        # False: a note (`--max_model_len` is read as `--max-model-len`)


@dataclass
class ParsedArgs:
    args: list[Arg]
    problems: list[ArgProblem]

    @property
    def errors(self) -> list[ArgProblem]:
        return [p for p in self.problems if p.error]

    @property
    def notes(self) -> list[ArgProblem]:
        return [p for p in self.problems if not p.error]

    def value(self, name: str) -> str | None:
        """The (last) value given to the flag with this canonical name."""
        found = [arg for arg in self.args if arg.flag.name == name and arg.values]
        return found[-1].values[0] if found else None

    def has(self, name: str) -> bool:
        return any(arg.flag.name == name for arg in self.args)


def _looks_like_flag(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
        return False  # a negative number is a value
    except ValueError:
        return True


# what argparse (the parser of every backend whose catalogue takes abbreviations) reads as a negative number: any
# other token starting with `-` is an option to it, `-1e-3` included
_ARGPARSE_NEGATIVE = re.compile(r"-\d+|-\d*\.\d+")


def _not_finite(token: str) -> bool:
    """`nan`, `-inf`, `1e999`: argparse backends read `-nan` as a flag, the others a number no setting takes."""
    try:
        return not math.isfinite(float(token))
    except ValueError:
        return False


def parse_extra_args(args: list[str], catalogue: Catalogue, owned: dict[str, str] | None = None,
                     repeatable: frozenset[str] = frozenset(), refused: dict[str, str] | None = None) -> ParsedArgs:
    """Read extra_args as the backend would: every flag resolved (prefix, `_` spelling, `--flag=value`), its values
    taken, and what the backend would reject or what the launcher must refuse reported.

    `owned`: canonical flag -> the entry field the launcher sets it from (extra_args may not set those flags).
    `refused`: canonical flag -> why extra_args may not hold it and what to do instead.
    """
    owned, refused = owned or {}, refused or {}
    parsed, problems = [], []
    seen: dict[str, int] = {}
    index = 0
    label = f"{catalogue.program} {catalogue.version}".strip()
    while index < len(args):
        token = args[index]
        if not _looks_like_flag(token):
            problems.append(ArgProblem(index, token, f"`{token}` is a value with no flag before it; put the flag "
                                                     "in front of it or remove it"))
            index += 1
            continue
        found = catalogue.resolve(token)
        if found.flag is None:
            if found.how == "ambiguous":
                message = (f"`{found.spelling}` could be any of {', '.join(found.candidates[:6])}"
                           f"{' ...' if len(found.candidates) > 6 else ''}; write the whole flag")
            else:
                hint = f" (did you mean `{found.candidates[0]}`?)" if found.candidates else ""
                message = f"`{found.spelling}` is not a flag of {label}{hint}"
            problems.append(ArgProblem(index, token, message))
            index += 1
            while index < len(args) and not _looks_like_flag(args[index]):
                index += 1  # its values, if any: reported once with the flag
            continue
        flag = found.flag
        if found.how in ("underscore", "prefix"):
            problems.append(ArgProblem(index, token, f"`{found.spelling}` is read as `{flag.name}`"
                                       + (" (a prefix of it)" if found.how == "prefix" else ""), error=False))
        if flag.name in refused:
            read_as = "" if found.spelling == flag.name else f" (read as `{flag.name}`)"
            problems.append(ArgProblem(index, token, f"`{found.spelling}`{read_as} may not be in extra_args: "
                                                     f"{refused[flag.name]}"))
        if flag.name in owned:
            read_as = "" if found.spelling == flag.name else f" (read as `{flag.name}`)"
            problems.append(ArgProblem(index, token, f"`{found.spelling}`{read_as} is set by the launcher from "
                                                     f"{owned[flag.name]}; remove it from extra_args and set that "
                                                     "field instead"))
        key = flag.name if found.how != "dotted" else found.spelling
        if key in seen and flag.name not in repeatable:
            problems.append(ArgProblem(index, token, f"`{flag.name}` is given twice (arguments {seen[key] + 1} and "
                                                     f"{index + 1}); the backend would use only one, so keep one"))
        seen[key] = index
        start = index
        values, index = _take_values(args, index, flag, found.attached, problems)
        for value in values:
            if _not_finite(value):
                problems.append(ArgProblem(start, token, f"`{flag.name}` is given `{value}`, which is not a finite "
                                                         "number (argparse backends read `-nan` as a flag); write a "
                                                         "finite number"))
            elif catalogue.abbreviations and value.startswith("-") and not _ARGPARSE_NEGATIVE.fullmatch(value):
                problems.append(ArgProblem(start, token, f"`{flag.name}` is given `{value}`, which "
                                                         f"{catalogue.program} (argparse) reads as a flag; write the "
                                                         "number without an exponent"))
        parsed.append(Arg(start, token, flag, values))
    return ParsedArgs(parsed, problems)


def _take_values(args: list[str], index: int, flag: Flag, attached: str | None,
                 problems: list[ArgProblem]) -> tuple[tuple[str, ...], int]:
    token, start = args[index], index
    index += 1
    if flag.values == NONE:
        if attached is not None:
            problems.append(ArgProblem(start, token, f"`{flag.name}` takes no value, but `{token}` gives one"))
        return (), index
    if attached is not None:
        return (attached,), index
    wanted = {ONE: 1, TWO: 2, OPTIONAL: 0, MANY: 1}[flag.values]
    values: list[str] = []
    while index < len(args) and not _looks_like_flag(args[index]):
        if flag.values in (ONE, TWO) and len(values) == wanted:
            break
        if flag.values == OPTIONAL and values:
            break
        values.append(args[index])
        index += 1
    if len(values) < wanted:
        following = f"before `{args[index]}`" if index < len(args) else "at the end of extra_args"
        problems.append(ArgProblem(start, token, f"`{token}` takes {'two values' if wanted == 2 else 'a value'} "
                                                 f"but has {'only one' if values else 'none'} ({following}); add it "
                                                 "after the flag or remove the flag"))
    return tuple(values), index


def flag_name(token: str, backend: str, catalogue: Catalogue | None = None) -> str | None:
    """The canonical flag a token names (`--max_model_len=4` -> `--max-model-len`), or None for a value."""
    if not _looks_like_flag(token):
        return None
    catalogue = catalogue or committed_catalogue(backend)
    if catalogue is None:  # Ollama's options: `--num-ctx` / `--num_ctx`
        return "--" + token[2:].split("=", 1)[0].replace("_", "-") if token.startswith("--") else token
    found = catalogue.resolve(token, suggest=False)
    return found.flag.name if found.flag else found.spelling


def _settings(args: list[str], flag: str, backend: str) -> list[tuple[int, int]]:
    """Where extra_args set `flag`, in any spelling the backend accepts: each setting's (start, end) in `args`, its
    value included."""
    target = flag_name(flag, backend)
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(args):
        start, index = index, index + 1
        if flag_name(args[start], backend) != target:
            continue
        if "=" not in args[start] and index < len(args) and not _looks_like_flag(args[index]):
            index += 1  # its value
        spans.append((start, index))
    return spans


def with_flag(args: list[str], flag: str, value: str | None, backend: str) -> list[str]:
    """extra_args with `flag` set to `value` (None: a bare switch). Its first setting, in any spelling the backend
    accepts, takes the value in place and keeps its spelling and form (`--flag=value` or `--flag value`); later
    settings of it go (the backend would use only one); where it is not set, it is added at the end."""
    spans = _settings(args, flag, backend)
    if not spans:
        return [*args, *([flag] if value is None else [flag, value])]
    token = args[spans[0][0]]
    name = token.split("=", 1)[0]
    first = [name] if value is None else [f"{name}={value}"] if "=" in token else [name, value]
    return _without(args, spans, first)


def without_flag(args: list[str], flag: str, backend: str) -> list[str]:
    """extra_args without `flag`: every setting of it, in any spelling the backend accepts, goes with its value."""
    return _without(args, _settings(args, flag, backend), [])


def _without(args: list[str], spans: list[tuple[int, int]], first: list[str]) -> list[str]:
    """`args` less the spans, with `first` where the first span was."""
    kept: list[str] = []
    previous = 0
    for number, (start, end) in enumerate(spans):
        kept += args[previous:start] + (first if number == 0 else [])
        previous = end
    return kept + args[previous:]


def flag_value(args: list[str], flag: str, backend: str, catalogue: Catalogue | None = None) -> str | None:
    """The value extra_args give a flag in any spelling the backend accepts, or None."""
    catalogue = catalogue or committed_catalogue(backend)
    wanted = flag_name(flag, backend, catalogue)
    if wanted is None:
        return None
    if catalogue is not None:
        return parse_extra_args(args, catalogue).value(wanted)
    for index, token in enumerate(args):
        if flag_name(token, backend) == wanted:
            if "=" in token:
                return token.split("=", 1)[1]
            return args[index + 1] if index + 1 < len(args) else None
    return None


def extra_args_problems(backend: str, extra_args: Any, catalogue: Catalogue | None = None) -> ParsedArgs:
    """extra_args parsed against the backend's catalogue (the committed one unless given), with the launcher's own
    flags refused; a value that is not a list of strings is one error."""
    if extra_args is None:
        extra_args = []
    if not isinstance(extra_args, list) or not all(isinstance(a, str) for a in extra_args):
        return ParsedArgs([], [ArgProblem(0, "", f"must be a list of strings, got {json.dumps(extra_args)}")])
    catalogue = catalogue or committed_catalogue(backend)
    if catalogue is None:
        return ParsedArgs([], [])
    spec = SPECS[backend]
    return parse_extra_args(extra_args, catalogue, spec.owned, spec.repeatable, spec.refused)
