"""Atomic, locked reads and writes of the registry's JSON files, and the curated history."""
from __future__ import annotations

import copy
import functools
import gc
import glob
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import orjson

from modelreg.errors import BadInput, NotAJSONNumber, StorageError, finite_json_float, refuse_json_constant

if TYPE_CHECKING:
    from filelock import FileLock

DISCOVERED_FILE = "model_registry.discovered.json"
CURATED_FILE = "model_registry.curated.json"
SNAPSHOT_FILE = "model_registry.json"
LOCK_FILE = ".registry.lock"
HISTORY_DIR = ".history"
# What the snapshot was built from (the layers' revisions and stamps, the profile) for the stale warning, then what
# that build found, for the next process's incremental build.
SOURCE_FILE = ".snapshot-source"
LEGACY_SOURCE_FILES = (".model_registry.source.json", ".snapshot-index")  # its two records before: removed on a build
SETTINGS_FILE = "settings.json"
PENDING_STUBS_FILE = ".pending-stubs.json"  # the stubs a scan owes: written before its discovered write, then removed
# Files only written under the registry lock: a temp file of theirs seen while holding the lock is a killed writer's.
LOCKED_FILES = (DISCOVERED_FILE, CURATED_FILE, SNAPSHOT_FILE, SOURCE_FILE, SETTINGS_FILE, PENDING_STUBS_FILE)
# A temp file of another file (a cache, a state file: written without the lock) unchanged for this long is a killed
# writer's: a live write takes milliseconds.
STALE_TEMP_SECONDS = 60.0
EMPTY_REVISION = "0" * 64
MAX_DEPTH = 64  # how deep objects and lists may nest in an entry (real entries nest 5 levels)
T = TypeVar("T")


def dumps(data: Any) -> bytes:
    """How the layer files are written: the upstream files' own format, so an edit changes only what it edits."""
    try:
        return (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    except ValueError as exc:  # NaN or Infinity: not JSON, and every other reader of the file would fail on it
        raise BadInput(f"{exc}; write a number or null") from None


def layer_chunk(entry: Any) -> bytes:
    """One entry as `dumps` writes it inside the list (indented one level, no separator)."""
    return dumps([entry])[2:-3]


def snapshot_chunk(entry: Any) -> bytes:
    """One merged entry as the snapshot holds it: sorted keys, so its bytes do not depend on which layer a value
    lives in."""
    try:
        return orjson.dumps([entry], option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)[2:-2]
    except TypeError:  # integers beyond 64 bits: orjson refuses them, the standard library does not
        return json.dumps([entry], indent=2, ensure_ascii=False, sort_keys=True)[2:-2].encode("utf-8")


def list_bytes(chunks: list[Any]) -> bytes:
    """A file of entries from their chunks (bytes-like), laid out as `dumps` lays out a list (one copy of the bytes:
    they can be a hundred megabytes)."""
    if not chunks:
        return b"[]\n"
    parts = list(chunks)
    parts[0] = b"[\n" + bytes(parts[0])
    parts[-1] = bytes(parts[-1]) + b"\n]\n"
    return b",\n".join(parts)


def dumps_snapshot(entries: list[Any]) -> bytes:
    """The merged snapshot: entries in the given order, each as snapshot_chunk writes it."""
    return list_bytes([snapshot_chunk(e) for e in entries])


_ENTRY_BREAK = b"\n  },\n  {"  # between two entries of a list laid out as `dumps` lays it out


def entry_spans(raw: bytes) -> list[tuple[int, int]] | None:
    """Where each entry of a layer file starts and ends, if the file is laid out as `dumps` lays out a list of
    objects (each from a line `  {` to a line `  }`); None otherwise. Strings hold no raw newline, so these lines are
    never inside a value; whoever uses the spans still parses each one as an object, which proves the cut."""
    if raw.rstrip() == b"[]":
        return []
    end = raw.rfind(b"\n  }\n]")
    if not raw.startswith(b"[\n  {") or end < 0 or raw[end + 6:].strip():
        return None
    spans, start = [], 2
    while True:
        cut = raw.find(_ENTRY_BREAK, start, end + 1)
        if cut < 0:
            spans.append((start, end + 4))
            return spans
        spans.append((start, cut + 4))
        start = cut + 6


def chunk_digest(chunk: Any) -> bytes:
    """What identifies an entry's bytes in caches and history (128 bits of sha256)."""
    return hashlib.sha256(chunk).digest()[:16]


def file_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """(inode, mtime ns, size, ctime ns): changes whenever the file is replaced or rewritten (an atomic write gives it
    a new inode). The ctime is there because the mtime can be set back (`touch -d`) after an edit that keeps the size;
    the ctime cannot be set. None if absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size, stat.st_ctime_ns


def revision_of(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data is not None else EMPTY_REVISION


@dataclass(frozen=True)
class LayerFile:
    """One layer file as read: its entries, exact bytes and revision (sha256 of the bytes)."""

    path: Path
    entries: list[dict]
    raw: bytes | None
    revision: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "revision", revision_of(self.raw))

    @property
    def exists(self) -> bool:
        return self.raw is not None


def read_layer(path: Path, check_nesting: bool = True) -> LayerFile:
    """Read a JSON list of entries; malformed JSON raises BadInput naming file, line and column, and so does an entry
    nesting deeper than MAX_DEPTH (which would overflow the stack of whatever walks it next)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LayerFile(path, [], None)
    except OSError as exc:
        raise StorageError(path, exc, "read") from exc
    return parse_layer(path, raw, check_nesting)


def parse_layer(path: Path, raw: bytes, check_nesting: bool = True) -> LayerFile:
    """A layer file's bytes as read_layer reads them."""
    try:
        data = loads(raw)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); fix or restore the file") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; fix the file "
            "(or `modelreg restore ID` an earlier curated version); nothing was written") from exc
    if not isinstance(data, list):
        raise BadInput(f"{path}:1:1: expected a JSON list of model entries, found {type(data).__name__}")
    if check_nesting:
        for index, entry in enumerate(data):
            refuse_deep_entry(path, index, entry, lambda: entry_lines(raw.decode("utf-8")))
    return LayerFile(path, data, raw)


