"""Merge the layers into one snapshot entry by entry, keeping which layer every leaf came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from core.fields import FIELD_CLASSES, FieldClass, field_class

# Lowest priority first. Config values found in a legacy discovered file are labelled "legacy":
# they sit in the discovered source but count as the lowest-priority defaults.
LAYER_ORDER: tuple[str, ...] = ("discovered", "curated", "profile")
LEGACY = "legacy"
DISCOVERED_LABELS = frozenset({"discovered", LEGACY})
_MISSING: Any = object()


_DECLARED_PREFIXES = frozenset(
    ".".join(path.split(".")[:cut]) for path in FIELD_CLASSES for cut in range(1, path.count(".") + 1))


def profile_label(profile: str) -> str:
    return f"profile:{profile}"


@dataclass
class MergedEntry:
    entry: dict[str, Any]
    sources: dict[str, str]           # dotted leaf path -> layer label
    overridden: dict[str, Any]        # dotted leaf path -> the different discovered value a curated value replaced
    warnings: list[str] = field(default_factory=list)


@dataclass
class MergeResult:
    entries: list[dict[str, Any]]
    sources: dict[str, dict[str, str]]
    overridden: dict[str, dict[str, Any]]
    warnings: list[str]

    @property
    def by_name(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.entries}


class _Overlay:
    """Applies one source onto the merged entry; objects deep-merge, lists and scalars replace, null = no opinion."""

    def __init__(self, name: str):
        self.name = name
        self.entry: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.discovered_values: dict[str, Any] = {}
        self.final_values: dict[str, Any] = {}
        self.ignored_facts: list[str] = []
        self.legacy_config: list[str] = []

    def apply(self, source: dict[str, Any], label: str, skip: Iterable[str] = ()) -> None:
        body = {k: v for k, v in source.items() if k not in skip} if skip else source
        self._apply(self.entry, body, "", label)

    def _apply(self, target: dict, source: dict, prefix: str, label: str, fixed: FieldClass | None = None) -> None:
        machine = label == "discovered"
        sources = self.sources
        for key, value in source.items():
            path = prefix + key
            cls = fixed or field_class(path)
            if not machine and cls is FieldClass.FACT:
                if value is not None:
                    self.ignored_facts.append(path)
                continue
            origin = LEGACY if machine and cls is FieldClass.CONFIG else label
            current = target.get(key, _MISSING)
            if value is None:
                if current is _MISSING:
                    target[key] = None
                    sources[path] = origin
            elif type(value) is dict:
                if type(current) is not dict:
                    self._replace(target, key, path, {}, origin, current)
                # below a path with no declared descendants, every leaf has this node's class
                self._apply(target[key], value, path + ".", label,
                            fixed or (None if path in _DECLARED_PREFIXES else cls))
                if target[key]:
                    sources.pop(path, None)
            else:
                if origin == LEGACY:
                    self.legacy_config.append(path)
                if current is _MISSING:  # the common case (a first layer, a new key): nothing to override
                    target[key] = list(value) if type(value) is list else value
                    sources[path] = origin
                else:
                    self._replace(target, key, path, list(value) if type(value) is list else value, origin, current)

    def _replace(self, target: dict, key: str, path: str, value: Any, origin: str, current: Any) -> None:
        if current is not _MISSING:
            if origin not in DISCOVERED_LABELS and self.sources.get(path) in DISCOVERED_LABELS:
                self.discovered_values.setdefault(path, current)
            if type(current) is dict and current:
                inner = path + "."
                for stale in [p for p in self.sources if p.startswith(inner)]:
                    del self.sources[stale]
            if path in self.discovered_values:
                self.final_values[path] = value  # objects are stored by reference, so later layers show through
        target[key] = value
        self.sources[path] = origin

    def result(self) -> MergedEntry:
        overridden = {p: v for p, v in self.discovered_values.items() if self.final_values[p] != v}
        warnings = []
        if self.legacy_config:
            warnings.append(f"entry {self.name!r}: the discovered layer holds configuration "
                            f"({', '.join(sorted(set(self.legacy_config)))}); used as lowest-priority defaults; "
                            "run `modelreg migrate` to move it into curated")
        if self.ignored_facts:
            warnings.append(f"entry {self.name!r}: curated value for fact field(s) "
                            f"{', '.join(sorted(set(self.ignored_facts)))} ignored: facts come from disk")
        return MergedEntry(self.entry, self.sources, overridden, warnings)


def merge_entry(name: str, discovered: dict | None, curated: dict | None,
                profile_entry: dict | None = None, profile: str | None = None) -> MergedEntry:
    overlay = _Overlay(name)
    if discovered is not None:
        overlay.apply(discovered, "discovered")
    if curated is not None:
        overlay.apply(curated, "curated")
    if profile_entry is not None and profile:
        overlay.apply(profile_entry, profile_label(profile), skip=("name", "profile"))
    return overlay.result()


def split_curated(curated: list[dict], profile: str | None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Curated base entries by name, and the active profile's entries by name."""
    base = {e["name"]: e for e in curated if e.get("profile") is None}
    chosen = {e["name"]: e for e in curated if profile and e.get("profile") == profile}
    return base, chosen


def merge_layers(discovered: list[dict], curated: list[dict], profile: str | None = None) -> MergeResult:
    """Every model of any layer, sorted by name, curated over discovered, the active profile over both."""
    found = {e["name"]: e for e in discovered}
    base, chosen = split_curated(curated, profile)
    entries, sources, overridden, warnings = [], {}, {}, []
    for name in sorted(found.keys() | base.keys() | chosen.keys()):
        merged = merge_entry(name, found.get(name), base.get(name), chosen.get(name), profile)
        entries.append(merged.entry)
        sources[name] = merged.sources
        overridden[name] = merged.overridden
        warnings.extend(merged.warnings)
    return MergeResult(entries, sources, overridden, warnings)


def flatten(entry: dict, prefix: str = "") -> dict[str, Any]:
    """Leaf values by dotted path (a list or an empty object is one leaf)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        path = prefix + key
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out
