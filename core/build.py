"""The snapshot built model by model: each model's validation, merge and provenance are kept under the digests of
its entry in each layer, so a rebuild after an edit redoes only the models the edit touched."""
from __future__ import annotations

import functools
import hashlib
import logging
import marshal
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import orjson

from modelreg.errors import BadInput, InvalidRegistry, StorageError
from modelreg.merge import MergedEntry, entry_layers, merge_entry
from modelreg.schema import EntryCheck, check_entry, layer_problems
from modelreg.store import (
    LEGACY_SOURCE_FILES,
    SNAPSHOT_FILE,
    SOURCE_FILE,
    atomic_write,
    chunk_digest,
    entry_lines,
    entry_spans,
    file_stamp,
    layer_chunk,
    list_bytes,
    loads,
    parse_layer,
    refuse_deep_entry,
    revision_of,
    snapshot_chunk,
    without_gc,
)

_SOURCE_FORMAT = 3  # 1 was the binary `.snapshot-index` beside `.model_registry.source.json`; 2 had no ctime
log = logging.getLogger(__name__)
# A file rewritten within this long of being read can keep its stamp (timestamps are coarse): until it is older than
# that, its bytes are read again rather than trusted by stamp.
_RACY_NS = 2_000_000_000
_ENGINE_MODULES = ("build", "entry_model", "fields", "merge", "schema", "store", "values")
_DIGEST_SIZE = 16
_FEW_READS = 64  # entries of a file not read yet are read one by one, up to this many; then the file is read whole

ModelKey = tuple[bytes | None, bytes | None, bytes | None]  # the digests of a model's entry in each curated layer
Stamp = tuple[int, int, int, int]  # store.file_stamp


@functools.cache
def engine_fingerprint() -> bytes:
    """Changes with the code that decides what a build produces: a cache written by other code is not used."""
    digest = hashlib.sha256(f"{_SOURCE_FORMAT} {sys.version_info[:2]} {orjson.__version__}".encode())
    pydantic = find_spec("pydantic")  # its version file, not the package: reading a snapshot does not import it
    digest.update(Path(pydantic.origin if pydantic and pydantic.origin else "").with_name("version.py").read_bytes())
    for module in _ENGINE_MODULES:
        digest.update(Path(__file__).with_name(f"{module}.py").read_bytes())
    return digest.digest()


@dataclass
class LayerCut:
    """A layer file cut into its entries' bytes, each with a digest; an entry is parsed only when needed.

    `spans` says where each entry's bytes lie in the file, when it is laid out as `dumps` lays out a list; otherwise
    (a file formatted by hand) it was parsed whole, and each entry's digest is taken over a canonical encoding.
    """

    path: Path
    revision: str
    stamp: Stamp | None
    checked_at: int                     # when the bytes were last read (see _RACY_NS)
    spans: list[tuple[int, int]] | None
    digests: list[bytes]
    parsed: list[Any] | None = None     # the entries, when the file was parsed whole
    _raw: bytes | None = field(default=None, repr=False)
    _entries: dict[int, Any] = field(default_factory=dict, repr=False)
    _record: bytes | None = field(default=None, repr=False)  # as the source file holds it
    _problems: list[str] | None = field(default=None, repr=False)
    _found: dict[str, int] | None = field(default=None, repr=False)  # name -> index (of a discovered layer)
    _reads: int = field(default=0, repr=False)  # entries read one by one

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
        if self._raw is None and self._reads < _FEW_READS:  # a few entries of a file not read yet
            self._reads += 1
            with open(self.path, "rb") as handle:
                handle.seek(start)
                chunk = handle.read(end - start)
            if chunk_digest(chunk) != self.digests[index]:
                raise BadInput(f"{self.path} changed while it was being read; try again")
            return chunk
        return memoryview(self.raw)[start:end]  # type: ignore[arg-type]

    def entry(self, index: int) -> Any:
        if self.parsed is not None:
            return self.parsed[index]
        if index not in self._entries:
            entry = loads(self.chunk(index))
            refuse_deep_entry(self.path, index, entry, self.starts)
            self._entries[index] = entry
        return self._entries[index]

    def starts(self) -> list[int]:
        """The line each entry starts on."""
        raw = self.raw or b""
        if self.spans is None:
            return entry_lines(raw.decode("utf-8")) if raw else []
        return [raw.count(b"\n", 0, start) + 1 for start, _ in self.spans]

    def trusted(self, stamp: Stamp | None) -> bool:
        """The file still holds the bytes this cut was made from, by its stamp alone."""
        return stamp == self.stamp and (stamp is None or stamp[1] < self.checked_at - _RACY_NS)