def refuse_deep_entry(path: Path, index: int, entry: Any, starts: Callable[[], list[int]]) -> None:
    """BadInput naming file, line and field when the `index`th entry nests deeper than MAX_DEPTH (which would
    overflow the stack of whatever walks it next). `starts()`: the line each entry starts on."""
    deep = nesting_depth_exceeded(entry) if type(entry) is dict or type(entry) is list else None
    if deep is not None:
        name = entry.get("name") if isinstance(entry, dict) else None
        who = f"entry {name!r}" if isinstance(name, str) else f"entry #{index + 1}"
        raise BadInput(f"{path}:{starts()[index]}: {who}: field {deep!r}: objects or lists nest deeper than "
                       f"{MAX_DEPTH} levels; flatten it (nothing was written)")


def layer_elements(text: str, decoder: json.JSONDecoder) -> Iterator[tuple[int, Any]]:
    """(line, value) of each top-level list element."""
    idx = text.index("[") + 1
    line, counted = 1, 0
    while True:
        while idx < len(text) and text[idx] in " \t\r\n,":
            idx += 1
        if idx >= len(text) or text[idx] == "]":
            return
        line += text.count("\n", counted, idx)  # from the last element on: counting from the top is quadratic
        counted = idx
        value, idx = decoder.raw_decode(text, idx)
        yield line, value


def entry_lines(text: str) -> list[int]:
    """Line number where each top-level list element starts (computed only when an error needs it)."""
    return [line for line, _ in layer_elements(text, json.JSONDecoder())]


def without_gc(func: Callable[..., T]) -> Callable[..., T]:
    """Run without the cyclic garbage collector: parsing and merging a large registry allocates millions of
    acyclic objects, and the collector's repeated passes over them cost more than the work itself."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper


@without_gc
def loads(raw: Any) -> Any:
    """Parse JSON bytes: orjson; where it refuses, the standard library's verdict: its message, or the value (integers
    beyond 64 bits). NaN and Infinity, which the standard library would accept, are refused: they are not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as fast:
        try:
            return json.loads(bytes(raw), parse_constant=refuse_json_constant, parse_float=finite_json_float)
        except (NotAJSONNumber, RecursionError) as exc:
            why = (f"nested deeper than {MAX_DEPTH} levels" if isinstance(exc, RecursionError)
                   else f"{exc} is not a JSON number; write a number or null")
            raise json.JSONDecodeError(why, fast.doc, fast.pos) from None


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data: through orjson, several times faster than copy.deepcopy."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # integers beyond 64 bits
        return copy.deepcopy(value)


