"""Progress and cancellation of one download, shared by the terminal bar, the GUI and the download thread."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from modelreg.errors import RegistryError
from modelreg.jobs import JobCancelled


class DownloadError(RegistryError):
    """A download that could not finish; the message says why and what to do (the files fetched so far are kept)."""


class DownloadCancelled(DownloadError, JobCancelled):
    """The user cancelled; the finished files are kept and the next run resumes."""


@dataclass
class DownloadProgress:
    """Live state of one download, written by the download thread and read by a terminal bar or a GUI poller.

    `listeners` are called (with this object) on every change; `cancel()` stops the download at the next chunk.
    """

    phase: str = "waiting"  # analysing, downloading, verifying, registering, done, failed, cancelled
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    message: str = ""
    listeners: list[Callable[["DownloadProgress"], None]] = field(default_factory=list, repr=False)
    should_cancel: Callable[[], bool] | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() or bool(self.should_cancel and self.should_cancel())

    def cancel(self) -> None:
        self._cancel.set()

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise DownloadCancelled("download cancelled; the files finished so far are kept and running the same "
                                    "download again resumes")

    def update(self, **changes: Any) -> None:
        with self._guard:
            for key, value in changes.items():
                setattr(self, key, value)
        self._notify()

    def add_bytes(self, n: int) -> None:
        with self._guard:
            self.bytes_done += n
        self._notify()

    def snapshot(self) -> dict[str, Any]:
        with self._guard:
            return {"phase": self.phase, "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
                    "files_done": self.files_done, "files_total": self.files_total, "message": self.message,
                    "fraction": self.fraction}

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener(self)


