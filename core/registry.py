"""The one Python API every consumer uses: load, validate, merge, write layers."""
from __future__ import annotations

import copy
import difflib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from modelreg.build import Built, LayerCut, SnapshotBuilder, cut_bytes, cut_chunks
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
from modelreg.history import CuratedHistory, HistoryItem
from modelreg.merge import DiffRow, MergeResult, layer_diff, merge_result
from modelreg.paths import flatten, get_path, remove_path, set_path
from modelreg.schema import duplicate_keys
from modelreg.settings_view import active_profile, load_settings
from modelreg.store import (
    CURATED_FILE,
    DISCOVERED_FILE,
    MAX_DEPTH,
    PENDING_STUBS_FILE,
    SNAPSHOT_FILE,
    LayerFile,
    atomic_write,
    dumps,
    file_stamp,
    json_copy,
    layer_chunk,
    loads,
    nesting_depth_exceeded,
    read_layer,
    registry_lock,
    revision_of,
    without_gc,
)

if TYPE_CHECKING:
    from modelreg.settings import Settings


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
CONFIG_NEEDED = "metadata._config_needed"


class Snapshot:
    """The merged snapshot as consumers read it, with its revision (sha256 of the file's bytes); given its bytes
    instead of its entries, it parses them when first asked."""

    def __init__(self, entries: list[dict[str, Any]] | None, revision: str,
                 data: bytes | Callable[[], bytes] | None = None, count: int | None = None):
        self._entries = entries
        self.revision = revision
        self._data = data
        self._count = count

    @property
    def count(self) -> int:
        """How many models it holds (without parsing it)."""
        return self._count if self._count is not None else len(self.entries)

    @property
    def entries(self) -> list[dict[str, Any]]:
        if self._entries is None:
            self._entries = loads(self._data() if callable(self._data) else self._data)
        return self._entries

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
    curated_revision: str = ""


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
    """$MODELREG_CONFIG_DIR, else ./configs where that folder exists (a clone of this repository, or a folder
    set up that way), else the user's registry (`user_registry_dir`)."""
    if os.environ.get("MODELREG_CONFIG_DIR"):
        return Path(os.environ["MODELREG_CONFIG_DIR"])
    return Path("configs") if Path("configs").is_dir() else user_registry_dir()


def user_registry_dir() -> Path:
    """The user's config folder for modelreg (platformdirs: ~/.config/modelreg on Linux, honouring
    $XDG_CONFIG_HOME)."""
    from platformdirs import user_config_dir
    return Path(user_config_dir("modelreg", appauthor=False))


def holds_layers(config_dir: Path) -> bool:
    """Whether the folder holds a discovered or curated layer (an empty or missing one is a new registry)."""
    return (config_dir / DISCOVERED_FILE).exists() or (config_dir / CURATED_FILE).exists()


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


