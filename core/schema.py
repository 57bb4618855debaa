"""The entry schema (pydantic) and layer validation with messages that name file, line, entry and field."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from modelreg.store import LayerFile


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    port: StrictInt | None = Field(None, ge=1, le=65535)
    extra_args: list[StrictStr] | None = None
    host: StrictStr | None = None
    base_url: StrictStr | None = None
    model_path: StrictStr | None = None
    ready_timeout: float | None = Field(None, gt=0)
    exclusive_group: StrictStr | None = None
    idle_ttl: float | None = Field(None, ge=0)
    api_key_env: StrictStr | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the variable's name, never a key
    max_concurrency: StrictInt | None = Field(None, ge=1)


class Entry(BaseModel):
    """One model entry; unknown keys are allowed and kept verbatim (the raw dict is what is stored)."""

    model_config = ConfigDict(extra="allow")

    name: StrictStr = Field(min_length=1)
    profile: StrictStr | None = Field(None, min_length=1)
    display_name: StrictStr | None = None
    backend: StrictStr | None = None
    backend_config: BackendConfig | None = None
    capabilities: dict[str, Any] | None = None
    generation_defaults: dict[str, Any] | None = None
    roles: list[StrictStr] | None = None
    role_priority: dict[str, Any] | None = None
    model_aliases: list[StrictStr] | None = None
    served_model_id: StrictStr | None = None
    deprecated: StrictBool | None = None
    chat_template: dict[str, Any] | StrictStr | None = None
    metadata: dict[str, Any] | None = None


_WHAT_TO_DO = {
    "name": "give every entry a non-empty string `name`",
    "backend_config.extra_args": 'write extra_args as a list of strings, e.g. ["--max-model-len", "4096"]',
    "backend_config.port": "use a whole number between 1 and 65535",
    "backend_config.api_key_env": "give the name of an environment variable that holds the key (e.g. MY_KEY)",
    "backend_config.max_concurrency": "use a whole number of 1 or more (or null: no limit)",
}


def entry_lines(text: str) -> list[int]:
    """Line number where each top-level list element starts (computed only when an error needs it)."""
    decoder = json.JSONDecoder()
    lines, idx = [], text.index("[") + 1
    while True:
        while idx < len(text) and text[idx] in " \t\r\n,":
            idx += 1
        if idx >= len(text) or text[idx] == "]":
            return lines
        lines.append(text.count("\n", 0, idx) + 1)
        _, idx = decoder.raw_decode(text, idx)


def validate_layer(layer: LayerFile, label: str) -> list[str]:
    """Schema-check every entry of one layer and find duplicate names (per profile); returns the errors."""
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str | None], int] = {}
    for index, raw in enumerate(layer.entries):
        if not isinstance(raw, dict):
            problems.append((index, f"entry #{index + 1} is {type(raw).__name__}, not an object"))
            continue
        name = raw.get("name")
        who = f"entry {name!r}" if isinstance(name, str) and name else f"entry #{index + 1}"
        if "profile" in raw:
            who += f" (profile {raw['profile']!r})"
        try:
            Entry.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                path = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "entry"
                hint = _WHAT_TO_DO.get(path, "fix the value")
                problems.append((index, f"{who}: field {path!r}: {err['msg']}; {hint}"))
            continue
        key = (name, raw.get("profile"))
        if key in seen:
            problems.append((index, f"{who}: duplicate name in the {label} layer (also entry #{seen[key] + 1}); "
                                    "rename or remove one"))
        else:
            seen[key] = index
    if not problems:
        return []
    starts = entry_lines(layer.raw.decode("utf-8")) if layer.raw else []
    return [f"{layer.path}:{starts[index] if index < len(starts) else 1}: {message}" for index, message in problems]