def nesting_depth_exceeded(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The dotted path where `value` nests objects or lists deeper than `limit` levels, else None (no recursion:
    the point is to catch what would overflow Python's stack)."""
    try:  # fewer brackets than the limit in its JSON: it cannot nest that deep (told in C, without the walk)
        text = orjson.dumps(value)
        if text.count(b"{") + text.count(b"[") < limit:
            return None
    except TypeError:  # integers beyond 64 bits, or nesting beyond orjson's own limit: walk it
        pass
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, child in items:
            kind = type(child)
            if kind is dict or kind is list:
                if depth >= limit:
                    parts = f"{path}{key}".split(".")
                    return ".".join(parts if len(parts) < 8 else [*parts[:3], "...", *parts[-2:]])
                stack.append((child, depth + 1, f"{path}{key}."))
    return None


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, before any thread of ours runs
    os.umask(umask)
    return umask


_NEW_FILE_MODE = 0o666 & ~_read_umask()


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return _NEW_FILE_MODE


def user_cache_dir() -> Path:
    """modelreg's per-user cache ($MODELREG_CACHE, else $XDG_CACHE_HOME/modelreg, else ~/.cache/modelreg): outside
    any registry folder; .ci/backends.sh installs the tests' real backends there too."""
    if os.environ.get("MODELREG_CACHE"):
        return Path(os.environ["MODELREG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelreg"


def atomic_write(path: Path, data: bytes | list[Any], sync: bool = True, mtime_ns: int | None = None) -> None:
    """Write via a temp file in the same folder, fsync, rename, fsync the folder: readers see old or new, never half.

    A symlink is written through (its target is replaced, the link stays). An OS refusal (read-only or full disk,
    permissions, file-size limit) raises StorageError with the old file untouched. `sync=False` leaves out the
    fsyncs, for a cache that is rebuilt when lost: after a crash it may be lost or damaged (whoever reads it checks).
    `data` may be a list of bytes-like pieces; `mtime_ns`: the modification time the file gets."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600; keep the file's mode, else the umask's default
        with os.fdopen(fd, "wb") as handle:
            handle.writelines(data if isinstance(data, list) else [data])
            handle.flush()
            if mtime_ns is not None:
                os.utime(handle.fileno(), ns=(time.time_ns(), mtime_ns))
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        _remove_stale_temp_files(path)
        if sync:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise StorageError(path, exc, "write") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _remove_stale_temp_files(path: Path) -> None:
    """Delete the temp files of `path` that killed writers left (by their ctime, which a write's utime does not set
    back)."""
    now = time.time()
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - leftover.stat().st_ctime > STALE_TEMP_SECONDS:
                leftover.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def remove_leftover_temp_files(config_dir: Path) -> list[Path]:
    """Delete the temp files killed writers left beside the files written under the lock (caller holds it)."""
    folder = Path(config_dir)
    leftovers = [p for name in LOCKED_FILES for p in folder.glob(f".{name}.*.tmp")]
    leftovers += (folder / HISTORY_DIR).glob(".*.tmp")
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


_locks: dict[tuple[int, Path], "FileLock"] = {}  # per process: a lock object must not cross a fork


@functools.cache
def _lock_class() -> type["FileLock"]:
    from filelock import FileLock  # loads asyncio; commands that only read never pay for it

    class RegistryLock(FileLock):
        """Whoever takes the lock first removes the temp files a killed writer left (no writer is mid-write then);
        an OS refusal to create the lock file is a StorageError."""

        def acquire(self, *args: Any, **kwargs: Any) -> Any:
            try:
                proxy = super().acquire(*args, **kwargs)
            except TimeoutError as exc:  # filelock's Timeout
                raise BadInput(f"another modelreg process has held {self.lock_file} for {self.timeout:.0f} s; "
                               "nothing was changed: retry when it has finished") from exc
            except OSError as exc:
                raise StorageError(self.lock_file, exc, "lock") from exc
            if self.lock_counter == 1:
                remove_leftover_temp_files(Path(self.lock_file).parent)
            return proxy

    return RegistryLock


def registry_lock(config_dir: Path) -> "FileLock":
    """The cross-process lock every registry write holds (re-entrant within a thread)."""
    key = (os.getpid(), (Path(config_dir) / LOCK_FILE).resolve())
    if key not in _locks:
        _locks[key] = _lock_class()(str(key[1]), timeout=60)
    return _locks[key]

