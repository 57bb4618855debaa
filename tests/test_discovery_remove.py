"""Scan's dry run (what would change, nothing written) and removing a model: forget it, delete its files only under a
model root after the caller confirmed, keep its curated entry unless asked."""
from __future__ import annotations

import json

import pytest

from modelreg.discovery.scan import removal_plan, remove_model, scan
from modelreg.errors import BadInput
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE
from support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "models"
    (root / "other").mkdir(parents=True)
    write_tiny_gguf(root / "tiny-F32.gguf")
    write_tiny_gguf(root / "other" / "second-F32.gguf", seed=1)
    registry = Registry(tmp_path / "configs", create=True)
    (registry.config_dir / "settings.json").write_text(json.dumps({"model_roots": [str(root)]}))
    return Registry(registry.config_dir)


def layer_files(registry):
    return {p.name: p.read_bytes() for p in registry.config_dir.glob("model_registry*.json")}


def test_a_dry_run_says_what_a_scan_would_change_and_writes_nothing(registry, tmp_path):
    root = tmp_path / "models"
    preview = scan(registry, [root], dry_run=True)
    assert sorted(m["status"] for m in preview.models) == ["new", "new"] and len(preview.stubs) == 2
    assert layer_files(registry) == {}
    done = scan(registry, [root])
    assert sorted(m["name"] for m in done.models) == sorted(m["name"] for m in preview.models)
    before = layer_files(registry)
    (root / "tiny-F32.gguf").unlink()
    preview = scan(registry, [root], dry_run=True)
    assert len(preview.missing) == 1 and [m["status"] for m in preview.models] == ["unchanged"]
    assert layer_files(registry) == before


def test_remove_forgets_and_deletes_only_under_a_root_after_naming_path_and_size(registry, tmp_path):
    scan(registry, [tmp_path / "models"])
    name = next(e["name"] for e in registry.discovered_entries() if "second" in e["backend_config"]["model_path"])
    registry.set_value(name, "roles", ["chat"])
    plan = removal_plan(registry, name)
    model = tmp_path / "models" / "other" / "second-F32.gguf"
    assert plan["deletable"] and plan["path"] == str(model) and plan["size_bytes"] == model.stat().st_size
    assert plan["curated_entries"] == 1
    done = remove_model(registry, name, delete_files=True)
    assert done == {"name": name, "forgot": True, "deleted": str(model), "curated_removed": False}
    assert not model.exists() and (tmp_path / "models").is_dir()
    assert name not in {e["name"] for e in registry.discovered_entries()}
    assert any(e["name"] == name for e in json.loads((registry.config_dir / CURATED_FILE).read_text()))
    remove_model(registry, name, drop_curated=True)
    assert not any(e["name"] == name for e in json.loads((registry.config_dir / CURATED_FILE).read_text()))
    assert name not in registry.snapshot().by_name


def test_files_outside_the_roots_or_a_root_itself_are_never_deleted(registry, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    outside = write_tiny_gguf(tmp_path / "elsewhere" / "out-F32.gguf")
    scan(registry, [outside.parent])
    name = next(e["name"] for e in registry.discovered_entries() if "out-F32" in e["backend_config"]["model_path"])
    plan = removal_plan(registry, name)
    assert not plan["deletable"] and "not inside one of the model_roots" in plan["why_not"]
    with pytest.raises(BadInput, match="will not delete"):
        remove_model(registry, name, delete_files=True)
    assert outside.exists() and name in {e["name"] for e in registry.discovered_entries()}
    registry.discovered_writer().upsert([{"name": "root-itself", "backend_config": {
        "model_path": str(tmp_path / "models")}, "metadata": {"format": "safetensors"}}])
    assert not removal_plan(registry, "root-itself")["deletable"]
