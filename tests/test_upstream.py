"""The upstream registry corpus: loads, validates with warnings only, migrates losslessly, round-trips every key."""
from __future__ import annotations

import json

import pytest

from modelreg.fields import FieldClass, field_class
from modelreg.paths import flatten
from modelreg.registry import Registry
from modelreg.store import dumps
from support.layers import UPSTREAM, upstream_copy


@pytest.fixture
def upstream(tmp_path):
    return Registry(upstream_copy(tmp_path))


def load(path):
    return json.loads(path.read_text())


def test_upstream_validates_with_warnings_about_legacy_config(upstream):
    report = upstream.validate()
    assert report.ok, report.errors
    legacy = [w for w in report.warnings if "discovered layer holds configuration" in w]
    assert len(legacy) == 16  # every discovered entry carries configuration


def test_upstream_merge_matches_upstream_snapshot(upstream):
    """Every curated value wins; the result equals the snapshot the old system published."""
    published = {e["name"]: e for e in load(UPSTREAM / "model_registry.json")}
    merged = upstream.merged()
    assert merged.by_name == published
    for entry in load(upstream.curated_path):
        for path, value in flatten(entry).items():
            if field_class(path) is not FieldClass.FACT and value is not None and value != {}:
                assert flatten(merged.by_name[entry["name"]])[path] == value


def test_layers_round_trip_byte_for_byte(upstream):
    for path in (upstream.discovered_path, upstream.curated_path):
        assert dumps(load(path)) == path.read_bytes()


def test_curated_edit_keeps_every_unknown_key(upstream):
    name = "qwen2.5-vl-7b-instruct_(AWQ)"
    before = {e["name"]: e for e in load(upstream.curated_path)}
    upstream.set_value(name, "backend_config.extra_args", ["--max-model-len", "8192"])
    after = {e["name"]: e for e in load(upstream.curated_path)}
    assert {n: e for n, e in after.items() if n != name} == {n: e for n, e in before.items() if n != name}
    changed = flatten(after[name])
    for path, value in flatten(before[name]).items():
        if path != "backend_config.extra_args":
            assert changed[path] == value


def test_migrate_moves_every_config_value_and_keeps_the_snapshot(upstream):
    before_discovered = load(upstream.discovered_path)
    before_curated = {e["name"]: e for e in load(upstream.curated_path)}
    before_snapshot = upstream.rebuild()

    result = upstream.migrate()

    assert result.written and len(result.backups) == 2
    after_discovered = {e["name"]: e for e in load(upstream.discovered_path)}
    after_curated = {e["name"]: e for e in load(upstream.curated_path)}
    moves = {(m["name"], m["field"]): m for m in result.moves}
    for entry in before_discovered:
        name = entry["name"]
        for path, value in flatten(entry).items():
            flat_after = flatten(after_discovered[name])
            if field_class(path) is FieldClass.CONFIG:
                assert path not in flat_after
                move = moves[(name, path)]
                had = flatten(before_curated.get(name, {})).get(path)
                if had is None:
                    assert move["action"] == "moved"
                    assert flatten(after_curated[name])[path] == value
                else:
                    assert move["action"].startswith("dropped") and flatten(after_curated[name])[path] == had
            else:
                assert flat_after[path] == value  # facts and defaults stay exactly as they were
    assert upstream.rebuild().revision == before_snapshot.revision
    assert not [w for w in upstream.validate().warnings if "discovered layer holds configuration" in w]
    for backup in result.backups:
        original = UPSTREAM / (backup.split("/")[-1].split(".json.")[0] + ".json")
        assert original.read_bytes() == open(backup, "rb").read()


def test_migrate_dry_run_writes_nothing(upstream):
    before = upstream.discovered_path.read_bytes(), upstream.curated_path.read_bytes()
    result = upstream.migrate(dry_run=True)
    assert result.moves and not result.written
    assert (upstream.discovered_path.read_bytes(), upstream.curated_path.read_bytes()) == before


def test_migrated_registry_survives_a_rescan(upstream):
    upstream.migrate()
    name = "qwen2.5-vl-7b-instruct_(AWQ)"
    facts = {k: v for k, v in upstream.discovered_entries()[0].items()}
    upstream.discovered_writer().upsert([{**facts, "name": "new-model"}])
    assert upstream.entry(name)["backend_config"]["extra_args"] == [
        "--max-model-len", "4096", "--enforce-eager", "--trust-remote-code"]
