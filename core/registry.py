"""The one Python API every consumer uses: load, validate, merge, write layers, subscribe to changes."""
from __future__ import annotations

import copy
import difflib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from modelreg.errors import (
    BadInput,
    ConfigFieldInDiscovered,
    ConflictError,
    FactFieldRefused,
    InvalidRegistry,
    StorageError,
    UnknownModel,
)
from modelreg.fields import STUB_FIELDS, FieldClass, field_class
from modelreg.merge import DiffRow, MergeResult, layer_diff, merge_layers
from modelreg.paths import flatten, get_path, remove_path, set_path
from modelreg.schema import duplicate_keys, validate_layer
from modelreg.settings import Settings, active_profile, load_settings
from modelreg.store import (
    CURATED_FILE,
    DISCOVERED_FILE,
    MAX_DEPTH,
    PENDING_STUBS_FILE,
    SNAPSHOT_FILE,
    SOURCE_FILE,
    CuratedHistory,
    HistoryItem,
    LayerFile,
    atomic_write,
    dumps,
    dumps_snapshot,
    file_stamp,
    nesting_depth_exceeded,
    read_layer,
    registry_lock,
    revision_of,
    without_gc,
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
CONFIG_NEEDED = "metadata._config_needed"


@dataclass(frozen=True)
class Snapshot:
    """The merged snapshot as consumers read it, with its revision (sha256 of the file's bytes)."""

    entries: list[dict[str, Any]]
    revision: str

    @property
    def by_name(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.entries}


@dataclass
class ValidationReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Merged(MergeResult):
    """A merge of the current layers, plus what is needed to write a snapshot of it."""

    revision: str = ""
    data: bytes = b""
    curated_revision: str = ""
    discovered_revision: str = ""


@dataclass
class Migration:
    moves: list[dict[str, Any]]
    written: bool
    backups: list[str]


def check_editable(path: str, value: Any = UNSET) -> None:
    """Refuse what a human edit may not write: not a dotted field path, the entry's identity, a fact (also one inside
    an object set at a parent path), or a value nested too deep."""
    if not path or path in ("name", "profile") or any(not p for p in path.split(".")):
        raise BadInput(f"{path!r} cannot be edited; give a dotted field path such as backend_config.port")
    facts = [path] if field_class(path) is FieldClass.FACT else []
    if isinstance(value, (dict, list)):
        deep = nesting_depth_exceeded(value, MAX_DEPTH - path.count(".") - 1)
        if deep is not None:
            raise BadInput(f"{path}: the value nests objects or lists deeper than {MAX_DEPTH} levels "
                           f"(at {path}.{deep}); flatten it")
    if isinstance(value, dict) and value:
        facts += [p for p in (f"{path}.{leaf}" for leaf in flatten(value)) if field_class(p) is FieldClass.FACT]
    if facts:
        inside = f" (inside the object set at {path!r})" if facts != [path] else ""
        raise FactFieldRefused(f"{', '.join(map(repr, facts))}{inside} is a fact read from disk (written only by "
                               "scans and downloads); it cannot be set in the curated layer")


def default_config_dir() -> Path:
    """$MODELREG_CONFIG_DIR, else ./configs."""
    return Path(os.environ.get("MODELREG_CONFIG_DIR") or "configs")


def config_paths(entry: dict, include_empty: bool = False) -> list[str]:
    """Dotted leaf paths of an entry whose field class is config (with include_empty, null and {} leaves too)."""
    return [p for p, v in flatten(entry).items()
            if field_class(p) is FieldClass.CONFIG and (include_empty or v is not None)]


def _file_revision(path: Path) -> str:
    try:
        return revision_of(path.read_bytes())
    except FileNotFoundError:
        return revision_of(None)
    except OSError as exc:
        raise StorageError(path, exc, "read") from exc


class Registry:
    """A registry folder: the discovered and curated layers and the merged snapshot built from them."""

    def __init__(self, config_dir: str | os.PathLike | None = None, profile: str | None = None,
                 create: bool = False):
        """`create`: make the folder if it is missing (commands that initialise a registry); otherwise a missing
        folder is BadInput, and nothing is created."""
        self.config_dir = Path(config_dir) if config_dir else default_config_dir()
        if create:
            try:
                self.config_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(self.config_dir, exc, "create the registry folder") from exc
        elif not self.config_dir.is_dir():
            what = "is not a folder" if self.config_dir.exists() else "does not exist"
            raise BadInput(f"registry folder {self.config_dir} {what}; give --config-dir (or $MODELREG_CONFIG_DIR) "
                           "of a registry, or create one with `modelreg scan PATH`")
        base_settings = load_settings(self.config_dir)
        self.profile = active_profile(base_settings, profile)
        self.settings: Settings = base_settings.for_profile(self.profile)
        self.discovered_path = self.config_dir / DISCOVERED_FILE
        self.curated_path = self.config_dir / CURATED_FILE
        self.snapshot_path = self.config_dir / SNAPSHOT_FILE
        self.source_path = self.config_dir / SOURCE_FILE
        self.pending_stubs_path = self.config_dir / PENDING_STUBS_FILE
        self.history = CuratedHistory(self.config_dir, self.settings.history_limit)
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._snapshot_cache: tuple[tuple[int, int, int], Snapshot] | None = None
        self._published: tuple[tuple[str, str], Snapshot] | None = None  # layer revisions of the last publish
        self._cache_guard = threading.Lock()

    # ---- reading -------------------------------------------------------------------------------------------
    def discovered_entries(self) -> list[dict]:
        return read_layer(self.discovered_path).entries

    def curated_layer(self) -> LayerFile:
        """The curated file as read in one go: entries, exact bytes and the revision they have."""
        return read_layer(self.curated_path)

    def curated_entries(self) -> list[dict]:
        return self.curated_layer().entries

    def curated_revision(self) -> str:
        return self.curated_layer().revision

    def validate(self) -> ValidationReport:
        """Check both layers and their merge, and that no object repeats a key; warnings do not block, errors do."""
        try:
            layers = read_layer(self.discovered_path), read_layer(self.curated_path)
        except BadInput as exc:
            return ValidationReport(errors=[str(exc)])
        report = self._check(*layers)[0]
        report.errors[:0] = [problem for layer in layers for problem in duplicate_keys(layer)]
        return report

    def _check(self, discovered: LayerFile, curated: LayerFile) -> tuple[ValidationReport, MergeResult | None]:
        report = ValidationReport()
        for layer, label in ((discovered, "discovered"), (curated, "curated")):
            report.errors += validate_layer(layer, label)
        if report.errors:
            return report, None
        models = {e["name"] for e in discovered.entries} | {e["name"] for e in curated.entries
                                                             if e.get("profile") is None}
        for entry in curated.entries:
            if entry.get("profile") is not None and entry["name"] not in models:
                report.errors.append(f"{curated.path}: profile entry {entry['name']!r} (profile "
                                     f"{entry['profile']!r}) has no base model; add the model or remove the entry")
        if report.errors:
            return report, None
        result = merge_layers(discovered.entries, curated.entries, self.profile)
        report.warnings += result.warnings
        return report, result

    def merged(self) -> Merged:
        """Merge the current layers (raises InvalidRegistry, writes nothing)."""
        return self._merge(read_layer(self.discovered_path), read_layer(self.curated_path))

    @without_gc
    def _merge(self, discovered: LayerFile, curated: LayerFile) -> Merged:
        report, result = self._check(discovered, curated)
        if result is None:
            raise InvalidRegistry(report.errors)
        data = dumps_snapshot(result.entries)
        return Merged(result.entries, result.sources, result.overridden, report.warnings,
                      revision=revision_of(data), data=data, curated_revision=curated.revision,
                      discovered_revision=discovered.revision)

    def snapshot(self) -> Snapshot:
        """The merged snapshot on disk (built first if it does not exist yet)."""
        key = file_stamp(self.snapshot_path)
        if key is None:
            return self.rebuild()
        with self._cache_guard:
            if self._snapshot_cache and self._snapshot_cache[0] == key:
                return self._snapshot_cache[1]
        layer = read_layer(self.snapshot_path, check_nesting=False)  # written only from layers that passed it
        snap = Snapshot(layer.entries, layer.revision)
        with self._cache_guard:
            self._snapshot_cache = (key, snap)
        return snap

    def _read_source(self) -> dict[str, Any] | None:
        try:
            source = json.loads(self.source_path.read_bytes())
        except (OSError, ValueError):
            return None
        if isinstance(source, dict) and isinstance(source.get("stamps"), dict):
            source["stamps"] = {k: v and tuple(v) for k, v in source["stamps"].items()}
            return source
        return None

    def snapshot_staleness(self) -> str | None:
        """Why the snapshot on disk may not be the merge of the layers as they are now (an interrupted write, an
        edit by hand since the last rebuild, another profile), else None. Reads only; `rebuild` fixes it."""
        snap = self.snapshot()
        source = self._read_source()
        fix = "run `modelreg rebuild` (or any write) to rebuild it"
        if source is not None and source.get("snapshot") == snap.revision:
            if source.get("profile") != self.profile:
                return (f"the snapshot on disk was built for profile {source.get('profile') or 'none'}, not "
                        f"{self.profile or 'none'}; {fix}")
            changed = [label for label, path in (("discovered", self.discovered_path), ("curated", self.curated_path))
                       if file_stamp(path) != source["stamps"].get(label) and _file_revision(path) != source.get(label)]
            if not changed:
                return None
            why = (f"the {' and '.join(changed)} layer changed since it was built (an interrupted write, or an edit "
                   "by hand)")
        else:
            why = "it is not the merge of the layers as they are now (an interrupted write?)"
        try:  # a changed layer, or no record of this snapshot (an older version, an interrupted rebuild): compare
            if self.merged().revision == snap.revision:
                return None
        except InvalidRegistry as exc:
            return f"the layers do not validate, so the snapshot on disk is the last good one: {exc}"
        return f"the snapshot on disk is stale: {why}; {fix}"

    def entry(self, name: str) -> dict[str, Any]:
        by_name = self.snapshot().by_name
        if name not in by_name:
            raise UnknownModel(name, difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.5))
        return by_name[name]

    def known_names(self) -> set[str]:
        return {e["name"] for e in self.discovered_entries()} | {e["name"] for e in self.curated_entries()}

    def diff(self, name: str) -> list[DiffRow]:
        """One model's fields in every layer, with the status of the curated value against disk."""
        merged = self.merged()
        if name not in merged.sources:
            raise UnknownModel(name, difflib.get_close_matches(name, list(merged.sources), n=3, cutoff=0.5))
        return layer_diff(self.discovered_entries(), self.curated_entries(), merged, self.profile, [name])

    # ---- the snapshot's one write path ---------------------------------------------------------------------
    def rebuild(self) -> Snapshot:
        """Write the merged snapshot; refuses (InvalidRegistry) and keeps the last good one if a layer is invalid."""
        with registry_lock(self.config_dir):
            discovered, curated = read_layer(self.discovered_path), read_layer(self.curated_path)
            published = self._published
            if published and published[0] == (discovered.revision, curated.revision) \
                    and self.snapshot_path.exists() and self.snapshot().revision == published[1].revision:
                snap = published[1]  # nothing changed since this object last merged: skip the merge
            else:
                return self._publish(self._merge(discovered, curated))
        for callback in list(self._subscribers):
            callback(snap)
        return snap

    def _publish(self, merged: Merged) -> Snapshot:
        """Write a merge as the snapshot, then the record of what it was built from (caller holds the lock), and
        tell the subscribers."""
        current = self.snapshot_path.read_bytes() if self.snapshot_path.exists() else None
        if current != merged.data:
            atomic_write(self.snapshot_path, merged.data)
        source = {"snapshot": merged.revision, "profile": self.profile,
                  "discovered": merged.discovered_revision, "curated": merged.curated_revision,
                  "stamps": {"discovered": file_stamp(self.discovered_path), "curated": file_stamp(self.curated_path)}}
        if self._read_source() != source:
            atomic_write(self.source_path, dumps(source))
        snap = Snapshot(merged.entries, merged.revision)
        self._published = ((merged.discovered_revision, merged.curated_revision), snap)
        with self._cache_guard:
            self._snapshot_cache = (file_stamp(self.snapshot_path), snap)
        for callback in list(self._subscribers):
            callback(snap)
        return snap

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call `callback(snapshot)` after every rebuild this object does; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # ---- the discovered layer's one write path (machines) --------------------------------------------------
    def discovered_writer(self) -> "DiscoveredWriter":
        return DiscoveredWriter(self)

    # ---- the curated layer's one write path (humans) -------------------------------------------------------
    def apply_curated(self, name: str, changes: dict[str, Any], base_revision: str | None = None,
                      profile: str | None = None, reason: str | None = None) -> Snapshot:
        """Set (value) or remove (UNSET) dotted paths of one curated entry, then rebuild.

        `base_revision` is the curated revision the caller read; if the file changed since, ConflictError.
        """
        for path, value in changes.items():
            check_editable(path, value)

        def edit(entries: list[dict]) -> None:
            target = self._curated_target(entries, name, profile)
            for path, value in changes.items():
                if value is UNSET:
                    remove_path(target, path)
                else:
                    set_path(target, path, value)
            if any(field_class(p) is FieldClass.CONFIG and p != CONFIG_NEEDED for p in changes):
                remove_path(target, CONFIG_NEEDED)
            if set(target) <= {"name", "profile"}:
                entries.remove(target)

        what = ", ".join(f"unset {p}" if v is UNSET else f"set {p}" for p, v in changes.items())
        return self._write_curated(edit, base_revision, reason or f"{name}: {what}")

    def set_value(self, name: str, path: str, value: Any, base_revision: str | None = None,
                  profile: str | None = None) -> Snapshot:
        return self.apply_curated(name, {path: value}, base_revision, profile)

    def unset_value(self, name: str, path: str, base_revision: str | None = None,
                    profile: str | None = None) -> Snapshot:
        return self.apply_curated(name, {path: UNSET}, base_revision, profile)

    def stub(self, name: str, suggestions: dict[str, Any] | None = None) -> bool:
        return bool(self.stub_many({name: suggestions or {}}))

    def stub_many(self, stubs: dict[str, dict[str, Any]]) -> list[str]:
        """Create curated stubs (config fields to fill, `_config_needed`) for models without a curated entry."""
        for name, suggestions in stubs.items():
            facts = [p for p in suggestions if field_class(p) is FieldClass.FACT]
            if facts:
                raise FactFieldRefused(f"stub {name!r}: {', '.join(facts)} are facts; stubs hold configuration")
        created: list[str] = []

        def edit(entries: list[dict]) -> None:
            existing = {e["name"] for e in entries if e.get("profile") is None}
            for name, suggestions in stubs.items():
                if name in existing:
                    continue
                entry: dict[str, Any] = {"name": name}
                for path in STUB_FIELDS:
                    set_path(entry, path, suggestions.get(path))
                for path, value in suggestions.items():
                    set_path(entry, path, value)
                set_path(entry, CONFIG_NEEDED, True)
                entries.append(entry)
                created.append(name)

        self._write_curated(edit, None, f"stub {', '.join(stubs)}")
        return created

    def record_discovery(self, entries: list[dict], missing: list[str], stubs: dict[str, dict[str, Any]]) -> list[str]:
        """A scan's writes as one locked operation: facts (and missing marks) into discovered, then stubs for the new
        models, then the snapshot. The stubs are written down first, so a scan killed between the two files leaves
        them to the next one (`finish_pending_stubs`). Returns the stubs created."""
        with registry_lock(self.config_dir):
            if stubs:
                atomic_write(self.pending_stubs_path, dumps(stubs))
            self.discovered_writer().upsert(entries, rebuild=False, missing=missing)
            if not stubs:
                self.rebuild()
                return []
            return self.finish_pending_stubs()

    def finish_pending_stubs(self) -> list[str]:
        """Create the stubs an interrupted scan owed (for the models it wrote into discovered that still have no
        curated entry), rebuild, and clear the record; returns the stubs created."""
        with registry_lock(self.config_dir):
            try:
                pending = json.loads(self.pending_stubs_path.read_bytes())
            except FileNotFoundError:
                return []
            except (OSError, ValueError):
                pending = {}  # unreadable: the next scan stubs what it finds new
            discovered = {e["name"] for e in self.discovered_entries()}
            owed = {n: s for n, s in pending.items() if n in discovered} if isinstance(pending, dict) else {}
            created = self.stub_many(owed) if owed else []
            if not owed:
                self.rebuild()
            self.pending_stubs_path.unlink(missing_ok=True)
            return created

    def history_items(self) -> list[HistoryItem]:
        return self.history.items()

    def restore(self, item_id: str) -> Snapshot:
        """Make an earlier curated version current again (the version replaced is kept in history too)."""
        raw = self.history.raw(item_id)
        try:
            restored = json.loads(raw)
        except ValueError:
            restored = None
        if not isinstance(restored, list):
            raise BadInput(f"history item {item_id} does not hold a curated file (a JSON list of entries); "
                           "choose another one (`modelreg history`)")

        def edit(entries: list[dict]) -> None:
            entries[:] = restored

        return self._write_curated(edit, None, f"restore {item_id}")

    def remove_curated(self, name: str) -> Snapshot:
        """Remove every curated entry of one model (base and profiles); the version replaced is kept in history."""
        def edit(entries: list[dict]) -> None:
            entries[:] = [e for e in entries if e.get("name") != name]

        return self._write_curated(edit, None, f"{name}: remove curated entries")

    def _curated_target(self, entries: list[dict], name: str, profile: str | None) -> dict:
        for entry in entries:
            if entry.get("name") == name and entry.get("profile") == profile:
                return entry
        known = self.known_names()
        if name not in known:
            raise UnknownModel(name, difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5))
        entry = {"name": name, **({"profile": profile} if profile else {})}
        entries.append(entry)
        return entry

    def _write_curated(self, edit: Callable[[list[dict]], None], base_revision: str | None, reason: str) -> Snapshot:
        with registry_lock(self.config_dir):
            layer = read_layer(self.curated_path)  # a corrupt file raises here and is never overwritten
            if base_revision is not None and base_revision != layer.revision:
                raise ConflictError(base_revision, layer.revision)
            if layer.raw is not None and layer.raw != dumps(layer.entries):  # edited by hand: would a rewrite drop
                repeated = duplicate_keys(layer)                               # a value JSON readers never saw?
                if repeated:
                    raise InvalidRegistry(repeated)
            entries = copy.deepcopy(layer.entries)
            edit(entries)
            if entries == layer.entries:
                return self.rebuild()
            data = dumps(entries)
            merged = self._merge(read_layer(self.discovered_path), LayerFile(self.curated_path, entries, data))
            if layer.raw is not None:
                self.history.keep(layer.raw, reason)
            atomic_write(self.curated_path, data)
            return self._publish(merged)

    # ---- migration of a legacy (config-in-discovered) registry ---------------------------------------------
    def migrate(self, dry_run: bool = False) -> Migration:
        """Move config values out of discovered into curated where curated has none; merged snapshot unchanged.

        The one write that bypasses the layer writers, on purpose: it is the only change that removes configuration
        from the discovered layer (the discovered writer keeps legacy configuration, the curated writer never
        touches discovered), and both files must change under one lock, after backups of both.
        """
        with registry_lock(self.config_dir):
            discovered, curated = read_layer(self.discovered_path), read_layer(self.curated_path)
            report, _ = self._check(discovered, curated)
            if report.errors:
                raise InvalidRegistry(report.errors)
            new_discovered = copy.deepcopy(discovered.entries)
            new_curated = copy.deepcopy(curated.entries)
            base = {e["name"]: e for e in new_curated if e.get("profile") is None}
            moves: list[dict[str, Any]] = []
            for entry in new_discovered:
                for path in config_paths(entry, include_empty=True):
                    value = get_path(entry, path)
                    target = base.get(entry["name"])
                    kept = get_path(target, path) if target is not None else None
                    if kept is None:
                        if target is None:
                            target = base[entry["name"]] = {"name": entry["name"]}
                            new_curated.append(target)
                        set_path(target, path, copy.deepcopy(value))
                        action = "moved"
                    else:
                        action = "dropped: curated already has a value"
                    moves.append({"name": entry["name"], "field": path, "value": value, "action": action,
                                  "curated_value": kept})
                    remove_path(entry, path)
            backups: list[str] = []
            if moves and not dry_run:
                stamp = self.history.keep(curated.raw or b"[]\n", "before migrate").id
                for layer in (discovered, curated):
                    if layer.raw is not None:
                        backup = layer.path.with_name(f"{layer.path.name}.{stamp}.bak")
                        atomic_write(backup, layer.raw)
                        backups.append(str(backup))
                atomic_write(self.curated_path, dumps(new_curated))
                atomic_write(self.discovered_path, dumps(new_discovered))
                self.rebuild()
            return Migration(moves, bool(moves) and not dry_run, backups)


