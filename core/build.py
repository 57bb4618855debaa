"""The snapshot built model by model: each model's validation, merge and provenance are kept under the digests of
its entry in each layer, so a rebuild after an edit redoes only the models the edit touched."""
from __future__ import annotations

import functools
import hashlib
import marshal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelreg.errors import InvalidRegistry
from modelreg.merge import MergedEntry, entry_layers, merge_entry
from modelreg.schema import EntryCheck, check_entry, entry_lines, layer_problems
from modelreg.store import (
    SNAPSHOT_FILE,
    atomic_write,
    chunk_digest,
    entry_spans,
    file_stamp,
    layer_chunk,
    list_bytes,
    loads,
    parse_layer,
    revision_of,
    snapshot_chunk,
    without_gc,
)

INDEX_FILE = ".snapshot-index"  # what the last build found, for the next process (a cache: losing it costs time)
_INDEX_FORMAT = 1
# A file rewritten within this long of being read can keep its stamp (timestamps are coarse): until it is older than
# that, its bytes are read again rather than trusted by stamp.
_RACY_NS = 2_000_000_000
_ENGINE_MODULES = ("build", "fields", "merge", "schema", "store")

ModelKey = tuple[bytes | None, bytes | None, bytes | None]  # the digests of a model's entry in each curated layer


@functools.cache
def engine_fingerprint() -> bytes:
    """Changes with the code that decides what a build produces: a cache written by other code is not used."""
    digest = hashlib.sha256(f"{_INDEX_FORMAT} {sys.version_info[:2]} {orjson.__version__}".encode())
    import pydantic  # loaded already by the schema

    digest.update(pydantic.VERSION.encode())
    for module in _ENGINE_MODULES:
        digest.update(Path(sys.modules[f"modelreg.{module}"].__file__ or "").read_bytes())
    return digest.digest()


@dataclass
class LayerCut:
    """A layer file cut into its entries' bytes, each with a digest; an entry is parsed only when needed.

    `spans` says where each entry's bytes lie in the file, when it is laid out as `dumps` lays out a list; otherwise
    (a file formatted by hand) it was parsed whole, and each entry's digest is taken over a canonical encoding.
    """

    path: Path
    revision: str
    stamp: tuple[int, int, int] | None
    checked_at: int                     # when the bytes were last read (see _RACY_NS)
    spans: list[tuple[int, int]] | None
    digests: list[bytes]
    parsed: list[Any] | None = None     # the entries, when the file was parsed whole
    _raw: bytes | None = field(default=None, repr=False)
    _entries: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def exists(self) -> bool:
        return self.stamp is not None

    @property
    def raw(self) -> bytes | None:
        if self._raw is None and self.exists:
            self._raw = self.path.read_bytes()
        return self._raw

    def chunk(self, index: int) -> Any:
        """The entry's bytes (bytes-like) as `dumps` writes them inside the list."""
        if self.spans is None:
            return layer_chunk(self.parsed[index])  # type: ignore[index]
        start, end = self.spans[index]
        return memoryview(self.raw)[start:end]  # type: ignore[arg-type]

    def entry(self, index: int) -> Any:
        if self.parsed is not None:
            return self.parsed[index]
        if index not in self._entries:
            self._entries[index] = loads(self.chunk(index))
        return self._entries[index]

    def starts(self) -> list[int]:
        """The line each entry starts on."""
        raw = self.raw or b""
        if self.spans is None:
            return entry_lines(raw.decode("utf-8")) if raw else []
        return [raw.count(b"\n", 0, start) + 1 for start, _ in self.spans]

    def trusted(self, stamp: tuple[int, int, int] | None) -> bool:
        """The file still holds the bytes this cut was made from, by its stamp alone."""
        return stamp == self.stamp and (stamp is None or stamp[1] < self.checked_at - _RACY_NS)


def cut_bytes(path: Path, raw: bytes | None, stamp: tuple[int, int, int] | None = None,
              known: LayerCut | None = None) -> LayerCut:
    """Cut a layer file's bytes into entries; digests of entries whose bytes `known` already has are reused."""
    now = time.time_ns()
    revision = revision_of(raw)
    if known is not None and known.revision == revision:
        return LayerCut(path, revision, stamp, now, known.spans, known.digests, known.parsed, raw, known._entries)
    if raw is None:
        return LayerCut(path, revision, stamp, now, [], [], None, None)
    spans = entry_spans(raw)
    if spans is None:
        return _parsed_whole(path, raw, stamp, now)
    view = memoryview(raw)
    return LayerCut(path, revision, stamp, now, spans, [chunk_digest(view[a:b]) for a, b in spans], None, raw)


