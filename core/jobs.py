"""Background jobs (scans, launch tests, downloads): threads with progress, a log tail, a result and cancel."""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class JobCancelled(Exception):
    """Raised by `Job.check_cancelled()` inside a job that was asked to stop."""


@dataclass
class Job:
    """One unit of long work; its thread writes progress and log lines, any reader polls them."""

    id: str
    kind: str
    key: str | None
    title: str
    state: str = RUNNING
    progress: float | None = None
    message: str = ""
    result: Any = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    max_lines: int = 2000
    _lines: deque = field(default_factory=deque, repr=False)
    _partial: str = field(default="", repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---- written by the job's thread -----------------------------------------------------------------------
    def log(self, line: str) -> None:
        with self._guard:
            for part in str(line).rstrip("\n").split("\n"):
                self._lines.append(part)
            while len(self._lines) > self.max_lines:
                self._lines.popleft()

    def write(self, text: str) -> None:
        """Append raw output that may end mid-line (a process's log as it is written)."""
        with self._guard:
            *complete, self._partial = (self._partial + text).split("\n")
        if complete:
            self.log("\n".join(complete))

    def set_progress(self, fraction: float | None, message: str | None = None) -> None:
        with self._guard:
            self.progress = None if fraction is None else min(1.0, max(0.0, float(fraction)))
            if message is not None:
                self.message = message

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled(f"{self.title}: cancelled")

    # ---- read by anyone -------------------------------------------------------------------------------------
    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    @property
    def cancel_event(self) -> threading.Event:
        """Set when cancel is asked; for library calls that take an Event."""
        return self._cancel

    def cancel(self) -> None:
        self._cancel.set()

    def lines(self, last: int | None = None) -> list[str]:
        with self._guard:
            items = list(self._lines) + ([self._partial] if self._partial else [])
        return items[-last:] if last else items

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (for tests and the CLI); True when it did within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


class JobRegistry:
    """All jobs of one process; one running job per (kind, key) at a time."""

    def __init__(self, keep: int = 50):
        self._jobs: dict[str, Job] = {}
        self._guard = threading.Lock()
        self._ids = itertools.count(1)
        self.keep = keep

    def start(self, kind: str, work: Callable[[Job], Any], key: str | None = None, title: str = "") -> Job:
        """Run `work(job)` in a daemon thread; returns the already running job of the same kind and key if any."""
        with self._guard:
            current = self.latest(kind, key)
            if current is not None and current.running:
                return current
            job = Job(id=f"{kind}-{next(self._ids)}", kind=kind, key=key, title=title or f"{kind} {key or ''}".strip())
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job, work), name=job.id, daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], Any]) -> None:
        try:
            job.result = work(job)
            state = CANCELLED if job.cancel_requested else DONE
        except JobCancelled as exc:
            job.error, state = str(exc), CANCELLED
        except Exception as exc:  # the job's owner reads the message; the thread must not die silently
            job.error, state = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc), FAILED
            job.log(f"error: {job.error}")
        job.finished_at = time.time()
        job.state = state

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self, kind: str | None = None) -> list[Job]:
        """Newest first."""
        found = [j for j in list(self._jobs.values()) if kind is None or j.kind == kind]
        return sorted(found, key=lambda j: j.started_at, reverse=True)

    def latest(self, kind: str, key: str | None = None) -> Job | None:
        return next((j for j in self.jobs(kind) if j.key == key), None)

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs() if not j.running]
        for job in finished[self.keep:]:
            del self._jobs[job.id]
