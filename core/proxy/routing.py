"""Which model a request means: names, aliases and `role:<role>` over one merged snapshot, and its defaults."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from modelreg.errors import UnknownModel
from modelreg.registry import Snapshot

ROLE_PREFIX = "role:"


@dataclass(frozen=True)
class Routes:
    """One merged snapshot and the alias index built from it; a reload swaps the whole object in one step."""

    snapshot: Snapshot
    by_name: dict[str, dict]
    aliases: dict[str, str]
    warnings: tuple[str, ...]
    aliases_of: dict[str, list[str]] = field(default_factory=dict)  # model name -> its aliases, for /v1/models
    role_model: dict[str, str] = field(default_factory=dict)  # role -> the model `role:<role>` routes to

    @classmethod
    def build(cls, snapshot: Snapshot) -> "Routes":
        by_name = snapshot.by_name
        aliases: dict[str, str] = {}
        warnings = []
        for entry in snapshot.entries:
            for alias in entry.get("model_aliases") or []:
                if not isinstance(alias, str) or not alias or alias == entry["name"]:
                    continue
                if alias in by_name:
                    warnings.append(f"alias {alias!r} of {entry['name']!r} is also a model's name; the model wins")
                elif alias in aliases:
                    warnings.append(f"alias {alias!r} is claimed by {aliases[alias]!r} and {entry['name']!r}; "
                                    f"{aliases[alias]!r} wins")
                else:
                    aliases[alias] = entry["name"]
        aliases_of: dict[str, list[str]] = {}
        for alias, name in aliases.items():
            aliases_of.setdefault(name, []).append(alias)
        return cls(snapshot, by_name, aliases, tuple(warnings), aliases_of, _role_models(snapshot.entries))

    @property
    def revision(self) -> str:
        return self.snapshot.revision

    def resolve(self, model: str) -> str:
        """The model name a request's `model` means: a name, an alias, or `role:<role>`; UnknownModel otherwise."""
        if model in self.by_name:
            return model
        if model in self.aliases:
            return self.aliases[model]
        if model.startswith(ROLE_PREFIX):
            chosen = self.for_role(model[len(ROLE_PREFIX):])
            if chosen:
                return chosen
        close = difflib.get_close_matches(model, self.choices(), n=5, cutoff=0.4)
        raise UnknownModel(model, close)

    def for_role(self, role: str) -> str | None:
        """The usable model with this role and the highest role_priority for it (ties: by name)."""
        return self.role_model.get(role)

    def choices(self) -> list[str]:
        roles = {f"{ROLE_PREFIX}{role}" for e in self.snapshot.entries for role in roles_of(e)}
        return [*self.by_name, *self.aliases, *sorted(roles)]


# generation_defaults keys -> the request field each fills when the client leaves it out
REQUEST_DEFAULTS = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                    "min_p": "min_p", "frequency_penalty": "frequency_penalty",
                    "presence_penalty": "presence_penalty", "repetition_penalty": "repetition_penalty",
                    "seed": "seed", "stop_sequences": "stop"}


def with_generation_defaults(payload: dict, entry: dict) -> dict:
    """The request with the model's curated generation_defaults filled in where the client set nothing."""
    defaults = entry.get("generation_defaults") or {}
    added = {REQUEST_DEFAULTS[key]: value for key, value in defaults.items()
             if key in REQUEST_DEFAULTS and value not in (None, []) and REQUEST_DEFAULTS[key] not in payload}
    return {**payload, **added} if added else payload


def _role_models(entries: list[dict]) -> dict[str, str]:
    """For every role, the usable (not deprecated, not missing) model with the highest role_priority (ties: name)."""
    best: dict[str, tuple[float, str]] = {}
    for entry in entries:
        if entry.get("deprecated") or entry.get("missing"):
            continue
        for role in roles_of(entry):
            value = (entry.get("role_priority") or {}).get(role, 0)
            priority = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
            rank = (-priority, entry["name"])
            if role not in best or rank < best[role]:
                best[role] = rank
    return {role: rank[1] for role, rank in best.items()}


def roles_of(entry: dict) -> list[str]:
    roles = entry.get("roles")
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


EMPTY_ROUTES = Routes(Snapshot([], ""), {}, {}, ())
