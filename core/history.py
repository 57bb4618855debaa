"""Earlier versions of the curated file, stored once per entry (compressed), bounded by count and by total size."""
from __future__ import annotations

import base64
import json
import os
import zlib
from array import array
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from modelreg.errors import BadInput, StorageError
from modelreg.store import HISTORY_DIR, atomic_write, chunk_digest, entry_spans, revision_of

# A version is stored as a manifest `<id>.json` (a header line, then a line listing its entries' digests) and the
# entries no kept version had yet, compressed in a pack `<id>.pack` (a header line of digest -> offset and length,
# then the zlib-compressed bytes). A pack stays while a kept version lists it. Versions the old format kept whole
# (one `<id>.json` holding the text) are still listed, restored and pruned.
_SEPARATOR = b",\n"  # between two entries' bytes (see store.entry_spans)
_DIGEST_SIZE = 16
_HEADER_KEYS = ("id", "saved_at", "reason", "revision")
_FEW = 16  # this many entries new to the newest version are stored again rather than looked for in every pack


@dataclass(frozen=True)
class HistoryItem:
    id: str
    saved_at: str
    reason: str
    revision: str
    damage: str | None = None  # why it cannot be restored, naming the file (when checked)


@dataclass
class _Manifest:
    path: Path
    header: dict
    size: int

    @property
    def packs(self) -> list[str]:
        return self.header.get("packs", [])


