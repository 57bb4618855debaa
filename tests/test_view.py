"""The GUI's pure functions (no Streamlit): provenance to cell classes, model rows, form to patch, argv preview."""
from __future__ import annotations

import json

import pytest

from modelreg.errors import ConflictError, FactFieldRefused
from modelreg.merge import layer_diff
from modelreg.registry import UNSET, Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from modelreg.views import editor as editing
from modelreg.views import models as view
from support.layers import discovered_model, write_layers


def test_every_layer_has_its_own_color():
    colors = [color for _, color in view.LAYER_COLORS.values()]
    assert len(set(colors)) == len(colors)
    assert view.layer_class("discovered", 1) == "discovered"
    assert view.layer_class("legacy", 1) == "legacy"
    assert view.layer_class("curated", 1) == "curated"
    assert view.layer_class("curated", 1, overridden=True) == "override"
    assert view.layer_class("profile:rtx4080", 1) == "profile"
    assert view.layer_class(None, 1) == view.layer_class("curated", None) == "unset"
    assert view.LAYER_COLORS["curated"][1] in view.cell_css("curated")


@pytest.fixture
def folder(tmp_path):
    """Five models: curated override, a profile entry, a stub, a missing one, one with legacy config."""
    discovered = [
        discovered_model("vl", "/models/vl", display_name="VL (disk)", quantization="awq",
                         metadata={"format": "safetensors", "architecture": {"max_position_embeddings": 32768}}),
        discovered_model("gguf", "/models/g.gguf",
                         metadata={"format": "gguf", "architecture": {"context_length": 4096}}),
        discovered_model("stub", "/models/s"),
        discovered_model("gone", "/models/gone", missing=True),
        {**discovered_model("legacy", "/models/l"), "backend": "vllm"},
    ]
    curated = [
        {"name": "vl", "display_name": "VL", "backend": "vllm",
         "backend_config": {"port": 24001, "extra_args": ["--max-model-len", "4096"]}},
        {"name": "vl", "profile": "small", "backend_config": {"port": 24009}},
        {"name": "gguf", "backend": "llama.cpp",
         "backend_config": {"port": 24002, "extra_args": ["-c", "2048", "-c", "1"]}},
        {"name": "stub", "backend": None, "metadata": {"_config_needed": True}},
        {"name": "gone", "backend": "vllm", "backend_config": {"port": 24003}},
        {"name": "legacy", "backend_config": {"port": 24004}},
    ]
    return write_layers(tmp_path / "configs", discovered, curated)


def rows_by_name(folder, profile=None, running=()):
    registry = Registry(folder, profile)
    merged = registry.merged()
    return {r.name: r for r in view.model_rows(merged.entries, merged.sources, merged.overridden,
                                               registry.settings, running)}


def test_cells_are_classed_by_the_layer_their_value_came_from(folder):
    rows = rows_by_name(folder)
    vl = rows["vl"]
    assert vl.classes["display name"] == "override"            # curated replaced a different discovered value
    assert vl.classes["backend"] == vl.classes["port"] == "curated"
    assert vl.classes["quantization"] == vl.classes["format"] == vl.classes["size GB"] == "discovered"
    assert vl.classes["roles"] == "unset" and vl.values["roles"] is None
    assert vl.classes["name"] == "discovered"
    assert vl.values["extra_args"] == "--max-model-len 4096"
    assert vl.values["overrides"] == "display_name"
    assert rows["legacy"].classes["backend"] == "legacy"
    assert rows_by_name(folder, "small")["vl"].classes["port"] == "profile"
    assert rows_by_name(folder, "small")["vl"].values["port"] == 24009


def test_context_columns_say_where_the_effective_value_came_from(folder):
    rows = rows_by_name(folder)
    assert (rows["vl"].values["native ctx"], rows["vl"].classes["native ctx"]) == (32768, "discovered")
    assert (rows["vl"].values["effective ctx"], rows["vl"].classes["effective ctx"]) == (4096, "curated")
    assert (rows["stub"].values["effective ctx"], rows["stub"].classes["effective ctx"]) == (None, "unset")


