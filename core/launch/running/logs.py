"""Backend logs: where they live, their tail, and following what a starting backend appends."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from modelreg.settings import Settings


def safe_name(name: str) -> str:
    """A file-name-safe form of a model name; a short hash keeps names that differ only in odd characters apart."""
    cleaned = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("._") or "model"
    if cleaned == name:
        return name
    return f"{cleaned[:80]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def resolve_log_dir(config_dir: str | os.PathLike, settings: Settings) -> Path:
    """settings.log_dir, relative to the config folder's parent unless absolute."""
    log_dir = Path(settings.log_dir).expanduser()
    return log_dir if log_dir.is_absolute() else Path(config_dir).resolve().parent / log_dir


def read_tail(path: str | os.PathLike | None, lines: int = 40, max_bytes: int = 65536) -> str:
    """The last lines of a log file ('' when it does not exist)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class LogFollower:
    """Reads what was appended to a log since the last read (for streaming a log while a backend starts). A log that
    a restart rotated (another file at the path, told by its inode, or a shorter one) is read from its start."""

    def __init__(self, path: str | os.PathLike, offset: int = 0):
        self.path, self.offset = Path(path), offset
        self._partial = b""
        try:
            self._inode: int | None = self.path.stat().st_ino
        except FileNotFoundError:
            self._inode = None

    @classmethod
    def at_end(cls, path: str | os.PathLike) -> "LogFollower":
        """Follows what is written from now on."""
        try:
            return cls(path, os.stat(path).st_size)
        except FileNotFoundError:
            return cls(path)

    @property
    def partial(self) -> str:
        """The last line, while it is still being written (a progress bar, a line of dots)."""
        return self._partial.decode("utf-8", "replace")

    def read_new(self) -> str:
        """Complete new lines since the last call ('' when none)."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_ino != self._inode or stat.st_size < self.offset:  # rotated by a restart: a new log began
                    self.offset, self._partial = 0, b""
                    self._inode = stat.st_ino
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return ""
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut].decode("utf-8", "replace")