class CuratedHistory:
    """Earlier versions of the curated file under `<config-dir>/.history/`: the newest `limit`, within `max_bytes`
    on disk (the newest is kept whatever its size)."""

    def __init__(self, config_dir: Path, limit: int = 50, max_bytes: int = 256 * 1024 * 1024):
        self.folder = Path(config_dir) / HISTORY_DIR
        self.limit = limit
        self.max_bytes = max_bytes

    def keep(self, raw: bytes, reason: str, spans: list[tuple[int, int]] | None = None,
             digests: list[bytes] | None = None, revision: str | None = None) -> HistoryItem:
        """Keep `raw` (caller holds the registry lock). `spans`, `digests`, `revision`: its entries and revision,
        when already known."""
        now = datetime.now(timezone.utc)
        revision = revision or revision_of(raw)
        item = HistoryItem(f"{now:%Y%m%dT%H%M%S%f}-{revision[:8]}", now.isoformat(timespec="seconds"), reason, revision)
        if spans is None:
            spans = entry_spans(raw)
            digests = None
        if spans is None or not spans:  # not laid out as entries: the whole file is one piece
            spans = [(0, len(raw))]
            digests = None
        view = memoryview(raw)
        if digests is None:
            digests = [chunk_digest(view[a:b]) for a, b in spans]
        head, tail = raw[:spans[0][0]], raw[spans[-1][1]:]
        stored = self._stored(self._manifests()[:1])
        unknown = sum(1 for digest in digests if digest not in stored)
        if unknown > _FEW:  # many entries the newest version lacks (a restore?): look for them in every pack
            stored = {**self._packed(), **stored}
        packs: list[str] = []
        where = array("H")
        fresh: dict[bytes, tuple[int, int]] = {}
        for digest, span in zip(digests, spans):
            pack = stored.get(digest)
            if pack is None:
                fresh[digest] = span
                pack = stored[digest] = item.id
            if pack not in packs:
                packs.append(pack)
            where.append(packs.index(pack))
        if fresh:
            self._write_pack(item.id, view, fresh)
        header = {**item.__dict__, "size": len(raw), "head": _b64(head), "tail": _b64(tail), "packs": packs}
        body = {"chunks": _b64(b"".join(digests)), "where": _b64(where.tobytes())}
        atomic_write(self.folder / f"{item.id}.json",
                     json.dumps(header).encode() + b"\n" + json.dumps(body).encode() + b"\n")
        self._prune()
        return item

    def items(self, verify: bool = False) -> list[HistoryItem]:
        """The kept versions, newest first; a damaged manifest is listed by its id with what is wrong. `verify`: also
        assemble each version from its packs, and say which cannot be restored and why."""
        packs: dict[str, dict[bytes, bytes] | str] = {}
        items = []
        for manifest in self._manifests(damaged=True):
            if isinstance(manifest, str):  # the damage, naming the file
                items.append(HistoryItem(Path(manifest.split(": ", 1)[0]).stem, "", "", "", manifest))
                continue
            item = HistoryItem(*(manifest.header[k] for k in _HEADER_KEYS))
            if verify:
                try:
                    self._assemble(manifest, packs)
                except BadInput as exc:
                    item = replace(item, damage=str(exc))
            items.append(item)
        return items

    def raw(self, item_id: str) -> bytes:
        path = self.folder / f"{item_id}.json"
        if not path.is_file() or path.parent != self.folder:
            known = ", ".join(i.id for i in self.items()[:5]) or "none"
            raise BadInput(f"no history item {item_id!r} (newest: {known}); see `modelreg history`")
        return self._assemble(_read_manifest(path), {})

    def _assemble(self, manifest: _Manifest, packs: dict[str, dict[bytes, bytes] | str]) -> bytes:
        """A version's bytes from its manifest and the packs it lists (read once into `packs`); BadInput naming the
        file that is damaged when one of its entries cannot be had."""
        header, path = manifest.header, manifest.path
        item_id = header["id"]
        if "text" in header:  # kept whole by the old format
            raw = header["text"].encode("utf-8")
        else:
            try:
                digests, where = _entry_list(path)
                names = [header["packs"][w] for w in where]
            except (ValueError, IndexError, TypeError):
                raise BadInput(f"{path}: not a curated history record (edited or damaged by hand?); move it out of "
                               "the way") from None
            chunks = []
            for index, name in enumerate(names):
                if name not in packs:
                    packs[name] = self._read_pack(name)
                entries = packs[name]
                digest = digests[index * _DIGEST_SIZE:(index + 1) * _DIGEST_SIZE]
                chunk = None if isinstance(entries, str) else entries.get(digest)
                if chunk is None:
                    why = entries if isinstance(entries, str) else "damaged: it lacks an entry this version needs"
                    raise BadInput(f"history item {item_id!r} cannot be restored: {self.folder / name}.pack is {why}; "
                                   "pick another")
                chunks.append(chunk)
            raw = base64.b64decode(header["head"]) + _SEPARATOR.join(chunks) + base64.b64decode(header["tail"])
        if revision_of(raw) != header["revision"]:
            raise BadInput(f"history item {item_id!r} is damaged ({path}: its bytes do not match its revision); pick "
                           "another")
        return raw

    # ---- storage -------------------------------------------------------------------------------------------
    def _manifests(self, damaged: bool = False) -> list:
        """The kept versions, newest first (only each manifest's header line is read); a damaged manifest is passed
        over, or with `damaged` listed as the text saying what is wrong with which file."""
        if not self.folder.is_dir():
            return []
        manifests: list = []
        for path in sorted(self.folder.glob("*.json"), reverse=True):
            try:
                manifests.append(_read_manifest(path))
            except BadInput as exc:
                if damaged:
                    manifests.append(str(exc))
        return manifests

    def _stored(self, manifests: list[_Manifest]) -> dict[bytes, str]:
        """digest -> pack of every entry these versions list (a damaged list counts as none)."""
        stored = {}
        for manifest in manifests:
            if "text" in manifest.header:
                continue
            try:
                digests, where = _entry_list(manifest.path)
            except ValueError:
                continue
            packs = manifest.packs
            for i, w in enumerate(where):
                stored[digests[i * _DIGEST_SIZE:(i + 1) * _DIGEST_SIZE]] = packs[w]
        return stored

    def _packed(self) -> dict[bytes, str]:
        """digest -> pack of every stored entry."""
        packed = {}
        for path in self.folder.glob("*.pack") if self.folder.is_dir() else ():
            try:
                with open(path, "rb") as handle:
                    packed.update(dict.fromkeys(map(bytes.fromhex, json.loads(handle.readline())), path.stem))
            except (OSError, ValueError, TypeError):
                continue  # a damaged pack: its entries are stored again
        return packed

    def _write_pack(self, name: str, view: memoryview, chunks: dict[bytes, tuple[int, int]]) -> None:
        index, data, offset = {}, [], 0
        for digest, (start, end) in chunks.items():
            index[digest.hex()] = [offset, end - start]
            data.append(view[start:end])
            offset += end - start
        atomic_write(self.folder / f"{name}.pack",
                     json.dumps(index).encode() + b"\n" + zlib.compress(b"".join(data), 1))

    def _read_pack(self, name: str) -> dict[bytes, bytes] | str:
        """A pack's entries whose bytes match their digests: a truncated or damaged pack gives those before the
        damage. What is wrong, when none can be had."""
        path = self.folder / f"{name}.pack"
        try:
            raw = path.read_bytes()
            cut = raw.index(b"\n")
            index = json.loads(raw[:cut])
            data = _inflate(raw[cut + 1:])
            entries = {}
            for hexdigest, (offset, size) in index.items():
                digest, chunk = bytes.fromhex(hexdigest), data[offset:offset + size]
                if len(chunk) == size and chunk_digest(chunk) == digest:
                    entries[digest] = chunk
            return entries
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        except (ValueError, TypeError, AttributeError):
            return "damaged: its index line is not one"

    def _prune(self) -> None:
        """Drop the oldest versions beyond `limit` or beyond `max_bytes`, then the packs no kept version lists."""
        manifests = self._manifests()
        pack_sizes = {p.stem: p.stat().st_size for p in self.folder.glob("*.pack")}
        kept: list[_Manifest] = []
        live: set[str] = set()
        total = 0
        for manifest in manifests:
            added = set(manifest.packs) - live
            size = manifest.size + sum(pack_sizes.get(p, 0) for p in added)
            if kept and (len(kept) >= self.limit or total + size > self.max_bytes):
                break
            kept.append(manifest)
            live |= added
            total += size
        for manifest in manifests[len(kept):]:
            manifest.path.unlink(missing_ok=True)
        for pack in pack_sizes.keys() - live:
            (self.folder / f"{pack}.pack").unlink(missing_ok=True)