def test_status_of_each_model(folder):
    rows = rows_by_name(folder, running=["legacy"])
    assert rows["vl"].status == view.OK
    assert rows["stub"].status == view.NEEDS_CONFIG
    assert rows["gone"].status == view.FILES_MISSING
    assert rows["gguf"].status == view.INVALID and "`--ctx-size` is given twice" in rows["gguf"].problem
    assert rows["legacy"].status == view.RUNNING


def test_filters_and_sorting(folder):
    rows = list(rows_by_name(folder).values())
    assert [r.name for r in view.filter_rows(rows, backends=["vllm"])] == ["gone", "legacy", "vl"]
    assert [r.name for r in view.filter_rows(rows, statuses=[view.NEEDS_CONFIG])] == ["stub"]
    assert [r.name for r in view.filter_rows(rows, text="MAX-MODEL")] == ["vl"]
    assert [r.name for r in view.filter_rows(rows, formats=["gguf"])] == ["gguf"]
    ports = [r.values["port"] for r in view.sort_rows(rows, "port", descending=True)]
    assert ports == [24004, 24003, 24002, 24001, None]
    assert view.choices(rows, "backend") == ["llama.cpp", "vllm"]


def texts_of(target):
    return {s.spec.path: s.text for s in editing.field_states(target)}


def test_form_patch_holds_only_changed_fields(folder):
    target = editing.load_target(Registry(folder), "vl", None)
    texts = texts_of(target)
    assert editing.form_patch(target, texts) == ({}, {})
    texts["backend_config.extra_args"] = "--max-model-len 4096 --enforce-eager"
    texts["roles"] = "chat, vision"
    texts["display_name"] = ""                                   # cleared: remove the curated override
    changes, errors = editing.form_patch(target, texts)
    assert errors == {}
    assert changes == {"backend_config.extra_args": ["--max-model-len", "4096", "--enforce-eager"],
                       "roles": ["chat", "vision"], "display_name": UNSET}


def test_form_patch_reports_bad_input_per_field(folder):
    target = editing.load_target(Registry(folder), "vl", None)
    texts = texts_of(target)
    texts.update({"backend_config.port": "80a", "backend_config.extra_args": "--chat-template 'unclosed",
                  "generation_defaults": "{nope"})
    changes, errors = editing.form_patch(target, texts)
    assert changes == {}
    assert "whole number" in errors["backend_config.port"]
    assert "shell rules" in errors["backend_config.extra_args"]
    assert "line 1 column 2" in errors["generation_defaults"]


def test_reset_removes_the_override_and_shows_the_discovered_value(folder):
    target = editing.load_target(Registry(folder), "vl", None)
    assert target.under_value("display_name") == "VL (disk)"
    changes, _ = editing.form_patch(target, texts_of(target), resets={"display_name", "quantization"})
    assert changes == {"display_name": UNSET}                     # quantization has no override to remove
    assert target.merged(changes).entry["display_name"] == "VL (disk)"


def test_profile_edit_goes_into_the_profile_entry(folder):
    registry = Registry(folder)
    target = editing.load_target(registry, "vl", "small")
    texts = texts_of(target)
    assert texts["backend_config.port"] == "24009"
    assert target.under_value("backend_config.port") == 24001
    texts["backend_config.extra_args"] = "--max-model-len 2048"
    changes, _ = editing.form_patch(target, texts)
    registry.apply_curated("vl", changes, base_revision=target.curated_revision, profile="small")
    entries = json.loads((folder / CURATED_FILE).read_text())
    base = next(e for e in entries if e["name"] == "vl" and "profile" not in e)
    small = next(e for e in entries if e.get("profile") == "small")
    assert base["backend_config"]["extra_args"] == ["--max-model-len", "4096"]
    assert small["backend_config"] == {"port": 24009, "extra_args": ["--max-model-len", "2048"]}


def test_save_writes_only_changes_and_never_the_discovered_file(folder):
    registry = Registry(folder)
    before = (folder / DISCOVERED_FILE).read_bytes()
    target = editing.load_target(registry, "stub", None)
    texts = texts_of(target)
    texts.update({"backend": "vllm", "backend_config.port": "24005"})
    changes, _ = editing.form_patch(target, texts)
    snap = registry.apply_curated("stub", changes, base_revision=target.curated_revision)
    stub = next(e for e in json.loads((folder / CURATED_FILE).read_text()) if e["name"] == "stub")
    assert stub == {"name": "stub", "backend": "vllm", "backend_config": {"port": 24005}}  # _config_needed cleared
    assert (folder / DISCOVERED_FILE).read_bytes() == before
    assert snap.revision == registry.snapshot().revision


