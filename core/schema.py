"""The entry schema (pydantic) and layer validation with messages that name file, line, entry and field."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from modelreg.fields import BACKEND_ALIASES, BACKENDS, backend_key
from modelreg.store import LayerFile, entry_lines, layer_elements


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

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and backend_key(value) is None:
            raise ValueError(f"unknown backend {value!r}")
        return value


_WHAT_TO_DO = {
    "name": "give every entry a non-empty string `name`",
    "backend_config.extra_args": 'write extra_args as a list of strings, e.g. ["--max-model-len", "4096"]',
    "backend_config.port": "use a whole number between 1 and 65535",
    "backend": f"use one of {', '.join(BACKENDS)} (also accepted: {', '.join(sorted(BACKEND_ALIASES))})",
    "backend_config.api_key_env": "give the name of an environment variable that holds the key (e.g. MY_KEY)",
    "backend_config.max_concurrency": "use a whole number of 1 or more (or null: no limit)",
}


def duplicate_keys(layer: LayerFile) -> list[str]:
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
                message = err["msg"].removeprefix("Value error, ")
                problems.append((index, f"{who}: field {path!r}: {message}; {hint}"))
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