class CuratedEntries:
    """The curated entries as an edit sees them: found by name and profile, each parsed only when asked for, so an
    edit costs what it changes."""

    def __init__(self, layer: LayerCut, keys: list[tuple[str | None, str | None]],
                 discovered_names: Callable[[], set[str]]):
        self._layer = layer
        self._keys = keys
        self._where: dict[tuple[str | None, str | None], int] = {}
        for index, key in enumerate(keys):
            self._where.setdefault(key, index)
        self._discovered_names = discovered_names
        self._opened: dict[int, dict] = {}
        self._removed: set[int] = set()
        self._added: list[dict] = []
        self._replaced: list | None = None

    def find(self, name: str, profile: str | None = None) -> dict | None:
        """The entry to change in place, or None."""
        index = self._where.get((name, profile))
        if index is not None and index not in self._removed:
            if index not in self._opened:
                self._opened[index] = json_copy(self._layer.entry(index))
            return self._opened[index]
        return next((e for e in self._added if e.get("name") == name and e.get("profile") == profile), None)

    def base_names(self) -> set[str]:
        """Names of the base entries (those without a profile)."""
        kept = {name for index, (name, profile) in enumerate(self._keys)
                if name is not None and profile is None and index not in self._removed}
        return kept | {e["name"] for e in self._added if e.get("profile") is None}

    def known_names(self) -> set[str]:
        """Every model name in either layer."""
        return self._discovered_names() | {name for name, _ in self._keys if name is not None} \
            | {e["name"] for e in self._added}

    def add(self, entry: dict) -> dict:
        self._added.append(entry)
        return entry

    def remove(self, entry: dict) -> None:
        for index, opened in self._opened.items():
            if opened is entry:
                self._removed.add(index)
                return
        self._added = [e for e in self._added if e is not entry]

    def remove_model(self, name: str) -> None:
        """Remove every entry of one model (base and profiles)."""
        self._removed |= {index for index, key in enumerate(self._keys) if key[0] == name}
        self._added = [e for e in self._added if e.get("name") != name]

    def replace(self, entries: list[dict]) -> None:
        """Make the layer exactly these entries."""
        self._replaced = entries

    def result(self) -> LayerCut | None:
        """The cut of the edited file (its bytes are its `raw`): unchanged entries keep their bytes; None when the
        edit changed nothing."""
        layer = self._layer
        layer.raw  # every entry's bytes are needed: read the file once
        if self._replaced is not None:
            raw = dumps(self._replaced)
            return None if raw == layer.raw else cut_bytes(layer.path, raw)
        chunks: list[Any] = []
        digests: list[bytes | None] = []
        changed = bool(self._removed or self._added)
        for index in range(len(layer.digests)):
            if index in self._removed:
                continue
            chunk = layer.chunk(index)
            if index in self._opened:
                edited = layer_chunk(self._opened[index])
                if edited != bytes(chunk):
                    changed = True
                    chunks.append(edited)
                    digests.append(None)
                    continue
            chunks.append(chunk)
            digests.append(layer.digests[index] if layer.spans is not None else None)
        if not changed:
            return None
        chunks += [layer_chunk(entry) for entry in self._added]
        digests += [None] * len(self._added)
        return cut_chunks(layer.path, chunks, digests)


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
        self.pending_stubs_path = self.config_dir / PENDING_STUBS_FILE
        self.history = CuratedHistory(self.config_dir, self.settings.history_limit, self.settings.history_max_bytes)
        self._snapshot_cache: tuple[tuple[int, int, int, int] | None, Snapshot] | None = None
        self._cache_guard = threading.Lock()
        self._builder = SnapshotBuilder(self.config_dir, self.profile)

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

    def discovered_names(self) -> set[str]:
        """The names in the discovered layer, through the build's cut (entries whose bytes it knows are not parsed)."""
        builder = self._builder
        return {name for name, _ in builder.entry_keys(builder.cut(self.discovered_path, "discovered"))
                if name is not None}

    def model_entries(self, name: str) -> tuple[dict | None, list[dict], str]:
        """One model's discovered entry and curated entries (base and profiles), and the curated revision they were
        read at: found through the build's cut of each layer, so only these entries are parsed (copies: theirs to
        change)."""
        builder = self._builder
        discovered, curated = self._cuts()
        found = next((json_copy(discovered.entry(index)) for index, key in enumerate(builder.entry_keys(discovered))
                      if key[0] == name), None)
        mine = [json_copy(curated.entry(index)) for index, key in enumerate(builder.entry_keys(curated))
                if key[0] == name]
        return found, mine, curated.revision

    @without_gc
    def validate(self) -> ValidationReport:
        """Check both layers and their merge, and that no object repeats a key; warnings do not block, errors do."""
        try:
            repeated = [problem for layer in self._cuts() for problem in duplicate_keys(layer)]
            built = self._build()
            report = ValidationReport(warnings=[w for m in self._builder.merged_entries(built) for w in m.warnings])
        except InvalidRegistry as exc:
            report = ValidationReport(errors=exc.problems)
        except BadInput as exc:
            return ValidationReport(errors=[str(exc)])
        report.errors[:0] = repeated
        return report

    def _cuts(self, trust: bool = True) -> tuple[LayerCut, LayerCut]:
        return (self._builder.cut(self.discovered_path, "discovered", trust),
                self._builder.cut(self.curated_path, "curated", trust))

    def _build(self, full: bool = False) -> Built:
        """Validate and merge the layers as they are now (raises InvalidRegistry, writes nothing); `full` reads them
        whole, whatever their stamps say."""
        return self._builder.build(*self._cuts(trust=not full), full=full)

    @without_gc
    def merged(self) -> Merged:
        """Merge the current layers (raises InvalidRegistry, writes nothing)."""
        built = self._build()
        result = merge_result(dict(zip(built.names, self._builder.merged_entries(built))))
        return Merged(result.entries, result.sources, result.overridden, result.warnings,
                      revision=built.revision, curated_revision=built.curated.revision)

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

    def snapshot_staleness(self) -> str | None:
        """Why the snapshot on disk may not be the merge of the layers as they are now (an interrupted write, an
        edit by hand since the last rebuild, another profile), else None. Reads only; `rebuild` fixes it."""
        snap = self.snapshot()
        source = self._builder.built_from()
        fix = "run `modelreg rebuild` (or any write) to rebuild it"
        if source is not None and source["snapshot"] == snap.revision:
            if source["profile"] != self.profile:
                return (f"the snapshot on disk was built for profile {source['profile'] or 'none'}, not "
                        f"{self.profile or 'none'}; {fix}")
            changed = [label for label, path in (("discovered", self.discovered_path), ("curated", self.curated_path))
                       if file_stamp(path) != source[label][1] and _file_revision(path) != source[label][0]]
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

    def diff(self, name: str) -> list[DiffRow]:
        """One model's fields in every layer, with the status of the curated value against disk."""
        merged = self.merged()
        if name not in merged.sources:
            raise UnknownModel(name, difflib.get_close_matches(name, list(merged.sources), n=3, cutoff=0.5))
        return layer_diff(self.discovered_entries(), self.curated_entries(), merged, self.profile, [name])

    # ---- the snapshot's one write path ---------------------------------------------------------------------
    @without_gc
    def rebuild(self, full: bool = False) -> Snapshot:
        """Write the merged snapshot; refuses (InvalidRegistry) and keeps the last good one if a layer is invalid.

        Only models whose entries changed since the last build are validated and merged again; `full` does every
        model again (the bytes are the same either way).
        """
        with registry_lock(self.config_dir):
            return self._publish(self._build(full))

    def _publish(self, built: Built) -> Snapshot:
        """Write a build as the snapshot and the record of what it was built from (caller holds the lock)."""
        self._builder.publish(built)
        models = built.models
        merges = [m.merged for m in models]
        entries = None if None in merges else [m.entry for m in merges if m is not None]
        snap = Snapshot(entries, built.revision, lambda: built.data, len(built.names))
        with self._cache_guard:
            self._snapshot_cache = (file_stamp(self.snapshot_path), snap)
        return snap

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

        def edit(entries: CuratedEntries) -> None:
            target = entries.find(name, profile)
            if target is None:
                known = entries.known_names()
                if name not in known:
                    raise UnknownModel(name, difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5))
                target = entries.add({"name": name, **({"profile": profile} if profile else {})})
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

    def apply_curated_many(self, changes: dict[str, dict[str, Any]], reason: str) -> Snapshot:
        """Set dotted paths of several models' base curated entries in one write (one history item), adding the
        entries that do not exist yet; nothing is written when every value is already what it would be set to."""
        for fields in changes.values():
            for path, value in fields.items():
                check_editable(path, value)

        def edit(entries: CuratedEntries) -> None:
            for name, fields in changes.items():
                target = entries.find(name) or entries.add({"name": name})
                for path, value in fields.items():
                    if get_path(target, path) != value:
                        set_path(target, path, copy.deepcopy(value))
                if get_path(target, CONFIG_NEEDED) is not None and fields:
                    remove_path(target, CONFIG_NEEDED)

        return self._write_curated(edit, None, reason)

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

        def edit(entries: CuratedEntries) -> None:
            existing = entries.base_names()
            for name, suggestions in stubs.items():
                if name in existing:
                    continue
                entry: dict[str, Any] = {"name": name}
                for path in STUB_FIELDS:
                    set_path(entry, path, suggestions.get(path))
                for path, value in suggestions.items():
                    set_path(entry, path, value)
                set_path(entry, CONFIG_NEEDED, True)
                entries.add(entry)
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
            if entries or missing:  # a rescan that found nothing new writes nothing
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
            discovered = self.discovered_names()
            owed = {n: s for n, s in pending.items() if n in discovered} if isinstance(pending, dict) else {}
            created = self.stub_many(owed) if owed else []
            if not owed:
                self.rebuild()
            self.pending_stubs_path.unlink(missing_ok=True)
            return created

    def history_items(self, verify: bool = False) -> list[HistoryItem]:
        """The kept curated versions, newest first (`verify`: each marked restorable or damaged; see
        CuratedHistory.items)."""
        return self.history.items(verify)

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

        def edit(entries: CuratedEntries) -> None:
            entries.replace(restored)

        return self._write_curated(edit, None, f"restore {item_id}")

    def remove_curated(self, name: str) -> Snapshot:
        """Remove every curated entry of one model (base and profiles); the version replaced is kept in history."""
        def edit(entries: CuratedEntries) -> None:
            entries.remove_model(name)

        return self._write_curated(edit, None, f"{name}: remove curated entries")

    @without_gc
    def _write_curated(self, edit: Callable[[CuratedEntries], None], base_revision: str | None,
                       reason: str) -> Snapshot:
        with registry_lock(self.config_dir):
            builder = self._builder
            layer = builder.cut(self.curated_path, "curated")
            if base_revision is not None and base_revision != layer.revision:
                raise ConflictError(base_revision, layer.revision)
            if layer.raw is not None and layer.spans is None:  # laid out by hand: would a rewrite drop a value
                repeated = duplicate_keys(layer)                # JSON readers never saw?
                if repeated:
                    raise InvalidRegistry(repeated)
            entries = CuratedEntries(layer, builder.entry_keys(layer),  # a corrupt file raises here, unwritten
                                     self.discovered_names)
            edit(entries)
            written = entries.result()
            if written is None:
                return self._publish(self._build())
            built = builder.build(builder.cut(self.discovered_path, "discovered"), written)
            if layer.exists:
                self.history.keep(layer.raw, reason, layer.spans,  # type: ignore[arg-type]
                                  layer.digests if layer.spans is not None else None, layer.revision)
            builder.write("curated", written)
            return self._publish(built)

    # ---- migration of a legacy (config-in-discovered) registry ---------------------------------------------
    def migrate(self, dry_run: bool = False) -> Migration:
        """Move config values out of discovered into curated where curated has none; merged snapshot unchanged.

        The one write that bypasses the layer writers, on purpose: it is the only change that removes configuration
        from the discovered layer (the discovered writer keeps legacy configuration, the curated writer never
        touches discovered), and both files must change under one lock, after backups of both.
        """
        with registry_lock(self.config_dir):
            self._build()  # raises InvalidRegistry
            discovered, curated = read_layer(self.discovered_path), read_layer(self.curated_path)
            new_discovered = json_copy(discovered.entries)
            new_curated = json_copy(curated.entries)
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
            stored = json_copy(entry)
            old = by_name.get(entry["name"])
            if old is not None:  # legacy configuration is never dropped by a machine write
                for path in config_paths(old):
                    set_path(stored, path, copy.deepcopy(get_path(old, path)))
            incoming[entry["name"]] = stored
        kept = [e for e in current if e.get("name") not in incoming] if keep_others else []
        return sorted(kept + list(incoming.values()), key=lambda e: str(e.get("name")))

    @without_gc
    def _write(self, update: Callable[[list[dict]], list[dict]], entries: list[dict], rebuild: bool) -> None:
        self.check(entries)
        registry = self.registry
        builder = registry._builder
        with registry_lock(registry.config_dir):
            layer = read_layer(registry.discovered_path)
            written = cut_bytes(registry.discovered_path, dumps(update(layer.entries)))
            errors = builder.problems(written, "discovered")
            if errors:
                raise InvalidRegistry(errors)
            if written.raw != layer.raw:
                builder.write("discovered", written)
            if rebuild:  # a broken curated file fails the rebuild, not the scan that was just written
                registry._publish(builder.build(written, builder.cut(registry.curated_path, "curated")))