class DiscoveredWriter:
    """The discovered layer's only write path: machine facts in, configuration refused."""

    def __init__(self, registry: Registry):
        self.registry = registry

    @staticmethod
    def check(entries: Iterable[dict]) -> None:
        for entry in entries:
            if not isinstance(entry.get("name"), str) or not entry["name"]:
                raise BadInput("a discovered entry needs a non-empty string name")
            bad = [p for p in flatten(entry) if field_class(p) is FieldClass.CONFIG]
            if bad:
                raise ConfigFieldInDiscovered(
                    f"discovered entry {entry['name']!r}: {', '.join(bad)} are configuration; configuration is "
                    "written only into the curated layer (use Registry.stub or set)")

    def upsert(self, entries: list[dict], rebuild: bool = True, missing: Iterable[str] = ()) -> None:
        """Replace (or add) these entries' facts, and mark `missing` ones missing; other entries are untouched."""
        gone = set(missing)

        def update(current: list[dict]) -> list[dict]:
            result = self._merge_in(current, entries, keep_others=True)
            for entry in result:
                if entry.get("name") in gone:
                    entry["missing"] = True
            return result
        self._write(update, entries, rebuild)

    def replace(self, entries: list[dict], rebuild: bool = True) -> None:
        """Make the layer exactly these entries (legacy configuration of same-named entries is kept)."""
        self._write(lambda current: self._merge_in(current, entries, keep_others=False), entries, rebuild)

    def mark_missing(self, names: Iterable[str], missing: bool = True, rebuild: bool = True) -> None:
        wanted = set(names)

        def update(current: list[dict]) -> list[dict]:
            for entry in current:
                if entry.get("name") in wanted:
                    if missing:
                        entry["missing"] = True
                    else:
                        entry.pop("missing", None)
            return current
        self._write(update, [], rebuild)

    def remove(self, names: Iterable[str], rebuild: bool = True) -> None:
        gone = set(names)
        self._write(lambda current: [e for e in current if e.get("name") not in gone], [], rebuild)

    @staticmethod
    def _merge_in(current: list[dict], entries: list[dict], keep_others: bool) -> list[dict]:
        by_name = {e.get("name"): e for e in current}
        incoming = {}
        for entry in entries:
            stored = copy.deepcopy(entry)
            old = by_name.get(entry["name"])
            if old is not None:  # legacy configuration is never dropped by a machine write
                for path in config_paths(old):
                    set_path(stored, path, copy.deepcopy(get_path(old, path)))
            incoming[entry["name"]] = stored
        kept = [e for e in current if e.get("name") not in incoming] if keep_others else []
        return sorted(kept + list(incoming.values()), key=lambda e: str(e.get("name")))

    def _write(self, update: Callable[[list[dict]], list[dict]], entries: list[dict], rebuild: bool) -> None:
        self.check(entries)
        registry = self.registry
        with registry_lock(registry.config_dir):
            layer = read_layer(registry.discovered_path)
            result = update(copy.deepcopy(layer.entries))
            written = LayerFile(registry.discovered_path, result, dumps(result))
            errors = validate_layer(written, "discovered")
            if errors:
                raise InvalidRegistry(errors)
            if written.raw != layer.raw:
                atomic_write(registry.discovered_path, written.raw)
            if rebuild:  # a broken curated file fails the rebuild, not the scan that was just written
                registry._publish(registry._merge(written, read_layer(registry.curated_path)))

