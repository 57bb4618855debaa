"""Merge the layers into one snapshot entry by entry, keeping which layer every leaf came from."""
from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Iterable

from modelreg.fields import FIELD_CLASSES, FieldClass, field_class
from modelreg.paths import flatten

# Lowest priority first. Config values found in a legacy discovered file are labelled "legacy":
# they sit in the discovered source but count as the lowest-priority defaults.
LAYER_ORDER: tuple[str, ...] = ("discovered", "curated", "profile")
PROFILE_PREFIX = "profile:"
PROFILE_KEYS = ("name", "profile")  # an entry's identity, not data
LEGACY = "legacy"
DISCOVERED_LABELS = frozenset({"discovered", LEGACY})
_MISSING: Any = object()


_DECLARED_PREFIXES = frozenset(
    ".".join(path.split(".")[:cut]) for path in FIELD_CLASSES for cut in range(1, path.count(".") + 1))


def profile_label(profile: str) -> str:
    return PROFILE_PREFIX + profile


_FACT, _CONFIG = FieldClass.FACT, FieldClass.CONFIG  # enum member lookups are slow in the per-leaf loop
# Top-level keys under which the field classes change what a layer's value means: configuration in the discovered
# layer (legacy), facts in the others (ignored). Keys with a dot are ruled too (a dotted path could name a class).
_CONFIG_HEADS = frozenset(p.split(".")[0] for p, c in FIELD_CLASSES.items() if c is _CONFIG)
_FACT_HEADS = frozenset(p.split(".")[0] for p, c in FIELD_CLASSES.items() if c is _FACT)
_FACT_WILDCARDS = tuple(head[:-1] for head in _FACT_HEADS if head.endswith("*"))


@functools.lru_cache(maxsize=8192)
def _leaf_paths(prefix: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The dotted paths of an object's keys (objects of one shape recur across entries: made once)."""
    return tuple(prefix + key for key in keys)


class MergedEntry:
    """One model merged: the entry, the discovered values curated replaced, warnings, and provenance.

    Provenance is recorded as the merge goes: a whole object that one layer supplies (most of an entry) is one
    record, leaves set one by one are one record each; `sources` lists it per leaf when first read.
    """

    def __init__(self, entry: dict[str, Any], overridden: dict[str, Any], warnings: list[str],
                 leaves: dict[str, str], objects: dict[str, str], root: str | None):
        self.entry = entry
        self.overridden = overridden      # dotted leaf path -> the different discovered value a curated value replaced
        self.warnings = warnings
        self._leaves = leaves             # dotted leaf path -> layer label, for leaves set one by one
        self._objects = objects           # dotted object path -> layer label, for objects supplied whole
        self._root = root                 # the label of the layer that supplied the rest

    @functools.cached_property
    def sources(self) -> dict[str, str]:
        """Dotted leaf path -> the label of the layer it came from."""
        out: dict[str, str] = {}
        leaves, objects = self._leaves, self._objects

        def walk(node: dict, prefix: str, inherited: str | None) -> None:
            for key, value in node.items():
                path = prefix + key
                if type(value) is dict and value:
                    walk(value, path + ".", objects.get(path, inherited))
                else:
                    out[path] = leaves.get(path) or inherited  # type: ignore[assignment]
        walk(self.entry, "", self._root)
        return out


class _Sources(Mapping[str, dict[str, str]]):
    """Provenance by model name, each model's listed when first read."""

    def __init__(self, merged: dict[str, MergedEntry]):
        self._merged = merged

    def __getitem__(self, name: str) -> dict[str, str]:
        return self._merged[name].sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged)

    def __len__(self) -> int:
        return len(self._merged)


@dataclass
class MergeResult:
    entries: list[dict[str, Any]]
    sources: Mapping[str, dict[str, str]]
    overridden: dict[str, dict[str, Any]]
    warnings: list[str]

    @property
    def by_name(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.entries}