def test_a_stale_form_conflicts_instead_of_overwriting(folder):
    registry = Registry(folder)
    target = editing.load_target(registry, "vl", None)
    registry.set_value("vl", "roles", ["chat"])                   # someone else saves meanwhile
    with pytest.raises(ConflictError):
        registry.apply_curated("vl", {"roles": ["vision"]}, base_revision=target.curated_revision)
    assert registry.entry("vl")["roles"] == ["chat"]


def test_fact_fields_are_refused_by_the_form_and_by_the_core(folder):
    registry = Registry(folder)
    target = editing.load_target(registry, "vl", None)
    before = (folder / CURATED_FILE).read_bytes()
    changes, errors = editing.form_patch(target, texts_of(target), extra={"size_bytes": 1, "metadata.notes": "x"})
    assert "fact" in errors["size_bytes"] and changes == {"metadata.notes": "x"}
    with pytest.raises(FactFieldRefused):   # a crafted request that skips the form
        registry.apply_curated("vl", {"metadata.architecture.num_layers": 1}, base_revision=target.curated_revision)
    assert (folder / CURATED_FILE).read_bytes() == before


def test_launch_preview_shows_the_final_argv_or_the_launch_check(folder):
    registry = Registry(folder)
    target = editing.load_target(registry, "vl", None)
    plan, error = editing.launch_preview(
        target.merged({"backend_config.extra_args": ["--max-model-len", "4096", "--enforce-eager"]}).entry,
        registry.settings)
    assert error is None and plan.argv[:3] == ["vllm", "serve", "/models/vl"]
    assert plan.argv[-3:] == ["--max-model-len", "4096", "--enforce-eager"]
    for args, expected in ((["--port", "1"], "--port"), (["--enforce-eager", "--enforce-eager"], "twice"),
                           (["--max-model-len"], "takes a value")):
        plan, error = editing.launch_preview(target.merged({"backend_config.extra_args": args}).entry,
                                             registry.settings)
        assert plan is None and expected in error and "'vl'" in error


def test_layer_diff_rows(folder):
    registry = Registry(folder, "small")
    merged = registry.merged()
    rows = {r.field: r for r in layer_diff(registry.discovered_entries(), registry.curated_entries(), merged,
                                            "small", ["vl"])}
    port = rows["backend_config.port"]
    assert (port.discovered, port.curated, port.profile, port.merged, port.source) == (
        None, 24001, 24009, 24009, "profile:small")
    assert rows["display_name"].changed and not rows["quantization"].changed
    changed = layer_diff(registry.discovered_entries(), registry.curated_entries(), merged, "small",
                         changed_only=True)
    assert {r.name for r in changed} == {"vl", "gguf", "stub", "gone", "legacy"}
    assert all(r.changed for r in changed)


def test_snapshot_drift_and_history_diff(folder):
    registry = Registry(folder)
    registry.rebuild()
    registry.set_value("vl", "roles", ["chat"])
    curated = json.loads((folder / CURATED_FILE).read_text())
    curated[0]["backend_config"]["port"] = 25000                   # a hand edit, no rebuild
    (folder / CURATED_FILE).write_text(json.dumps(curated, indent=2) + "\n")
    drift = view.snapshot_drift(registry.snapshot().entries, registry.merged().entries)
    assert drift == [{"name": "vl", "field": "backend_config.port", "snapshot": 24001, "layers": 25000}]
    item = registry.history_items()[0]
    diff = view.history_diff(registry, item.id)
    removed = [line for line in diff.splitlines() if line.startswith("-")]
    added = [line for line in diff.splitlines() if line.startswith("+")]
    assert any('"port": 25000' in line for line in removed) and any('"port": 24001' in line for line in added)
    assert any('"roles": [' in line for line in removed)


def test_fact_rows_are_facts_only(folder):
    merged = Registry(folder).merged()
    rows = view.fact_rows(merged.by_name["vl"], merged.sources["vl"])
    fields = {r["field"] for r in rows}
    assert {"size_bytes", "metadata.format", "metadata.architecture.max_position_embeddings"} <= fields
    assert not fields & {"display_name", "backend", "backend_config.port"}
