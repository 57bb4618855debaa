"""Incremental rebuilds: after any sequence of edits (through the API, by hand, by another process), the snapshot's
bytes and revision are exactly what a full rebuild of the same layers gives, and only changed models are merged."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelreg import build
from modelreg.errors import RegistryError
from modelreg.merge import merge_layers
from modelreg.registry import UNSET, Registry
from modelreg.store import LEGACY_SOURCE_FILES, SOURCE_FILE, dumps_snapshot, read_layer, revision_of
from support.layers import discovered_model, upstream_copy, write_layers

MODELS = [f"m{i}" for i in range(5)]
PATHS = ["backend_config.port", "backend_config.extra_args", "generation_defaults.temperature", "display_name",
         "capabilities.vision", "roles", "chat_template", "metadata.note"]
VALUES = st.one_of(st.integers(1, 70000), st.text(max_size=4), st.lists(st.text(max_size=3), max_size=2),
                   st.booleans(), st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=2))

operations = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(MODELS), st.sampled_from(PATHS), VALUES, st.booleans()),
    st.tuples(st.just("unset"), st.sampled_from(MODELS), st.sampled_from(PATHS), st.booleans()),
    st.tuples(st.just("scan"), st.sampled_from(MODELS), st.integers(0, 9)),
    st.tuples(st.just("missing"), st.sampled_from(MODELS)),
    st.tuples(st.just("curated by hand"), st.sampled_from(MODELS), VALUES, st.sampled_from([2, 4, None])),
    st.tuples(st.just("discovered by hand"), st.sampled_from(MODELS), st.integers(0, 9), st.sampled_from([2, None])),
    st.tuples(st.just("stub"), st.sampled_from(MODELS + ["new"])),
    st.tuples(st.just("restore"), st.integers(0, 3)),
    st.tuples(st.just("another process"),),
    st.tuples(st.just("index lost"), st.booleans()),
)


def full_rebuild(folder: Path, profile: str | None) -> bytes:
    """The snapshot the plain, non-incremental code path gives for the layers as they are."""
    merged = merge_layers(read_layer(folder / "model_registry.discovered.json").entries,
                          read_layer(folder / "model_registry.curated.json").entries, profile)
    return dumps_snapshot(merged.entries)


def edit_by_hand(path: Path, name: str, change, indent: int | None) -> None:
    entries = json.loads(path.read_text())
    for entry in entries:
        if entry.get("name") == name and entry.get("profile") is None:
            change(entry)
            break
    path.write_text(json.dumps(entries, indent=indent))  # in place, as an editor saves


def apply(registry: Registry, folder: Path, op: tuple) -> Registry:
    kind = op[0]
    profile = registry.profile
    if kind == "set":
        registry.apply_curated(op[1], {op[2]: op[3]}, profile=profile if op[4] else None)
    elif kind == "unset":
        registry.apply_curated(op[1], {op[2]: UNSET}, profile=profile if op[3] else None)
    elif kind == "scan":
        registry.discovered_writer().upsert([discovered_model(op[1], f"/m/{op[1]}", size_bytes=op[2])])
    elif kind == "missing":
        registry.discovered_writer().mark_missing([op[1]])
    elif kind == "curated by hand":
        edit_by_hand(registry.curated_path, op[1], lambda e: e.update(display_name=op[2]), op[3])
    elif kind == "discovered by hand":
        edit_by_hand(registry.discovered_path, op[1], lambda e: e.update(size_bytes=op[2]), op[3])
    elif kind == "stub":
        if op[1] == "new":
            registry.discovered_writer().upsert([discovered_model("new", "/m/new")], rebuild=False)
        registry.stub(op[1], {"backend": "vllm"})
    elif kind == "restore":
        items = registry.history_items()
        if items:
            registry.restore(items[min(op[1], len(items) - 1)].id)
    elif kind == "another process":
        return Registry(folder, profile=profile)
    elif kind == "index lost":
        index = folder / SOURCE_FILE
        if op[1]:
            index.unlink(missing_ok=True)
        elif index.exists():
            index.write_bytes(index.read_bytes()[:-7] + b"garbage")
    return registry


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, min_size=1, max_size=10), st.sampled_from([None, "gpu"]))
def test_incremental_and_full_rebuilds_agree_byte_for_byte(ops, profile):
    # a kept hash state every 100 bytes, so that edits resume hashing from one, as they do in large registries
    with tempfile.TemporaryDirectory() as tmp, patch.object(build, "_CHECKPOINT", 100):
        folder = write_layers(Path(tmp), [discovered_model(n, f"/m/{n}") for n in MODELS],
                              [{"name": "m0", "backend": "vllm"},
                               {"name": "m1", "profile": "gpu", "backend_config": {"port": 9001}}])
        registry = Registry(folder, profile=profile)
        registry.rebuild()
        for op in ops:
            try:
                registry = apply(registry, folder, op)
            except RegistryError:
                pass  # an invalid value or a name no layer has: refused, nothing written
            try:
                snapshot = registry.rebuild()
            except RegistryError:
                continue  # the layers do not validate (a hand edit): the last good snapshot stays
            data = (folder / "model_registry.json").read_bytes()
            assert data == full_rebuild(folder, profile), op
            assert snapshot.revision == revision_of(data)
            assert Registry(folder, profile=profile).rebuild(full=True).revision == snapshot.revision


def test_an_edit_merges_one_model_and_reuses_the_others(tmp_path, monkeypatch):
    write_layers(tmp_path, [discovered_model(f"m{i}", f"/m/{i}") for i in range(50)], [])
    registry = Registry(tmp_path)
    registry.rebuild()
    merged = []
    original = build.merge_entry
    monkeypatch.setattr(build, "merge_entry", lambda name, layers: merged.append(name) or original(name, layers))
    registry.set_value("m7", "backend_config.port", 8007)
    Registry(tmp_path).set_value("m8", "backend_config.port", 8008)  # another process, through the index
    registry.set_value("m9", "roles", ["chat"])  # this object merges m8 too: it changed since it last looked
    assert merged == ["m7", "m8", "m8", "m9"]
    assert (tmp_path / "model_registry.json").read_bytes() == full_rebuild(tmp_path, None)


def test_an_edit_rewrites_only_the_entry_it_changes(tmp_path):
    upstream_copy(tmp_path)
    curated = tmp_path / "model_registry.curated.json"
    before = curated.read_bytes()
    name = json.loads(before)[3]["name"]
    Registry(tmp_path).set_value(name, "backend_config.port", 8123)
    after = curated.read_bytes()
    start = before.index(f'"name": "{name}"'.encode())
    assert after[:start] == before[:start]  # every earlier entry's bytes, as they were
    entries = json.loads(after)
    assert entries[3]["backend_config"]["port"] == 8123
    assert [e for i, e in enumerate(entries) if i != 3] == [e for i, e in enumerate(json.loads(before)) if i != 3]


def test_invalid_edit_by_another_process_is_reported_with_file_and_line(tmp_path):
    write_layers(tmp_path, [discovered_model(f"m{i}", f"/m/{i}") for i in range(3)],
                 [{"name": "m1", "backend": "vllm"}])
    registry = Registry(tmp_path)
    registry.rebuild()
    good = (tmp_path / "model_registry.json").read_bytes()
    edit_by_hand(registry.curated_path, "m1", lambda e: e.update(backend_config={"port": "eighty"}), 2)
    report = Registry(tmp_path).validate()
    assert report.errors and "model_registry.curated.json:2:" in report.errors[0] and "port" in report.errors[0]
    assert registry.validate().errors == report.errors
    assert (tmp_path / "model_registry.json").read_bytes() == good


def test_the_proxy_s_reload_after_another_process_s_edit_writes_nothing_again(tmp_path, monkeypatch):
    write_layers(tmp_path, [discovered_model(f"m{i}", f"/m/{i}") for i in range(50)], [])
    proxy = Registry(tmp_path)
    proxy.rebuild()
    Registry(tmp_path).set_value("m3", "backend_config.port", 8003)  # the GUI's save, say
    snapshot = tmp_path / "model_registry.json"
    written = snapshot.stat().st_ino
    merged = []
    original = build.merge_entry
    monkeypatch.setattr(build, "merge_entry", lambda name, layers: merged.append(name) or original(name, layers))
    read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: pytest.fail("read the snapshot") if path == snapshot
                        else read(path))
    assert proxy.rebuild().by_name["m3"]["backend_config"]["port"] == 8003
    monkeypatch.undo()
    assert merged == ["m3"] and snapshot.stat().st_ino == written  # its index told the proxy what the file holds
    assert snapshot.read_bytes() == full_rebuild(tmp_path, None)


def test_one_source_record_serves_the_stale_warning_and_the_next_process(tmp_path, monkeypatch):
    write_layers(tmp_path, [discovered_model(f"m{i}", f"/m/{i}") for i in range(3)], [{"name": "m1", "roles": []}])
    for name in LEGACY_SOURCE_FILES:  # an older version's two records: ignored, and gone with the first build
        (tmp_path / name).write_text('{"snapshot": "0"}')
    registry = Registry(tmp_path)
    snapshot = registry.rebuild()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".snapshot") or "source" in p.name) \
        == [SOURCE_FILE]
    source = tmp_path / SOURCE_FILE
    line, _, cache = source.read_bytes().partition(b"\n")
    assert json.loads(line)["snapshot"] == snapshot.revision and cache
    merges = []
    original = build.merge_entry
    monkeypatch.setattr(build, "merge_entry", lambda name, layers: merges.append(name) or original(name, layers))
    assert Registry(tmp_path).snapshot_staleness() is None and merges == []  # by the record alone
    source.write_bytes(line + b"\n" + cache[:-9] + b"other code")  # another version's cache, say
    assert Registry(tmp_path).snapshot_staleness() is None and merges == []  # the record still serves the warning
    assert Registry(tmp_path).set_value("m2", "roles", ["chat"]) and merges == ["m0", "m1", "m2"]  # the cache not
    monkeypatch.undo()
    edit_by_hand(registry.curated_path, "m1", lambda e: e.update(display_name="M1"), 2)
    assert "the curated layer changed since it was built" in Registry(tmp_path).snapshot_staleness()
    Registry(tmp_path).rebuild()
    assert "built for profile none, not gpu" in Registry(tmp_path, profile="gpu").snapshot_staleness()
