"""The management views (no Streamlit): editor tabs, typed generation defaults and ranges, true provenance, roles and
priorities, table cells without literal None, history labels, fit at a context, running backend rows."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from modelreg.errors import RegistryError
from modelreg.history import HistoryItem
from modelreg.registry import UNSET, Registry
from modelreg.views import editor as editing
from modelreg.views import fit as fitting
from modelreg.views import models as view
from modelreg.views.messages import in_gui
from modelreg.views.running import running_rows, uptime
from support.layers import discovered_model, write_layers


@pytest.fixture
def folder(tmp_path):
    discovered = [discovered_model("m", "/models/m", chat_template={"source": "embedded", "sha256": "ab"},
                                   metadata={"format": "safetensors", "architecture": {
                                       "num_layers": 32, "num_kv_heads": 8, "head_dim": 128,
                                       "context_length": 131072}}, size_bytes=16 * 10 ** 9)]
    curated = [{"name": "m", "backend": "vllm", "roles": ["chat"],
                "backend_config": {"port": 24001, "extra_args": None},
                "generation_defaults": {"temperature": 0.7, "seed": 7}},
               {"name": "other", "roles": ["vision", "chat"]}]
    return write_layers(tmp_path / "configs", discovered, curated)


def states(folder, name="m"):
    return {s.spec.path: s for s in editing.field_states(editing.load_target(Registry(folder), name, None))}


def test_every_field_is_in_one_tab_and_the_tabs_are_in_order():
    assert {f.group for f in editing.EDITOR_FIELDS} == set(editing.GROUPS)
    launch = [f.path for f in editing.EDITOR_FIELDS if f.group == editing.LAUNCH]
    assert launch[:3] == ["backend", "backend_config.port", "backend_config.extra_args"]
    assert {"roles", "role_priority", "model_aliases", "served_model_id"} <= {
        f.path for f in editing.EDITOR_FIELDS if f.group == editing.ROUTING}


def test_provenance_is_true_for_null_objects_and_plain_values(folder):
    by_path = states(folder)
    assert by_path["backend"].provenance == "from curated"
    assert by_path["backend_config.extra_args"].value is None
    assert by_path["backend_config.extra_args"].provenance == "not set (the edited entry holds null: no opinion)"
    assert by_path["chat_template"].provenance == "from discovered"  # an object: its fields' layer, not "unset"
    assert by_path["served_model_id"].provenance == "not set"
    mixed = editing.provenance("a", {"x": 1, "y": 2}, {"a.x": "curated", "a.y": "discovered"})
    assert mixed == "from curated (x); discovered (y)"


def test_typed_generation_defaults_with_ranges_and_the_json_rest(folder):
    target = editing.load_target(Registry(folder), "m", None)
    by_path = states(folder)
    assert by_path["generation_defaults.temperature"].text == "0.7"
    assert by_path["generation_defaults"].value == {"seed": 7}  # only the keys without a field of their own
    changes, errors = editing.form_patch(target, {
        "generation_defaults.temperature": "2.5", "generation_defaults.top_p": "0.9",
        "backend_config.ready_timeout": "0", "generation_defaults.max_tokens": "0"})
    assert errors == {"generation_defaults.temperature": "temperature: 2.5 is above the maximum 2",
                      "backend_config.ready_timeout": "ready timeout (s): 0 is below the minimum 1",
                      "generation_defaults.max_tokens": "max_tokens: 0 is below the minimum 1"}
    assert changes == {"generation_defaults.top_p": 0.9}
    changes, errors = editing.form_patch(target, {"generation_defaults": '{"min_p": 0.05}',
                                                  "generation_defaults.stop_sequences": "</s>, END"})
    assert not errors
    assert changes == {"generation_defaults.seed": UNSET, "generation_defaults.min_p": 0.05,
                       "generation_defaults.stop_sequences": ["</s>", "END"]}
    Registry(folder).apply_curated("m", changes)
    assert Registry(folder).entry("m")["generation_defaults"] == {
        "temperature": 0.7, "min_p": 0.05, "stop_sequences": ["</s>", "END"]}  # the typed key beside it is kept
    _, errors = editing.form_patch(target, {"generation_defaults": '{"temperature": 1}'})
    assert "has its own field" in errors["generation_defaults"]


def test_roles_come_from_the_registry_and_priorities_are_numbers(folder):
    assert editing.known_roles(Registry(folder).curated_entries()) == ["chat", "vision"]
    assert editing.priority_text({"chat": 10.0, "vision": None}) == '{\n  "chat": 10\n}'
    assert editing.priority_text({"chat": None}) == ""
    target = editing.load_target(Registry(folder), "m", None)
    changes, _ = editing.form_patch(target, {"roles": "chat, tools", "role_priority": '{"tools": 5}'})
    assert changes == {"roles": ["chat", "tools"], "role_priority": {"tools": 5}}
    assert editing.pending_summary(changes) == "set roles, set role_priority"


def test_table_cells_carry_a_letter_and_never_none():
    assert view.cell_label(None, "unset") == "" and view.cell_label("", "curated") == ""
    assert view.cell_label("vllm", "curated") == "vllm ᶜ"
    assert view.cell_label(131072, "discovered") == "131,072 ᵈ"
    assert view.cell_label("ok", "derived") == "ok"
    assert set(view.LAYER_CUES) == set(view.LAYER_COLORS) - {"unset", "derived"}
    assert len(set(view.LAYER_CUES.values())) == len(view.LAYER_CUES)


def test_total_size_of_the_listed_rows(folder):
    registry = Registry(folder)
    merged = registry.merged()
    rows = view.model_rows(merged.entries, merged.sources, merged.overridden, registry.settings)
    assert view.total_size_gb(rows) == 16.0


def test_history_items_are_labelled_by_what_each_version_is():
    items = [HistoryItem("3", "2026-01-03", "m: set roles", "r3"), HistoryItem("2", "2026-01-02", "m: set port", "r2"),
             HistoryItem("1", "2026-01-01", "stub m", "r1")]
    labels = view.history_labels(items)
    assert labels["3"] == "version after “m: set port”, saved 2026-01-02 · replaced 2026-01-03 by “m: set roles”"
    assert labels["1"] == "oldest kept version (before 2026-01-01) · replaced 2026-01-01 by “stub m”"


def test_fit_at_a_context_and_the_flag_written_to_curated(folder):
    registry = Registry(folder)
    entry = registry.entry("m")
    small, large = fitting.fit_at(entry, registry.settings, 4096), fitting.fit_at(entry, registry.settings, 131072)
    per_token = 2 * 32 * 8 * 128 * 2
    assert small["context_kv_bytes"] == 4096 * per_token
    assert small["used_bytes"] == small["weights_bytes"] + small["overhead_bytes"] + 4096 * per_token
    assert small["fits_context"] is False  # 16 GB of weights on the default 16 GiB GPU at 0.9
    bigger = registry.settings.model_copy(update={"gpu_memory": "24GiB"})
    assert fitting.fit_at(entry, bigger, 4096)["fits_context"] and not fitting.fit_at(entry, bigger, 131072)[
        "fits_context"]
    assert large["context_kv_bytes"] > small["context_kv_bytes"]
    assert fitting.with_context({**entry, "backend_config": {"extra_args": ["--max-model-len=8192", "--enforce-eager",
                                                                            "--max_model_len", "9"]}}, 4096) == [
        "--max-model-len=4096", "--enforce-eager"]  # in place, as written; the later setting goes
    gguf = {"backend": "llama.cpp", "backend_config": {"extra_args": ["-c", "2048", "-ngl", "99"]}}
    assert fitting.with_context(gguf, 1024) == ["-c", "1024", "-ngl", "99"]
    assert fitting.with_context({**gguf, "backend_config": {"extra_args": ["-ngl", "99", "-c"]}}, 1024) == [
        "-ngl", "99", "-c", "1024"]  # a flag missing its value gets one
    assert fitting.with_context({**gguf, "backend_config": {}}, 512) == ["--ctx-size", "512"]
    with pytest.raises(RegistryError, match="no context flag"):
        fitting.with_context({"name": "x", "backend": None}, 1)


def test_running_rows_say_uptime_and_state():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert uptime("2026-01-01T11:58:55+00:00", now) == "1m 05s"
    assert uptime("2026-01-01T09:00:00.000+00:00", now) == "3h 00m" and uptime(None, now) == ""
    rows = running_rows([{"name": "m", "pid": 9, "port": 24001, "argv": ["vllm", "serve", "a b"], "ready": True,
                          "in_flight": 2, "started_at": "2026-01-01T11:59:50+00:00"},
                         {"name": "n", "stale_reason": "argv changed"}], now)
    assert rows[0] == {"name": "m", "pid": 9, "port": 24001, "uptime": "10s", "in flight": 2, "state": "ready",
                       "argv": "vllm serve 'a b'"}
    assert rows[1]["state"] == "stale: argv changed" and rows[1]["argv"] == ""


def test_a_scan_job_logs_each_model_stubs_the_new_ones_and_reloads_the_proxy(folder, tmp_path):
    from modelreg.jobs import JobRegistry
    from modelreg.proxy.client import ProxyAdmin
    from support import free_port, model_folders

    model_folders.llama32_1b_gguf(tmp_path / "models" / "gguf")
    registry, jobs = Registry(folder), JobRegistry()
    admin = ProxyAdmin(f"http://127.0.0.1:{free_port()}", folder)  # no proxy there: the reload says so
    dry = view.start_scan_job(jobs, registry, admin, [str(tmp_path / "models")], dry_run=True)
    assert dry.wait(60) and dry.result.stubs and "stubs to create" in "\n".join(dry.lines())
    assert set(Registry(folder).merged().by_name) == {"m", "other"}  # a dry run writes nothing
    job = view.start_scan_job(jobs, registry, admin, [str(tmp_path / "models")])
    assert job.wait(60) and job.result.stubs == dry.result.stubs
    log = "\n".join(job.lines())
    assert f"new  {job.result.stubs[0]}" in log and "stubs created" in log and "proxy" in log.splitlines()[-1]
    assert set(job.result.stubs) <= set(Registry(folder).merged().by_name)


def test_a_settings_form_changes_only_what_differs():
    from modelreg.settings import Settings
    from modelreg.views.settings import changed_settings

    settings = Settings(port_range=(24001, 24999), gpu_memory="16GiB")
    form = {"gpu_memory": "24GiB", "port_range": [24001, 24999], "gpu_memory_utilization": 0.9,
            "executables": {**settings.executables}}
    assert changed_settings(settings, form) == {"gpu_memory": "24GiB"}
    assert changed_settings(settings, {**form, "port_range": [24001, 25000]})["port_range"] == [24001, 25000]


def test_messages_in_the_gui_name_the_page_and_field_not_a_command(folder):
    registry = Registry(folder)
    target = editing.load_target(registry, "m", None)
    _, errors = editing.form_patch(target, {"backend_config.port": "70000"}, settings=registry.settings)
    assert "modelreg set m backend_config.port" in errors["backend_config.port"]  # the CLI's words, for the CLI
    told = in_gui(errors["backend_config.port"])
    assert "modelreg" not in told and "in the Model editor, set backend_config.port to" in told
    assert in_gui("(`modelreg unset 'a b' chat_template`)") == "(in the Model editor, reset chat_template)"
    assert "Settings & status" in in_gui("install llama-server or set its full path in settings.json: /x")


def test_a_pending_value_that_does_not_parse_is_an_unsaved_edit_and_conflicts_are_per_field(folder):
    registry = Registry(folder)
    target = editing.load_target(registry, "m", None)
    texts = {"backend_config.extra_args": "--seed 'x", "generation_defaults.temperature": "0.2"}
    changes, errors = editing.form_patch(target, texts)
    assert "backend_config.extra_args" in errors and "backend_config.extra_args" not in changes
    edited = editing.edited_paths(target, texts)
    assert set(edited) == set(texts)
    assert editing.unsaved_summary(changes, edited) == (
        "set generation_defaults.temperature, backend_config.extra_args (not valid yet)")
    registry.set_value("m", "generation_defaults.temperature", 0.9)
    registry.set_value("m", "roles", ["other-window"])
    fresh = editing.load_target(registry, "m", None)
    clashes = editing.conflicts(target, fresh, changes)
    assert clashes == [editing.FieldConflict("generation_defaults.temperature", 0.2, 0.9)]
    assert editing.resolve(changes, {"generation_defaults.temperature"}) == {}
    assert editing.conflict_text(UNSET, "roles") == "not set"
