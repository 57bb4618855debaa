"""Layer validation against the entry schema (`entry_model`) with messages that name file, line, entry and field."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from modelreg.fields import BACKEND_ALIASES, BACKENDS
from modelreg.store import layer_elements

_WHAT_TO_DO = {
    "name": "give every entry a non-empty string `name`",
    "backend_config.loading_state": "use reasoning, comments or off (or null: the setting loading_state)",
    "backend_config.extra_args": 'write extra_args as a list of strings, e.g. ["--max-model-len", "4096"]',
    "backend_config.port": "use a whole number between 1 and 65535",
    "backend": f"use one of {', '.join(BACKENDS)} (also accepted: {', '.join(sorted(BACKEND_ALIASES))})",
    "backend_config.api_key_env": "give the name of an environment variable that holds the key (e.g. MY_KEY)",
    "backend_config.max_concurrency": "use a whole number of 1 or more (or null: no limit)",
    "backend_config.ready_timeout": "use a number of seconds above 0 (how long a start may take), e.g. 600",
    "backend_config.idle_ttl": "use a number of seconds, 0 or more (0: never stopped for being idle), e.g. 300",
    "backend_config.exclusive_group": "give the group's name as text (starting a member stops the others)",
    "model_aliases": 'write the aliases as a list of names, e.g. ["gpt-4o-mini"]',
    "backend_config.executable": "give the path of the program that runs this model (e.g. "
                                 "/opt/llama.cpp/bin/llama-server), or remove it to use the settings' program",
    "backend_config.env": 'write env as an object of variable name -> text (not a list of NAME=value), e.g. '
                          '{"CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "$HF_TOKEN"} ($NAME or ${NAME} is read from '
                          "the environment at launch)",
}


class LayerBytes(Protocol):
    """A layer file's path and bytes (as read in one go, or as the build cut them)."""

    @property
    def path(self) -> Path: ...

    @property
    def raw(self) -> bytes | None: ...


def duplicate_keys(layer: LayerBytes) -> list[str]:
    """Objects that repeat a key: JSON readers keep only the last value, so the others would be lost unseen."""
    if layer.raw is None:
        return []
    repeated: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            keys = [key for key, _ in pairs]
            repeated.extend(sorted({key for key in keys if keys.count(key) > 1}))
        return obj

    problems = []
    for index, (line, value) in enumerate(layer_elements(layer.raw.decode("utf-8"),
                                                     json.JSONDecoder(object_pairs_hook=pairs_hook))):
        if repeated:
            name = value.get("name") if isinstance(value, dict) else None
            who = f"entry {name!r}" if isinstance(name, str) else f"entry #{index + 1}"
            problems.append(f"{layer.path}:{line}: {who}: key {', '.join(map(repr, repeated))} appears twice in one "
                            "object; JSON readers keep only the last value: remove the other")
            repeated.clear()
    return problems


@dataclass(frozen=True)
class EntryCheck:
    """One entry checked against the schema: how messages name it, its identity when valid, its problems."""

    who: str
    key: tuple[str, str | None] | None  # (name, profile) when the entry is valid
    problems: tuple[str, ...]

    @property
    def reusable(self) -> bool:
        """Whether the check holds for these bytes wherever they sit (an entry without a name is named by its
        position in the file)."""
        return not self.who.startswith("entry #")


def check_entry(raw: Any, index: int) -> EntryCheck:
    """Schema-check one entry (the `index`th of its file)."""
    if not isinstance(raw, dict):
        return EntryCheck(f"entry #{index + 1}", None, (f"entry #{index + 1} is {type(raw).__name__}, not an object",))
    name = raw.get("name")
    who = f"entry {name!r}" if isinstance(name, str) and name else f"entry #{index + 1}"
    if "profile" in raw:
        who += f" (profile {raw['profile']!r})"
    from pydantic import ValidationError  # here, with the model: reading a snapshot imports neither

    from modelreg.entry_model import Entry
    try:
        Entry.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "entry"
            hint = _WHAT_TO_DO.get(path, "fix the value")
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{who}: field {path!r}: {message}; {hint}")
        return EntryCheck(who, None, tuple(problems))
    return EntryCheck(who, (raw["name"], raw.get("profile")), ())


def layer_problems(path: Path, label: str, checks: Sequence[EntryCheck], starts: Callable[[], list[int]]) -> list[str]:
    """A layer's problems as `file:line: message`: each entry's own, and a name used twice (per profile).
    `starts()` gives the line each entry starts on (asked only when there is a problem)."""
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str | None], int] = {}
    for index, check in enumerate(checks):
        if check.problems:
            problems += [(index, message) for message in check.problems]
        elif check.key in seen:
            problems.append((index, f"{check.who}: duplicate name in the {label} layer (also entry "
                                    f"#{seen[check.key] + 1}); rename or remove one"))
        else:
            seen[check.key] = index  # type: ignore[index]
    if not problems:
        return []
    lines = starts()
    return [f"{path}:{lines[index] if index < len(lines) else 1}: {message}" for index, message in problems]
