"""Atomic writes under a cross-process lock: concurrent writers lose nothing, a killed writer breaks nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from modelreg.registry import Registry
from modelreg.store import atomic_write, read_layer, revision_of
from support import wait_for
from support.layers import discovered_model, write_layers

WRITER = textwrap.dedent("""
    import sys
    from modelreg.registry import Registry
    folder, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reg = Registry(folder)
    for i in range(count):
        reg.set_value(f"{prefix}-{i % 4}", f"generation_defaults.v{i}", i)
""")


def test_two_processes_setting_at_once_lose_nothing(tmp_path):
    models = [discovered_model(f"{p}-{i}", f"/m/{p}{i}") for p in ("a", "b") for i in range(4)]
    write_layers(tmp_path, models, [])
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), prefix, "200"]) for prefix in "ab"]
    assert [w.wait(timeout=240) for w in writers] == [0, 0]
    curated = {e["name"]: e for e in json.loads((tmp_path / "model_registry.curated.json").read_text())}
    found = {(n, k) for n, e in curated.items() for k in e["generation_defaults"]}
    assert len(found) == 400
    merged = Registry(tmp_path).snapshot().by_name
    assert all(merged[f"{p}-{i % 4}"]["generation_defaults"][f"v{i}"] == i for p in "ab" for i in range(200))


def test_writer_killed_mid_write_leaves_every_file_parseable(tmp_path):
    write_layers(tmp_path, [discovered_model(f"m-{i}", f"/m/{i}") for i in range(40)], [])
    reg = Registry(tmp_path)
    last_good = reg.rebuild().revision
    for round_ in range(12):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "m", "100000"])
        wait_for(lambda: len(reg.history_items()) > round_, timeout=60, what="the writer's first write")
        time.sleep(0.01 * round_)  # the kill lands at a different point of the write loop each round
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        for name in ("model_registry.discovered.json", "model_registry.curated.json", "model_registry.json"):
            json.loads((tmp_path / name).read_text())
        snapshot = reg.snapshot()
        assert snapshot.revision == revision_of((tmp_path / "model_registry.json").read_bytes())
        assert len(snapshot.entries) == 40
    assert reg.rebuild().revision != last_good


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, b"[1]\n")
    atomic_write(target, b"[2]\n")
    assert read_layer(target).entries == [2]
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_keeps_the_file_mode(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, b"[]\n")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    target.chmod(0o640)
    atomic_write(target, b"[1]\n")
    assert target.stat().st_mode & 0o777 == 0o640


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