def cut_chunks(path: Path, chunks: list[Any], digests: list[bytes | None]) -> LayerCut:
    """The cut of a layer file made of these entry chunks (bytes-like; digests where known, else None)."""
    raw = list_bytes(chunks)
    spans, start = [], 2
    for chunk in chunks:
        spans.append((start, start + len(chunk)))
        start += len(chunk) + 2
    known = [d if d is not None else chunk_digest(c) for c, d in zip(chunks, digests)]
    return LayerCut(path, revision_of(raw), None, time.time_ns(), spans, known, None, raw)


def _parsed_whole(path: Path, raw: bytes, stamp: tuple[int, int, int] | None, now: int) -> LayerCut:
    parsed = parse_layer(path, raw).entries  # malformed JSON raises here, naming file, line and column
    digests = [chunk_digest(marshal.dumps(entry, 2)) for entry in parsed]  # version 2: no back-references
    return LayerCut(path, revision_of(raw), stamp, now, None, digests, parsed, raw)


def read_cut(path: Path, known: LayerCut | None = None) -> LayerCut:
    """The layer file as it is now: `known` itself when its stamp vouches for it, else read and cut again."""
    stamp = file_stamp(path)
    if known is not None and known.trusted(stamp):
        return known
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw, stamp = None, None
    return cut_bytes(path, raw, stamp, known)


@dataclass
class ModelBuild:
    """One model's part of the snapshot: its bytes there, its warnings, and its merge (None when read back from the
    index of another process: merged again when asked for)."""

    key: ModelKey
    chunk: Any                          # bytes-like
    warnings: tuple[str, ...]
    merged: MergedEntry | None


@dataclass
class Built:
    """A merge of the layers as they were cut, ready to publish."""

    names: list[str]
    models: list[ModelBuild]
    data: bytes
    revision: str
    discovered: LayerCut
    curated: LayerCut
    profile: str | None
    places: dict[str, tuple[int | None, int | None, int | None]]  # name -> index in discovered, curated base, profile

    @property
    def warnings(self) -> list[str]:
        return [w for model in self.models for w in model.warnings]