class _Overlay:
    """Applies one source onto the merged entry; objects deep-merge, lists and scalars replace, null = no opinion.

    An object no earlier layer has is taken as it is, not copied; an object a later layer then changes is copied
    first, so the layers' own entries are never changed.
    """

    def __init__(self, name: str):
        self.name = name
        self.entry: dict[str, Any] = {}
        self.root: str | None = None  # the label of the first layer, which supplied the entry
        self.owned: set[int] = {id(self.entry)}  # objects this merge made: the only ones it changes
        self.leaves: dict[str, str] = {}
        self.objects: dict[str, str] = {}
        self.discovered_values: dict[str, Any] = {}
        self.final_values: dict[str, Any] = {}
        self.ignored_facts: list[str] = []
        self.legacy_config: list[str] = []

    def apply(self, source: dict[str, Any], label: str, skip: Iterable[str] = ()) -> None:
        body = {k: v for k, v in source.items() if k not in skip} if skip else source
        if self.root is None:
            self._first(body, label)
        else:
            self._apply(self.entry, body, "", label, label == "discovered", None, self.root)

    def _first(self, source: dict[str, Any], label: str) -> None:
        """The first layer with an entry for the model: taken as it is, but for the keys the field classes rule
        (configuration in the discovered layer, facts in another); unruled keys are labelled as the whole entry."""
        self.root = label
        machine = label == "discovered"
        entry = self.entry
        for key, value in source.items():
            if (key in _CONFIG_HEADS if machine else key in _FACT_HEADS or key.startswith(_FACT_WILDCARDS)) \
                    or "." in key:
                self._apply(entry, {key: value}, "", label, machine, None, label)
            else:
                entry[key] = value

    def _apply(self, target: dict, source: dict, prefix: str, label: str, machine: bool,
               fixed: FieldClass | None, inherited: str | None) -> None:
        """`fixed`: the class of every leaf below (no declared descendants), else None; `inherited`: the label of
        the object supplied whole that `target` lies in, if any."""
        leaves = self.leaves
        for key, value in source.items():
            path = prefix + key
            cls = fixed or field_class(path)
            if cls is _FACT and not machine:
                if value is not None:
                    self.ignored_facts.append(path)
                continue
            origin = LEGACY if machine and cls is _CONFIG else label
            current = target.get(key, _MISSING)
            if value is None:
                if current is _MISSING:
                    target[key] = None
                    leaves[path] = origin
            elif type(value) is dict:
                below = fixed or (None if path in _DECLARED_PREFIXES else cls)
                if current is _MISSING and value and below is not None and origin is not LEGACY:
                    target[key] = value  # the common case: a whole object of one class, new to this entry
                    self.objects[path] = origin
                    continue
                if type(current) is not dict:
                    self._replace(target, key, path, {}, origin, current, leaves.get(path, inherited))
                    within = None
                else:
                    within = self.objects.get(path, inherited)
                    if id(current) not in self.owned:
                        if below is not None and within is not None and origin is not LEGACY \
                                and dict not in set(map(type, current.values())) \
                                and dict not in set(map(type, value.values())):
                            target[key] = self._overlay_flat(current, value, path + ".", origin, within)
                            continue
                        target[key] = dict(current)
                self.owned.add(id(target[key]))
                self._apply(target[key], value, path + ".", label, machine, below, within)
            else:
                if origin is LEGACY:
                    self.legacy_config.append(path)
                if current is _MISSING:  # a new key: nothing to override
                    target[key] = value
                    leaves[path] = origin
                else:
                    self._replace(target, key, path, value, origin, current, leaves.get(path, inherited))

    def _overlay_flat(self, current: dict, value: dict, prefix: str, origin: str, within: str) -> dict:
        """`value` over `current`, an object an earlier layer supplied whole (its leaves labelled `within`), both
        flat and of one class: what most of a curated entry over its discovered one is, done whole dicts at a time."""
        given = {k: v for k, v in value.items() if v is not None or k not in current}  # null: no opinion
        merged = {**current, **given}
        self.owned.add(id(merged))
        paths = _leaf_paths(prefix, tuple(given))
        self.leaves.update(zip(paths, repeat(origin)))
        if within in DISCOVERED_LABELS and origin not in DISCOVERED_LABELS:
            # `current` is a layer's own object, so no earlier override recorded anything under it
            path_of = dict(zip(given, paths))
            replaced = [key for key in given if key in current]
            self.discovered_values.update({path_of[key]: current[key] for key in replaced})
            self.final_values.update({path_of[key]: given[key] for key in replaced})
        return merged

    def _replace(self, target: dict, key: str, path: str, value: Any, origin: str, current: Any,
                 current_label: str | None) -> None:
        if current is not _MISSING:
            if type(current) is dict and current:
                inner = path + "."  # the replaced object's records go with it
                for records in (self.leaves, self.objects):
                    for stale in [p for p in records if p.startswith(inner)]:
                        del records[stale]
                self.objects.pop(path, None)
            elif origin not in DISCOVERED_LABELS and current_label in DISCOVERED_LABELS:
                self.discovered_values.setdefault(path, current)
            if path in self.discovered_values:
                self.final_values[path] = value  # objects are stored by reference, so later layers show through
        target[key] = value
        self.leaves[path] = origin

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
        return MergedEntry(self.entry, overridden, warnings, self.leaves, self.objects, self.root)


