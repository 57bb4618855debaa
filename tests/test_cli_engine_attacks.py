"""Attacks on the engine through the command line, each as issue 20 found it: a forged file stamp, a damaged or odd
snapshot index, temp files of killed writers, `1e999` in a layer file, and chat templates that are not files."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from modelreg import store
from modelreg.store import CURATED_FILE, SNAPSHOT_FILE, atomic_write
from modelreg.store import SOURCE_FILE as INDEX_FILE
from support.gui_servers import modelreg
from support.layers import discovered_model, write_layers


def run(folder, *args, cwd=None):
    return subprocess.run(modelreg(folder, *args), capture_output=True, text=True, timeout=120, cwd=cwd)


def snapshot_names(folder) -> dict:
    return {e["name"]: e for e in json.loads((folder / SNAPSHOT_FILE).read_bytes())}


def aged(path, seconds=100):
    """Set the file's mtime back (beyond the racy window), as a file last written a while ago has it."""
    then = time.time_ns() - seconds * 1_000_000_000
    os.utime(path, ns=(then, then))
    return then


def test_forged_mtime_same_size_edit_is_noticed(tmp_path):
    folder = write_layers(tmp_path / "configs", discovered=[discovered_model("m")],
                          curated=[{"name": "m", "display_name": "aaaa"}])
    curated = folder / CURATED_FILE
    then = aged(curated)
    assert run(folder, "rebuild").returncode == 0  # the index now vouches for the curated file by its stamp
    assert snapshot_names(folder)["m"]["display_name"] == "aaaa"
    raw = curated.read_bytes()
    with open(curated, "r+b") as handle:  # an in-place edit that keeps the size, then the old mtime back
        handle.seek(raw.index(b"aaaa"))
        handle.write(b"bbbb")
    os.utime(curated, ns=(then, then))
    assert "the snapshot on disk is stale" in run(folder, "list").stderr
    done = run(folder, "rebuild")
    assert done.returncode == 0, done.stderr
    incremental = (folder / SNAPSHOT_FILE).read_bytes()
    assert snapshot_names(folder)["m"]["display_name"] == "bbbb"
    full = run(folder, "rebuild", "--full")
    assert full.returncode == 0 and "changed while it was being read" not in full.stderr, full.stderr
    assert (folder / SNAPSHOT_FILE).read_bytes() == incremental


@pytest.mark.parametrize("damage", ["garbage", "truncated", "directory"])
def test_damaged_or_odd_snapshot_index_is_ignored_with_a_warning(tmp_path, damage):
    folder = write_layers(tmp_path / "configs", discovered=[discovered_model("m")], curated=[])
    assert run(folder, "rebuild").returncode == 0
    index = folder / INDEX_FILE
    if damage == "garbage":
        index.write_bytes(os.urandom(200))
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:-9])
    else:
        index.unlink()
        index.mkdir()
    done = run(folder, "set", "m", "display_name", "edited")
    assert done.returncode == 0, done.stderr
    assert f"ignoring {index}" in done.stderr or f"{index} is a directory" in done.stderr, done.stderr
    assert snapshot_names(folder)["m"]["display_name"] == "edited"
    assert run(folder, "show", "m").returncode == 0


def test_killed_writers_temp_files_are_removed_by_the_next_write(tmp_path, monkeypatch):
    folder = write_layers(tmp_path / "configs", discovered=[discovered_model("m")], curated=[])
    leftovers = [folder / f".{INDEX_FILE}.k1ll3d.tmp", folder / f".{SNAPSHOT_FILE}.k1ll3d.tmp",
                 folder / f".{CURATED_FILE}.k1ll3d.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    assert run(folder, "set", "m", "display_name", "x").returncode == 0
    assert not [p for p in leftovers if p.exists()]
    # a file written without the registry lock (a cache, a backend's state file): its killed writer's temp file goes
    # with the next write of that file once it is older than a live write can be
    cache = tmp_path / "cache" / "flags.json"
    left = cache.parent / f".{cache.name}.k1ll3d.tmp"
    cache.parent.mkdir()
    left.write_bytes(b"half")
    atomic_write(cache, b"{}")
    assert left.exists()  # it could be a live write's
    monkeypatch.setattr(store, "STALE_TEMP_SECONDS", 0.0)
    atomic_write(cache, b"{}")
    assert not left.exists()


def test_1e999_in_a_layer_file_is_refused_with_its_position(tmp_path):
    folder = write_layers(tmp_path / "configs", discovered=[discovered_model("m")], curated=[])
    curated = folder / CURATED_FILE
    curated.write_text('[\n  {\n    "name": "m",\n    "generation_defaults": {"temperature": 1e999}\n  }\n]\n')
    before = (folder / SNAPSHOT_FILE).read_bytes() if (folder / SNAPSHOT_FILE).exists() else None
    for command in (["rebuild"], ["validate"], ["set", "m", "display_name", "x"]):
        done = run(folder, *command)
        assert done.returncode == 2, (command, done.stdout)
        assert f"{curated}:4:44" in done.stderr + done.stdout and "1e999" in done.stderr + done.stdout, done.stderr
    assert curated.read_text().count("1e999") == 1
    assert ((folder / SNAPSHOT_FILE).read_bytes() if (folder / SNAPSHOT_FILE).exists() else None) == before
    curated.write_text("[]\n")
    for path, value in (("generation_defaults.temperature", "-1e400"), ("capabilities", '{"x": 1e999}')):
        refused = run(folder, "set", "m", path, "--", value)
        assert refused.returncode == 2 and "e4" not in curated.read_text(), refused.stderr
        assert "not a finite number" in refused.stderr or "is not a JSON number" in refused.stderr, refused.stderr


def llama_model(folder, template):
    write_layers(folder, discovered=[discovered_model("m", "/models/m.gguf")],
                 curated=[{"name": "m", "backend": "llama.cpp", "backend_config": {"port": 24001},
                           "chat_template": {"source": "external", "path": template}}])


def test_relative_chat_template_resolves_against_the_registry_folder_from_any_folder(tmp_path):
    folder = tmp_path / "configs"
    llama_model(folder, "templates/chat.jinja")
    (folder / "templates").mkdir()
    (folder / "templates" / "chat.jinja").write_text("{{ messages }}")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "templates").mkdir(parents=True)
    (elsewhere / "templates" / "chat.jinja").write_text("not this one")
    for cwd in (elsewhere, folder, tmp_path):
        done = run(folder, "launch-cmd", "m", "--json", cwd=cwd)
        assert done.returncode == 0, done.stderr
        argv = json.loads(done.stdout)["argv"]
        assert argv[argv.index("--chat-template-file") + 1] == str(folder / "templates" / "chat.jinja")


@pytest.mark.parametrize("kind, words", [("fifo", "is a FIFO (named pipe), not a template file"),
                                         ("folder", "is a folder, not a template file"),
                                         ("missing", "does not exist")])
def test_a_chat_template_that_is_not_a_file_gets_the_right_message(tmp_path, kind, words):
    folder = tmp_path / "configs"
    template = tmp_path / "t.jinja"
    if kind == "fifo":
        os.mkfifo(template)
    elif kind == "folder":
        template.mkdir()
    llama_model(folder, str(template))
    done = run(folder, "launch-cmd", "m")  # a FIFO is never opened: this would hang
    assert done.returncode == 2 and words in done.stderr, done.stderr