class SnapshotBuilder:
    """Builds the snapshot of one registry folder for one profile, keeping what each build found for the next, in
    memory and (for the next process) in the index file. Thread-safe; callers that write hold the registry lock."""

    def __init__(self, config_dir: Path, profile: str | None):
        self.index_path = Path(config_dir) / INDEX_FILE
        self.snapshot_path = Path(config_dir) / SNAPSHOT_FILE
        self.profile = profile
        self._guard = threading.RLock()
        self._checks: dict[bytes, EntryCheck] = {}
        self._models: dict[ModelKey, ModelBuild] = {}
        self._cuts: dict[str, LayerCut] = {}
        self._last: Built | None = None
        # what the snapshot file holds, as last written or read: (stamp, checked_at, revision, model keys, spans)
        self._file: tuple[tuple[int, int, int] | None, int, str, list[ModelKey], list[tuple[int, int]]] | None = None
        self._file_data: bytes | None = None  # its bytes, once read or written
        self._index_read = False

    # ---- reading the layers --------------------------------------------------------------------------------
    def cut(self, path: Path, label: str) -> LayerCut:
        """The layer file as it is now (read again only if its stamp does not vouch for the last cut)."""
        with self._guard:
            self._read_index()
            cut = read_cut(path, self._cuts.get(label))
            self._cuts[label] = cut
            return cut

    def adopt(self, label: str, cut: LayerCut) -> None:
        """Take the cut of bytes just written to its file."""
        with self._guard:
            cut.stamp = file_stamp(cut.path)
            self._cuts[label] = cut

    # ---- building ------------------------------------------------------------------------------------------
    @without_gc
    def build(self, discovered: LayerCut, curated: LayerCut, full: bool = False) -> Built:
        """Validate and merge; raises InvalidRegistry when a layer does not validate.

        `full`: use nothing kept from earlier builds (what a build without a cache does; the bytes are the same).
        """
        with self._guard:
            last = self._last
            if not full and last is not None and last.discovered.revision == discovered.revision \
                    and last.curated.revision == curated.revision:
                return last
            discovered_checks = self._checked(discovered, full)
            curated_checks = self._checked(curated, full)
            errors = (layer_problems(discovered.path, "discovered", discovered_checks, discovered.starts)
                      + layer_problems(curated.path, "curated", curated_checks, curated.starts))
            if errors:
                raise InvalidRegistry(errors)
            found = {check.key[0]: i for i, check in enumerate(discovered_checks)}  # type: ignore[index]
            base: dict[str, int] = {}
            chosen: dict[str, int] = {}
            orphans = []
            for index, check in enumerate(curated_checks):
                name, profile = check.key  # type: ignore[misc]
                if profile is None:
                    base[name] = index
                else:
                    orphans.append((name, profile))
                    if profile == self.profile:
                        chosen[name] = index
            missing = [f"{curated.path}: profile entry {name!r} (profile {profile!r}) has no base model; add the model "
                       "or remove the entry" for name, profile in orphans if name not in found and name not in base]
            if missing:
                raise InvalidRegistry(missing)
            names = sorted(found.keys() | base.keys() | chosen.keys())
            places = {name: (found.get(name), base.get(name), chosen.get(name)) for name in names}
            models = [self._model(name, places[name], discovered, curated, full) for name in names]
            if self._file is not None and self._file_data is not None \
                    and self._file[3] == [model.key for model in models]:
                data, revision = self._file_data, self._file[2]  # the same models as the file holds: its bytes
            else:
                data = list_bytes([model.chunk for model in models])
                revision = revision_of(data)
            built = Built(names, models, data, revision, discovered, curated, self.profile, places)
            self._models = {model.key: model for model in models}  # only this build's: nothing grows per edit
            live = set(discovered.digests) | set(curated.digests)
            self._checks = {d: c for d, c in self._checks.items() if d in live}
            self._last = built
            return built

    def problems(self, cut: LayerCut, label: str) -> list[str]:
        """One layer's problems (its entries' own, and names used twice)."""
        with self._guard:
            return layer_problems(cut.path, label, self._checked(cut, False), cut.starts)

    def entry_keys(self, cut: LayerCut) -> list[tuple[Any, Any]]:
        """(name, profile) of each entry, an invalid entry's too (so an edit can repair it); a file that is not
        JSON raises BadInput."""
        with self._guard:
            keys = []
            for index, check in enumerate(self._checked(cut, False)):
                if check.key is None:
                    entry = cut.entry(index)
                    name, profile = (entry.get("name"), entry.get("profile")) if type(entry) is dict else (None, None)
                    check = EntryCheck("", (name if type(name) is str else None,
                                            profile if type(profile) is str else None), ())
                keys.append(check.key)
            return keys

    def file_revision(self) -> str | None:
        """The snapshot file's revision, when its stamp vouches that it holds what was last written or read."""
        with self._guard:
            if self._file is None:
                return None
            stamp, checked_at, revision = self._file[:3]
            now = file_stamp(self.snapshot_path)
            return revision if now is not None and now == stamp and now[1] < checked_at - _RACY_NS else None

    def _checked(self, cut: LayerCut, full: bool) -> list[EntryCheck]:
        checks = []
        for index, digest in enumerate(cut.digests):
            check = None if full else self._checks.get(digest)
            if check is None:
                try:
                    entry = cut.entry(index)
                except ValueError:  # not one JSON value: the file is not laid out as it seemed
                    entry = None
                if cut.spans is not None and type(entry) is not dict:
                    whole = _parsed_whole(cut.path, cut.raw, cut.stamp, cut.checked_at)  # type: ignore[arg-type]
                    cut.spans, cut.digests, cut.parsed = None, whole.digests, whole.parsed
                    return self._checked(cut, full)
                check = check_entry(entry, index)
                if check.reusable:
                    self._checks[digest] = check
            checks.append(check)
        return checks

    def _model(self, name: str, place: tuple[int | None, int | None, int | None], discovered: LayerCut,
               curated: LayerCut, full: bool) -> ModelBuild:
        found, base, chosen = place
        key = (None if found is None else discovered.digests[found], None if base is None else curated.digests[base],
               None if chosen is None else curated.digests[chosen])
        model = None if full else self._models.get(key)
        if model is not None and model.chunk is None:  # recorded by another process: its bytes are in the file
            model = self._models.get(key) if self._file_chunks() else None
        if model is None:
            merged = self._merge(name, place, discovered, curated)
            model = ModelBuild(key, snapshot_chunk(merged.entry), tuple(merged.warnings), merged)
        return model

    def _merge(self, name: str, place: tuple[int | None, int | None, int | None], discovered: LayerCut,
               curated: LayerCut) -> MergedEntry:
        found, base, chosen = place
        return merge_entry(name, entry_layers(None if found is None else discovered.entry(found),
                                              None if base is None else curated.entry(base),
                                              None if chosen is None else curated.entry(chosen), self.profile))

    def merged_entries(self, built: Built) -> list[MergedEntry]:
        """Every model's merge (those recorded by another process are merged again, once)."""
        with self._guard:
            for name, model in zip(built.names, built.models):
                if model.merged is None:
                    model.merged = self._merge(name, built.places[name], built.discovered, built.curated)
            return [model.merged for model in built.models]  # type: ignore[misc]

    # ---- the snapshot file and the index -------------------------------------------------------------------
    def published(self, built: Built) -> None:
        """Record that the snapshot file now holds `built`, and write the index (caller holds the registry lock)."""
        with self._guard:
            spans, start = [], 2
            view = memoryview(built.data)
            for model in built.models:
                end = start + len(model.chunk)
                spans.append((start, end))
                model.chunk = view[start:end]  # one copy of the snapshot's bytes in memory, not two
                start = end + 2
            keys = [model.key for model in built.models]
            self._file = (file_stamp(self.snapshot_path), time.time_ns(), built.revision, keys, spans)
            self._file_data = built.data
            record = {
                "format": _INDEX_FORMAT, "engine": engine_fingerprint(), "profile": self.profile,
                "layers": {label: (cut.path.name, cut.revision, cut.stamp, cut.checked_at, cut.spans,
                                   b"".join(cut.digests))
                           for label, cut in (("discovered", built.discovered), ("curated", built.curated))
                           if cut.spans is not None},
                "checks": {digest: (check.who, check.key) for digest, check in self._checks.items()
                           if not check.problems},
                "file": self._file,
                "warnings": [model.warnings for model in built.models],
            }
            data = marshal.dumps(record)
            atomic_write(self.index_path, hashlib.sha256(data).digest() + data, sync=False)

    def _read_index(self) -> None:
        """Take what another process's last build found (once), if this code made it for this profile."""
        if self._index_read:
            return
        self._index_read = True
        try:
            data = self.index_path.read_bytes()
            if hashlib.sha256(data[32:]).digest() != data[:32]:
                return
            record = marshal.loads(data[32:])
            if record["format"] != _INDEX_FORMAT or record["engine"] != engine_fingerprint() \
                    or record["profile"] != self.profile:
                return
            folder = self.index_path.parent
            cuts = {label: LayerCut(folder / name, revision, stamp, checked_at, spans,
                                    [digests[i:i + 16] for i in range(0, len(digests), 16)])
                    for label, (name, revision, stamp, checked_at, spans, digests) in record["layers"].items()}
            checks = {digest: EntryCheck(who, key, ()) for digest, (who, key) in record["checks"].items()}
            file = record["file"]
            models = {key: ModelBuild(key, None, warnings, None) for key, warnings in zip(file[3], record["warnings"])}
        except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
            return
        self._cuts, self._checks, self._file, self._models = cuts, checks, file, models

    def _file_chunks(self) -> bool:
        """Give the models recorded by another process their bytes from the snapshot file, if it still holds what
        was recorded; else forget them. True when they have their bytes."""
        stamp, checked_at, revision, keys, spans = self._file  # type: ignore[misc]
        now = file_stamp(self.snapshot_path)
        try:
            data = self.snapshot_path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None and ((now == stamp and now[1] < checked_at - _RACY_NS) or revision_of(data) == revision):
            view = memoryview(data)
            for key, (start, end) in zip(keys, spans):
                self._models[key].chunk = view[start:end]
            self._file, self._file_data = (now, time.time_ns(), revision, keys, spans), data
            return True
        self._models = {key: model for key, model in self._models.items() if model.chunk is not None}
        self._file = self._file_data = None
        return False