def entry_layers(discovered: dict | None, base: dict | None, profile_entry: dict | None,
                 profile: str | None) -> tuple[tuple[str, dict | None], ...]:
    """One model's entry in each layer as (provenance label, entry or None), in LAYER_ORDER."""
    by_layer = {"discovered": ("discovered", discovered), "curated": ("curated", base),
                "profile": (profile_label(profile), profile_entry) if profile else ("profile", None)}
    return tuple(by_layer[layer] for layer in LAYER_ORDER)


def merge_entry(name: str, layers: Iterable[tuple[str, dict | None]]) -> MergedEntry:
    """Apply each layer's entry, lowest priority first (a profile entry's name and profile keys are not data)."""
    overlay = _Overlay(name)
    for label, entry in layers:
        if entry is not None:
            overlay.apply(entry, label, skip=PROFILE_KEYS if label.startswith(PROFILE_PREFIX) else ())
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
    merged = {name: merge_entry(name, entry_layers(found.get(name), base.get(name), chosen.get(name), profile))
              for name in sorted(found.keys() | base.keys() | chosen.keys())}
    return merge_result(merged)


def merge_result(merged: dict[str, MergedEntry]) -> MergeResult:
    """The merged entries (in the dict's order) as one result."""
    return MergeResult([m.entry for m in merged.values()], _Sources(merged),
                       {name: m.overridden for name, m in merged.items()},
                       [w for m in merged.values() for w in m.warnings])


# ---- the one layer diff (modelreg diff, the GUI's diff page) ------------------------------------------------
SAME, OVERRIDDEN, CURATED_ONLY, DISCOVERED_ONLY = "same", "overridden", "curated-only", "discovered-only"


@dataclass
class DiffRow:
    """One model's leaf field in every layer; `status` compares the curated value (profile over base) with disk."""

    name: str
    field: str
    discovered: Any
    curated: Any
    profile: Any
    merged: Any
    source: str | None
    status: str

    @property
    def changed(self) -> bool:
        """The curated layer decides this field differently from disk."""
        return self.status in (OVERRIDDEN, CURATED_ONLY)


def _diff_status(discovered: Any, curated: Any) -> str:
    if curated is None:
        return DISCOVERED_ONLY
    if discovered is None:
        return CURATED_ONLY
    return SAME if discovered == curated else OVERRIDDEN


def layer_diff(discovered: list[dict], curated: list[dict], merged: MergeResult, profile: str | None,
               names: Iterable[str] | None = None, changed_only: bool = False) -> list[DiffRow]:
    """Per model and leaf field: discovered | curated | profile | merged, the layer it came from and a status."""
    found = {e["name"]: e for e in discovered}
    base, chosen = split_curated(curated, profile)
    merged_by_name = merged.by_name
    wanted = list(merged_by_name) if names is None else [n for n in names if n in merged_by_name]
    rows = []
    for name in wanted:
        layers = [flatten(_body(found.get(name))), flatten(_body(base.get(name))),
                  flatten(_body(chosen.get(name))), flatten(_body(merged_by_name[name]))]
        for path in sorted(set().union(*layers)):
            d, c, p, m = (layer.get(path) for layer in layers)
            if d is None and c is None and p is None and m is None:
                continue
            row = DiffRow(name, path, d, c, p, m, merged.sources[name].get(path),
                          _diff_status(d, p if p is not None else c))
            if row.changed or not changed_only:
                rows.append(row)
    return rows


def _body(entry: dict | None) -> dict:
    return {k: v for k, v in (entry or {}).items() if k not in PROFILE_KEYS}