def _read_manifest(path: Path) -> _Manifest:
    """A version's manifest, its header line only; one that is not (edited or damaged by hand) is BadInput."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline()
            size = os.fstat(handle.fileno()).st_size
            try:
                header = json.loads(first)
            except ValueError:  # the old format: one indented record holding the whole text
                header = json.loads(first + handle.read())
    except OSError as exc:
        raise StorageError(path, exc, "read") from exc
    except ValueError:
        header = None
    whole = isinstance(header, dict) and isinstance(header.get("text"), str)
    if not (isinstance(header, dict) and all(isinstance(header.get(k), str) for k in _HEADER_KEYS)
            and (whole or isinstance(header.get("packs"), list))):
        raise BadInput(f"{path}: not a curated history record (edited or damaged by hand?); move it out of the way")
    return _Manifest(path, header, size)


def _entry_list(path: Path) -> tuple[bytes, array]:
    """A manifest's second line: its entries' digests (joined) and, per entry, which of its packs holds it;
    ValueError when damaged."""
    try:
        body = json.loads(path.read_bytes().split(b"\n")[1])
        return base64.b64decode(body["chunks"]), array("H", base64.b64decode(body["where"]))
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _inflate(data: bytes) -> bytes:
    """zlib-decompressed bytes, as many as come before a truncation or damage."""
    inflater, out = zlib.decompressobj(), []
    for start in range(0, len(data), 1 << 16):
        try:
            out.append(inflater.decompress(data[start:start + (1 << 16)]))
        except zlib.error:
            break
    return b"".join(out)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
