"""Atomic, locked reads and writes of the registry's JSON files, and the curated history."""
from __future__ import annotations

import functools
import gc
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import orjson

from modelreg.errors import BadInput

if TYPE_CHECKING:
    from filelock import FileLock

DISCOVERED_FILE = "model_registry.discovered.json"
CURATED_FILE = "model_registry.curated.json"
SNAPSHOT_FILE = "model_registry.json"
LOCK_FILE = ".registry.lock"
HISTORY_DIR = ".history"
EMPTY_REVISION = "0" * 64
T = TypeVar("T")


def dumps(data: Any) -> bytes:
    """How the layer files are written: the upstream files' own format, so an edit changes only what it edits."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def dumps_snapshot(data: Any) -> bytes:
    """The merged snapshot: sorted keys, so its bytes do not depend on which layer a value lives in."""
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    except TypeError:  # integers beyond 64 bits: orjson refuses them, the standard library does not
        return (json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """Changes whenever the file is replaced or rewritten (an atomic write gives it a new inode); None if absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


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


def read_layer(path: Path) -> LayerFile:
    """Read a JSON list of entries; malformed JSON raises BadInput naming file, line and column."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LayerFile(path, [], None)
    try:
        data = _loads(raw)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); fix or restore the file") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; fix the file "
            "(or `modelreg restore ID` an earlier curated version); nothing was written") from exc
    if not isinstance(data, list):
        raise BadInput(f"{path}:1:1: expected a JSON list of model entries, found {type(data).__name__}")
    return LayerFile(path, data, raw)


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
def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # the standard library's message (and NaN/Infinity, which it accepts)


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, rename, fsync the folder: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600; keep the file's mode, else the umask's default
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_locks: dict[Path, "FileLock"] = {}


def registry_lock(config_dir: Path) -> "FileLock":
    """The cross-process lock every registry write holds (re-entrant within a thread)."""
    from filelock import FileLock  # loads asyncio; commands that only read never pay for it

    path = (Path(config_dir) / LOCK_FILE).resolve()
    if path not in _locks:
        path.parent.mkdir(parents=True, exist_ok=True)
        _locks[path] = FileLock(str(path), timeout=60)
    return _locks[path]


@dataclass(frozen=True)
class HistoryItem:
    id: str
    saved_at: str
    reason: str
    revision: str


class CuratedHistory:
    """Earlier versions of the curated file under `<config-dir>/.history/`, newest `limit` kept."""

    def __init__(self, config_dir: Path, limit: int = 50):
        self.folder = Path(config_dir) / HISTORY_DIR
        self.limit = limit

    def keep(self, raw: bytes, reason: str) -> HistoryItem:
        now = datetime.now(timezone.utc)
        revision = revision_of(raw)
        item = HistoryItem(f"{now:%Y%m%dT%H%M%S%f}-{revision[:8]}", now.isoformat(timespec="seconds"), reason, revision)
        record = {**item.__dict__, "text": raw.decode("utf-8")}
        atomic_write(self.folder / f"{item.id}.json", dumps(record))
        for old in self._files()[self.limit:]:
            old.unlink(missing_ok=True)
        return item

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.json"), reverse=True)

    def items(self) -> list[HistoryItem]:
        out = []
        for path in self._files():
            record = json.loads(path.read_bytes())
            out.append(HistoryItem(record["id"], record["saved_at"], record["reason"], record["revision"]))
        return out

    def raw(self, item_id: str) -> bytes:
        path = self.folder / f"{item_id}.json"
        if not path.is_file() or path.parent != self.folder:
            known = ", ".join(i.id for i in self.items()[:5]) or "none"
            raise BadInput(f"no history item {item_id!r} (newest: {known}); see `modelreg history`")
        return json.loads(path.read_bytes())["text"].encode("utf-8")