def cut_bytes(path: Path, raw: bytes | None, stamp: Stamp | None = None,
              known: LayerCut | None = None) -> LayerCut:
    """Cut a layer file's bytes into entries; digests of entries whose bytes `known` already has are reused."""
    now = time.time_ns()
    revision = revision_of(raw)
    if known is not None and known.revision == revision:
        return LayerCut(path, revision, stamp, now, known.spans, known.digests, known.parsed, raw, known._entries,
                        _problems=known._problems, _found=known._found)
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


def _parsed_whole(path: Path, raw: bytes, stamp: Stamp | None, now: int) -> LayerCut:
    parsed = parse_layer(path, raw).entries  # malformed JSON raises here, naming file, line and column
    digests = [chunk_digest(marshal.dumps(entry, 2)) for entry in parsed]  # version 2: no back-references
    return LayerCut(path, revision_of(raw), stamp, now, None, digests, parsed, raw)


def read_cut(path: Path, known: LayerCut | None = None, trust: bool = True) -> LayerCut:
    """The layer file as it is now: `known` itself when its stamp vouches for it (and `trust`), else read and cut
    again."""
    stamp = file_stamp(path)
    if trust and known is not None and known.trusted(stamp):
        return known
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw, stamp = None, None
    return cut_bytes(path, raw, stamp, known)


@dataclass
class ModelBuild:
    """One model's part of the snapshot: its bytes (`chunk`, until published; then `at`, where they lie in the
    snapshot file), and its merge (None when read back from another process's source file: merged when asked)."""

    key: ModelKey
    chunk: bytes | None
    merged: MergedEntry | None
    at: tuple[int, int] | None = None


@dataclass
class FileState:
    """What the snapshot file holds, as last written or read and checked."""

    stamp: Stamp | None
    checked_at: int
    revision: str
    keys: list[ModelKey]                     # its models, in order
    spans: list[tuple[int, int]]             # where each model's bytes lie
    parts: list[Any] | None = None           # its bytes (bytes-like pieces), once read or written
    checkpoints: list[tuple[int, Any]] = field(default_factory=list)  # (offset, sha256 state after that many bytes)


