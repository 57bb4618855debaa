"""A fast GGUF header reader: metadata and tensor infos, skipping large arrays (the vocabulary) without parsing them."""
from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from gguf import GGUFValueType

GGUF_MAGIC = b"GGUF"
# Arrays longer than this are skipped and only their length kept (tokens, merges, scores, token types).
ARRAY_KEEP_LIMIT = 64

_SCALAR: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"), GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"), GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"), GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"), GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"), GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
# Large string arrays (vocabularies, merges) recur across files: every quantization of a model has the same ones. Each
# one stepped over is kept as (count, first bytes) -> [(length in bytes, sha1)], so the next file holding the same
# array steps over it by one digest instead of reading every string.
STEPPED_OVER: dict[tuple[int, bytes], list[tuple[int, bytes]]] = {}
_STEPPED_OVER_MOST = 64
_SEEN_PREFIX = 256
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands (bad magic, truncated, unknown value type)."""


@dataclass
class GGUFTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]
    array_lengths: dict[str, int] = field(default_factory=dict)  # skipped arrays: key -> element count

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_value(self, suffix: str) -> Any:
        """`<architecture>.<suffix>`, e.g. arch_value("context_length")."""
        return self.metadata.get(f"{self.architecture}.{suffix}") if self.architecture else None


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path):
        self.buf, self.pos, self.size, self.path = buf, 0, len(buf), path

    def need(self, count: int) -> None:
        if self.pos + count > self.size:
            raise GGUFError(f"{self.path}: truncated GGUF header (needs {count} bytes at offset {self.pos}, "
                            f"file has {self.size}); re-download the file")

    def unpack(self, fmt: struct.Struct) -> Any:
        self.need(fmt.size)
        value = fmt.unpack_from(self.buf, self.pos)[0]
        self.pos += fmt.size
        return value

    def string(self) -> str:
        length = self.unpack(_U64)
        self.need(length)
        raw = self.buf[self.pos:self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Step over `count` length-prefixed strings: an array seen before (by its first bytes, then its digest) in
        one step, else string by string (the hot loop of a 150k-token vocabulary)."""
        buf, pos, unpack = self.buf, self.pos, _U64.unpack_from
        seen = (count, bytes(buf[pos:pos + _SEEN_PREFIX]))
        with memoryview(buf) as view:
            for length, digest in STEPPED_OVER.get(seen, ()):
                if pos + length <= self.size and hashlib.sha1(view[pos:pos + length]).digest() == digest:
                    self.pos = pos + length
                    return
            try:
                for _ in repeat(None, count):
                    pos += unpack(buf, pos)[0] + 8
            except struct.error:
                pos = self.size + 1
            if pos > self.size:
                self.pos = self.size
                self.need(1)
            if len(STEPPED_OVER) >= _STEPPED_OVER_MOST:
                STEPPED_OVER.pop(next(iter(STEPPED_OVER)))
            STEPPED_OVER.setdefault(seen, []).append((pos - self.pos, hashlib.sha1(view[self.pos:pos]).digest()))
        self.pos = pos

    def value(self, vtype: int, key: str, header: GGUFHeader) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            item_type = self.unpack(_U32)
            count = self.unpack(_U64)
            if count > ARRAY_KEEP_LIMIT:
                header.array_lengths[key] = count
                if item_type == GGUFValueType.STRING:
                    self.skip_strings(count)
                elif item_type in _SCALAR:
                    self.need(count * _SCALAR[item_type].size)
                    self.pos += count * _SCALAR[item_type].size
                else:
                    for _ in range(count):
                        self.value(item_type, key, header)
                return None
            return [self.value(item_type, key, header) for _ in range(count)]
        fmt = _SCALAR.get(vtype)
        if fmt is None:
            raise GGUFError(f"{self.path}: unknown GGUF value type {vtype} for key {key!r} at offset {self.pos}")
        return self.unpack(fmt)


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Read metadata and tensor infos of a GGUF file (v2/v3) without loading weights or the vocabulary."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head != GGUF_MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (magic {head!r}, expected b'GGUF')")
        try:
            buf: mmap.mmap | bytes = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty or special file cannot be mapped
            buf = head + handle.read()
    try:
        return _parse(_Cursor(buf, path))
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _parse(cur: _Cursor) -> GGUFHeader:
    cur.pos = 4
    version = cur.unpack(_U32)
    if version not in (2, 3):
        detail = "big-endian files are not supported" if version > 0xFFFF else "only versions 2 and 3 are supported"
        raise GGUFError(f"{cur.path}: GGUF version {version}: {detail}")
    n_tensors = cur.unpack(_U64)
    n_kv = cur.unpack(_U64)
    header = GGUFHeader(version, {}, [])
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.unpack(_U32)
        value = cur.value(vtype, key, header)
        if value is not None:
            header.metadata[key] = value
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack(_U32)
        if n_dims > 8:
            raise GGUFError(f"{cur.path}: tensor {name!r} has {n_dims} dimensions; the header is corrupt")
        shape = tuple(cur.unpack(_U64) for _ in range(n_dims))
        ggml_type = cur.unpack(_U32)
        cur.unpack(_U64)  # data offset
        header.tensors.append(GGUFTensor(name, shape, ggml_type))
    return header
