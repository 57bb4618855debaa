"""Watches the three registry files and calls back once per burst of writes (debounced)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterable

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from modelreg.store import CURATED_FILE, DISCOVERED_FILE, SNAPSHOT_FILE

REGISTRY_FILES = (DISCOVERED_FILE, CURATED_FILE, SNAPSHOT_FILE)
# Only events that can change a file's content; reads (opened, closed-no-write) are left out.
CHANGE_EVENTS = [FileModifiedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent]


class RegistryWatcher(FileSystemEventHandler):
    """Calls `callback(changed_names)` `debounce` seconds after the last change to a watched file.

    The store writes atomically (temp file, then rename), so a write arrives as a moved event whose
    dest_path is the registry file; the temp file's own events are ignored.
    """

    def __init__(self, config_dir: str | Path, callback: Callable[[set[str]], None], debounce: float = 0.05,
                 names: Iterable[str] = REGISTRY_FILES):
        self.config_dir = Path(config_dir)
        self.callback = callback
        self.debounce = debounce
        self.names = frozenset(names)
        self._pending: set[str] = set()
        self._guard = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer: BaseObserver | None = None

    def start(self) -> "RegistryWatcher":
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(self, str(self.config_dir), recursive=False, event_filter=CHANGE_EVENTS)
        self._observer.daemon = True
        self._observer.start()
        return self

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._pending.clear()

    def __enter__(self) -> "RegistryWatcher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def watched_name(self, event: FileSystemEvent) -> str | None:
        """The registry file an event changed, or None for an event to ignore."""
        if event.is_directory:
            return None
        path = event.dest_path if event.event_type == "moved" else event.src_path
        name = Path(str(path)).name
        return name if name in self.names else None

    def on_any_event(self, event: FileSystemEvent) -> None:
        name = self.watched_name(event)
        if name is None:
            return
        with self._guard:
            self._pending.add(name)
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._guard:
            changed, self._pending = self._pending, set()
            self._timer = None
        if changed:
            self.callback(changed)
