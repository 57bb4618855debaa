"""RegistryWatcher: real inotify events on a tmp folder, debounced into one callback per burst."""
from __future__ import annotations

import queue
import time

import pytest

from modelreg.store import CURATED_FILE, DISCOVERED_FILE, SNAPSHOT_FILE, atomic_write
from modelreg.watch import RegistryWatcher

QUIET = 0.4  # seconds with no callback that count as "nothing fired"


@pytest.fixture
def watched(tmp_path):
    for name in (DISCOVERED_FILE, CURATED_FILE, SNAPSHOT_FILE):
        (tmp_path / name).write_text("[]\n")
    calls: queue.Queue[set[str]] = queue.Queue()
    watcher = RegistryWatcher(tmp_path, calls.put, debounce=0.05).start()
    time.sleep(0.05)  # let inotify register the watch
    yield tmp_path, calls
    watcher.stop()


def drain(calls: queue.Queue, first: float = 10.0) -> list[set[str]]:
    """The callbacks until QUIET seconds pass without one; the first may take `first` seconds on a loaded machine."""
    out = []
    wait = first
    while True:
        try:
            out.append(calls.get(timeout=wait))
        except queue.Empty:
            return out
        wait = QUIET


def test_atomic_write_arrives_as_one_change_of_the_file(watched):
    folder, calls = watched
    atomic_write(folder / CURATED_FILE, b'[{"name": "m"}]\n')
    assert drain(calls) == [{CURATED_FILE}]


def test_a_burst_of_writes_to_several_files_is_one_callback(watched):
    folder, calls = watched
    for index in range(5):  # without fsyncs, which on a loaded disk could outlast the 50 ms debounce between writes
        atomic_write(folder / CURATED_FILE, f'[{{"name": "m{index}"}}]\n'.encode(), sync=False)
    atomic_write(folder / SNAPSHOT_FILE, b"[]\n\n", sync=False)
    assert drain(calls) == [{CURATED_FILE, SNAPSHOT_FILE}]


def test_a_plain_in_place_write_is_seen(watched):
    folder, calls = watched
    (folder / DISCOVERED_FILE).write_text("{ not json")
    assert drain(calls) == [{DISCOVERED_FILE}]


def test_reads_and_other_files_fire_nothing(watched):
    folder, calls = watched
    for name in (DISCOVERED_FILE, CURATED_FILE, SNAPSHOT_FILE):
        (folder / name).read_bytes()
        with open(folder / name, "rb"):
            pass
    (folder / ".registry.lock").write_text("")
    atomic_write(folder / "settings.json", b"{}\n")
    (folder / "notes.txt").write_text("hello")
    assert drain(calls, first=QUIET) == []


def test_stop_silences_the_watcher(tmp_path):
    calls: queue.Queue[set[str]] = queue.Queue()
    watcher = RegistryWatcher(tmp_path, calls.put, debounce=0.05).start()
    watcher.stop()
    atomic_write(tmp_path / CURATED_FILE, b"[]\n")
    assert drain(calls, first=QUIET) == []