@dataclass
class Built:
    """A merge of the layers as they were cut, ready to publish: the snapshot's bytes are `parts` (pieces of earlier
    snapshots' bytes and new models' bytes, joined only when `data` is asked for)."""

    names: list[str]
    models: list[ModelBuild]
    parts: list[Any]
    spans: list[tuple[int, int]]
    revision: str
    checkpoints: list[tuple[int, Any]]
    discovered: LayerCut
    curated: LayerCut
    profile: str | None
    places: dict[str, tuple[int | None, int | None, int | None]]  # name -> index in discovered, curated base, profile
    base: dict[str, int]                # name -> index of its curated base entry
    chosen: dict[str, int]              # name -> index of its entry for the profile

    @functools.cached_property
    def position(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def data(self) -> bytes:
        if len(self.parts) != 1 or type(self.parts[0]) is not bytes:
            self.parts = [b"".join(self.parts)]
        return self.parts[0]


class SnapshotBuilder:
    """Builds the snapshot of one registry folder for one profile, keeping what each build found for the next, in
    memory and (for the next process) in the source file. Thread-safe; callers that write hold the registry lock.

    The source file is one record: a JSON line saying what the snapshot was built from (read by the stale warning,
    whichever code or profile wrote it), then what the build found (a cache for this code and profile: losing or
    damaging it costs only time), checksummed."""

    def __init__(self, config_dir: Path, profile: str | None):
        self.source_path = Path(config_dir) / SOURCE_FILE
        self.snapshot_path = Path(config_dir) / SNAPSHOT_FILE
        self.profile = profile
        self._guard = threading.RLock()
        self._checks: dict[bytes, EntryCheck] = {}
        self._models: dict[ModelKey, ModelBuild] = {}
        self._cuts: dict[str, LayerCut] = {}
        self._last: Built | None = None
        self._file: FileState | None = None
        self._indexed: tuple[int, ...] | None = None  # what the source file holds (ids of the cuts and file state)
        self._index_read = False
        self._index_warned = False

    # ---- reading the layers --------------------------------------------------------------------------------
    def cut(self, path: Path, label: str, trust: bool = True) -> LayerCut:
        """The layer file as it is now (read again only if its stamp does not vouch for the last cut; always when not
        `trust`)."""
        with self._guard:
            self._read_index()
            cut = read_cut(path, self._cuts.get(label), trust)
            self._cuts[label] = cut
            return cut

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
            errors = self._problems(discovered, "discovered", discovered_checks, full) \
                + self._problems(curated, "curated", curated_checks, full)
            if errors:
                raise InvalidRegistry(errors)
            if discovered._found is None or full:
                discovered._found = {check.key[0]: i for i, check in enumerate(discovered_checks)}  # type: ignore
            found = discovered._found
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
            if not full and last is not None and last.discovered.revision == discovered.revision \
                    and last.base.keys() == base.keys() \
                    and last.chosen.keys() == chosen.keys():  # the same models: merge those whose entries changed
                names, places, models = last.names, dict(last.places), list(last.models)
                places.update((name, (found.get(name), index, chosen.get(name))) for name, index in base.items())
                places.update((name, (found.get(name), base.get(name), index)) for name, index in chosen.items())
                position = last.position
                for name in _changed(base, last.base, curated, last.curated) \
                        | _changed(chosen, last.chosen, curated, last.curated):
                    models[position[name]] = self._model(name, places[name], discovered, curated, full)
            else:
                names = sorted(found.keys() | base.keys() | chosen.keys())
                places = {name: (found.get(name), base.get(name), chosen.get(name)) for name in names}
                models = [self._model(name, places[name], discovered, curated, full) for name in names]
            file = None if full else self._file
            if file is not None and file.keys == [model.key for model in models] and self._file_parts() \
                    and file.parts is not None:
                parts, spans, revision, checkpoints = file.parts, file.spans, file.revision, file.checkpoints
            else:
                parts, spans, revision, checkpoints = _assemble(models, file)
            built = Built(names, models, parts, spans, revision, checkpoints, discovered, curated, self.profile,
                          places, base, chosen)
            self._models = {model.key: model for model in models}  # only this build's: nothing grows per edit
            live = set(discovered.digests) | set(curated.digests)
            self._checks = {d: c for d, c in self._checks.items() if d in live}
            self._last = built
            return built

    def problems(self, cut: LayerCut, label: str) -> list[str]:
        """One layer's problems (its entries' own, and names used twice)."""
        with self._guard:
            return self._problems(cut, label, self._checked(cut, False), False)

    @staticmethod
    def _problems(cut: LayerCut, label: str, checks: list[EntryCheck], full: bool) -> list[str]:
        if cut._problems is None or full:
            cut._problems = layer_problems(cut.path, label, checks, cut.starts)
        return cut._problems

    def entry_keys(self, cut: LayerCut) -> list[tuple[str | None, str | None]]:
        """(name, profile) of each entry, an invalid entry's too (so an edit can repair it); a file that is not
        JSON raises BadInput."""
        with self._guard:
            keys: list[tuple[str | None, str | None]] = []
            for index, check in enumerate(self._checked(cut, False)):
                if check.key is None:
                    entry = cut.entry(index)
                    name, profile = (entry.get("name"), entry.get("profile")) if type(entry) is dict else (None, None)
                    keys.append((name if type(name) is str else None, profile if type(profile) is str else None))
                else:
                    keys.append(check.key)
            return keys

    def file_revision(self) -> str | None:
        """The snapshot file's revision, when its stamp vouches that it holds what was last written or read."""
        with self._guard:
            file = self._file
            if file is None:
                return None
            now = file_stamp(self.snapshot_path)
            return file.revision if now is not None and now == file.stamp and now[1] < file.checked_at - _RACY_NS \
                else None

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
        if model is not None and model.chunk is None and not self._file_parts():
            model = None  # recorded in a snapshot file that no longer holds it
        if model is None:
            merged = self._merge(name, place, discovered, curated)
            model = ModelBuild(key, snapshot_chunk(merged.entry), merged)
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

    # ---- writing, and the source file for the stale warning and the next process ---------------------------
    def write(self, label: str, cut: LayerCut) -> None:
        """Write a layer file's new bytes, `cut.raw` (caller holds the registry lock), and keep the cut."""
        with self._guard:
            _write_vouched(cut.path, [cut.raw])
            cut.stamp, cut.checked_at = file_stamp(cut.path), time.time_ns()
            self._cuts[label] = cut

    def publish(self, built: Built) -> None:
        """Make the snapshot file hold `built` (written only when it holds something else), and write the source
        file (caller holds the registry lock)."""
        with self._guard:
            known = self.file_revision()
            if known != built.revision:
                stamp = file_stamp(self.snapshot_path)
                if known is not None or stamp is None or stamp[2] != built.size or (
                        self._indexed_revision(stamp) != built.revision  # what another process wrote, by its record
                        and self.snapshot_path.read_bytes() != built.data):
                    _write_vouched(self.snapshot_path, built.parts)
                if len(built.parts) > _MOST_PARTS:
                    built.data  # one buffer again, so old snapshots' bytes can go
                for model, span in zip(built.models, built.spans):
                    model.chunk, model.at = None, span
                self._file = FileState(file_stamp(self.snapshot_path), time.time_ns(), built.revision,
                                       [model.key for model in built.models], built.spans, built.parts,
                                       built.checkpoints)
            parts = (built.discovered, built.curated, self._file)
            if self._indexed != tuple(map(id, parts)):
                source = {"format": _SOURCE_FORMAT, "profile": self.profile, "snapshot": built.revision,
                          **{label: [cut.revision, cut.stamp] for label, cut in (("discovered", built.discovered),
                                                                                 ("curated", built.curated))}}
                record = {"engine": engine_fingerprint(), "discovered": self._layer_record(built.discovered),
                          "curated": self._layer_record(built.curated), "snapshot": _file_record(self._file)}
                data = marshal.dumps(record)
                try:
                    if self.source_path.is_dir() and not self.source_path.is_symlink():
                        raise IsADirectoryError(21, "Is a directory")
                    atomic_write(self.source_path, [orjson.dumps(source), b"\n", hashlib.sha256(data).digest(), data],
                                 sync=False)
                except StorageError as exc:  # a cache: the snapshot is written, the next process reads the layers
                    log.warning("modelreg: warning: %s (a cache; the next command reads the layers again)", exc)
                except IsADirectoryError:
                    log.warning("modelreg: warning: %s is a directory, not the snapshot's source record (a cache); "
                                "remove it to have the record back", self.source_path)
                if self._indexed is None:
                    for name in LEGACY_SOURCE_FILES:
                        try:
                            (self.source_path.parent / name).unlink(missing_ok=True)
                        except OSError:
                            pass  # a folder or a read-only file where an old record was: nothing reads it
                self._indexed = tuple(map(id, parts))

    def _layer_record(self, cut: LayerCut) -> bytes | None:
        """A layer's cut and its entries' identities, as the source file holds them (made once per cut)."""
        if cut.spans is None:
            return None
        if cut._record is None:
            checks = [self._checks[d] for d in cut.digests]
            cut._record = marshal.dumps((cut.path.name, cut.revision, cut.stamp, cut.checked_at,
                                         array("q", [n for span in cut.spans for n in span]).tobytes(),
                                         b"".join(cut.digests), [c.who for c in checks], [c.key for c in checks]))
        return cut._record

    def built_from(self) -> dict[str, Any] | None:
        """What the snapshot file was last built from, by the source file: {"profile", "snapshot" (its revision),
        "discovered" and "curated" (each [revision, stamp])}; None when there is no readable record."""
        try:
            with open(self.source_path, "rb") as handle:
                return _source_line(handle.readline())
        except OSError:
            return None

    def _index_record(self) -> dict[str, Any] | None:
        """What the last build found, from the source file, if this code wrote it for this profile."""
        try:
            line, _, data = self.source_path.read_bytes().partition(b"\n")
            source = _source_line(line)
            if source is None and not _another_format(line):
                raise ValueError("not a snapshot source record")
            if source is None or source["profile"] != self.profile:
                return None  # another version or profile wrote it: not damage
            if hashlib.sha256(data[32:]).digest() != data[:32]:
                raise ValueError("damaged")
            record = marshal.loads(data[32:])
            if type(record) is not dict:
                raise ValueError("not an index")
        except FileNotFoundError:
            return None
        except (OSError, EOFError, ValueError, TypeError) as exc:
            self._warn_index(exc)
            return None
        if record.get("engine") != engine_fingerprint():
            return None
        return record

    def _warn_index(self, exc: BaseException) -> None:
        if not self._index_warned:
            self._index_warned = True
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            log.warning("modelreg: warning: ignoring %s (%s): it is a cache of the last build; the layers are read "
                        "instead, and the next write replaces it", self.source_path, reason)

    def _indexed_revision(self, stamp: Stamp) -> str | None:
        """The snapshot file's revision as the source file records it, when the file's stamp vouches for the record."""
        record = self._index_record()
        try:
            recorded, checked_at, revision = marshal.loads(record["snapshot"])[:3]  # type: ignore[index]
        except (EOFError, ValueError, TypeError, KeyError, IndexError):
            return None
        return revision if recorded == stamp and stamp[1] < checked_at - _RACY_NS else None

    def _read_index(self) -> None:
        """Take what another process's last build found (once), if this code made it for this profile."""
        if self._index_read:
            return
        self._index_read = True
        record = self._index_record()
        if record is None:
            return
        try:
            cuts: dict[str, LayerCut] = {}
            checks: dict[bytes, EntryCheck] = {}
            for label in ("discovered", "curated"):
                if record[label] is None:
                    continue
                name, revision, stamp, checked_at, spans, digests, whos, keys = marshal.loads(record[label])
                cut_digests = _split(digests, _DIGEST_SIZE)
                cuts[label] = LayerCut(self.source_path.parent / name, revision, stamp, checked_at, _pairs(spans),
                                       cut_digests)
                checks.update((d, EntryCheck(who, key, ())) for d, who, key in zip(cut_digests, whos, keys))
            file = None
            if record["snapshot"] is not None:
                stamp, checked_at, revision, keys, spans = marshal.loads(record["snapshot"])
                file = FileState(stamp, checked_at, revision, keys, _pairs(spans))
        except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
            self._warn_index(exc)
            return
        self._cuts, self._checks, self._file = cuts, checks, file
        if file is not None:
            self._models = {key: ModelBuild(key, None, None, at) for key, at in zip(file.keys, file.spans)}

    def _file_parts(self) -> bool:
        """Make sure the bytes of the models recorded as in the snapshot file are at hand: read the file, if it still
        holds what was recorded; else forget those models. True when they are at hand."""
        file = self._file
        if file is None:
            return False
        if file.parts is not None:
            return True
        now = file_stamp(self.snapshot_path)
        try:
            data = self.snapshot_path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None and ((now == file.stamp and now[1] < file.checked_at - _RACY_NS)  # type: ignore[index]
                                 or revision_of(data) == file.revision):
            file.stamp, file.checked_at, file.parts = now, time.time_ns(), [data]
            return True
        self._models = {key: model for key, model in self._models.items() if model.chunk is not None}
        self._file = None
        return False


_MOST_PARTS = 64  # a snapshot kept in more pieces than this is joined into one buffer when published
_CHECKPOINT = 8 * 1024 * 1024  # bytes between kept hash states: an edit rehashes from the last one before it


def _assemble(models: list[ModelBuild], file: FileState | None) -> tuple[list[Any], list[tuple[int, int]], str,
                                                                          list[tuple[int, Any]]]:
    """The snapshot's bytes as pieces: runs of models the file already holds in a row are taken as one piece of it.
    Returns (parts, spans of the models, revision, checkpoints); hashing starts at the last checkpoint before the
    first byte that differs from the file."""
    if not models:
        data = list_bytes([])
        return [data], [], revision_of(data), []
    carried = file is not None and file.parts is not None
    pieces: list[Any] = [b"[\n"]
    spans = []
    run: list[int] | None = None
    pos = 2
    for index, model in enumerate(models):
        at = model.at if carried and model.chunk is None else None
        size = len(model.chunk) if at is None else at[1] - at[0]  # type: ignore[arg-type]
        spans.append((pos, pos + size))
        pos += size + 2
        if at is not None and run is not None and at[0] == run[1] + 2:
            run[1] = at[1]
            continue
        if run is not None:
            pieces.append(run)
            run = None
        if index:
            pieces.append(b",\n")
        if at is None:
            pieces.append(model.chunk)
        else:
            run = [at[0], at[1]]
    if run is not None:
        pieces.append(run)
    pieces.append(b"\n]\n")
    same = 2  # the bytes at the start that are the file's
    if carried and type(pieces[1]) is list and pieces[1][0] == 2:
        same = pieces[1][1]
    parts: list[Any] = []
    for piece in pieces:
        parts.extend(_slice(file.parts, piece[0], piece[1]) if type(piece) is list else [piece])  # type: ignore
    if not carried:
        parts = [b"".join(parts)]  # a build from nothing: one buffer, not a piece per model
    checkpoints = [c for c in file.checkpoints if c[0] <= same] if carried else []  # type: ignore[union-attr]
    revision = _hash(parts, checkpoints)
    return parts, spans, revision, checkpoints


def _changed(now: dict[str, int], before: dict[str, int], cut: LayerCut, earlier: LayerCut) -> set[str]:
    """Names whose entry (at `now[name]` in `cut`, `before[name]` in `earlier`) has other bytes."""
    digests, old = cut.digests, earlier.digests
    return {name for name, index in now.items() if digests[index] != old[before[name]]}


def _slice(parts: list[Any], start: int, end: int) -> list[memoryview]:
    """The bytes [start, end) of the file made of `parts`, as views."""
    out, offset = [], 0
    for part in parts:
        size = len(part)
        if offset + size > start and offset < end:
            out.append(memoryview(part)[max(start - offset, 0):min(end - offset, size)])
        offset += size
        if offset >= end:
            break
    return out


def _hash(parts: list[Any], checkpoints: list[tuple[int, Any]]) -> str:
    """sha256 of the parts' bytes, resumed from the last of `checkpoints` (kept states), to which it adds one every
    _CHECKPOINT bytes."""
    offset, state = checkpoints[-1] if checkpoints else (0, hashlib.sha256())
    digest = state.copy()
    position = 0
    mark = offset + _CHECKPOINT
    for part in parts:
        view = memoryview(part)
        size = len(view)
        start = max(offset - position, 0)
        while start < size:
            stop = min(size, start + mark - (position + start))
            digest.update(view[start:stop])
            start = stop
            if position + start == mark:
                checkpoints.append((mark, digest.copy()))
                mark += _CHECKPOINT
        position += size
    return digest.hexdigest()


def _source_line(line: bytes) -> dict[str, Any] | None:
    """The source file's first line, if it is one this code can read."""
    try:
        source = orjson.loads(line)
        if type(source) is dict and source.get("format") == _SOURCE_FORMAT:
            for label in ("discovered", "curated"):
                revision, stamp = source[label]
                source[label] = (revision, stamp and tuple(stamp))
            return source
    except (ValueError, TypeError, KeyError):
        pass
    return None


def _another_format(line: bytes) -> bool:
    """The first line is a source record of another format (another version of modelreg wrote it)."""
    try:
        source = orjson.loads(line)
    except ValueError:
        return False
    return type(source) is dict and "format" in source and source.get("format") != _SOURCE_FORMAT


def _file_record(file: FileState | None) -> bytes | None:
    if file is None:
        return None
    return marshal.dumps((file.stamp, file.checked_at, file.revision, file.keys,
                          array("q", [n for span in file.spans for n in span]).tobytes()))


def _pairs(flat: bytes) -> list[tuple[int, int]]:
    numbers = array("q", flat)
    return list(zip(numbers[::2], numbers[1::2]))


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _write_vouched(path: Path, parts: list[Any]) -> None:
    """Write a file whose stamp then vouches for its bytes at once: its modification time is set back beyond the
    racy window, so any later change to it (even within the same clock tick) gives it another stamp."""
    atomic_write(path, parts, mtime_ns=time.time_ns() - _RACY_NS - 1_000_000_000)
