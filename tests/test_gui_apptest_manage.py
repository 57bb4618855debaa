"""The management pages through Streamlit's AppTest: editor drafts kept per model, ranges that disable Save, roles
and priorities, the settings writer, model folders with a dry run, migrate, fit apply, remove a model."""
from __future__ import annotations

import json

import pytest

from modelreg.registry import Registry
from modelreg.settings import PROXY_URL_ENV
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from support import free_port
from support.apptest import field, open_app, run_until
from support.gui_servers import STORY_MODEL, gui_registry, shown
from support.tiny_gguf import write_tiny_gguf

LLAMA = "llama-3.1-8b-instruct_(Q4_K_M)"
MISTRAL = "mistral-7b-instruct-v0.3_(BF16)"
PHI = "phi-3.5-mini-instruct_(Q4_K_M)"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    for name in ("MODELREG_ADMIN_TOKEN", "MODELREG_PROFILE", PROXY_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    folder = gui_registry(tmp_path / "configs", proxy_port=free_port())
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(folder))
    return folder


def settings_of(folder) -> dict:
    return json.loads((folder / "settings.json").read_text())


def test_edits_are_kept_per_model_across_models_and_pages_until_discarded(folder):
    before = (folder / CURATED_FILE).read_bytes()
    at = open_app("editor_page.py")
    at.selectbox(key="editor_picker").set_value(MISTRAL).run()
    field(at, "backend_config.port").set_value("24100").run()
    at.selectbox(key="editor_picker").set_value(LLAMA).run()
    assert field(at, "backend_config.port").value == "24002"
    assert any(f"Unsaved edits kept for: {MISTRAL}" in shown(c.value) for c in at.caption)
    at.switch_page("models_page.py").run()
    at.switch_page("editor_page.py").run()
    at.selectbox(key="editor_picker").set_value(MISTRAL).run()
    assert field(at, "backend_config.port").value == "24100"      # nothing lost
    assert any("**Pending:** set backend_config.port" in shown(m.value) for m in at.markdown)
    at.button(key="discard_edits").click().run()
    assert field(at, "backend_config.port").value == "24003" and not at.session_state["editor_drafts"]
    assert (folder / CURATED_FILE).read_bytes() == before


def test_out_of_range_values_disable_save_and_typed_generation_saves(folder):
    at = open_app("editor_page.py")
    at.selectbox(key="editor_picker").set_value(LLAMA).run()
    field(at, "generation_defaults.temperature").set_value("3").run()
    assert any("temperature: 3 is above the maximum 2" in shown(e.value) for e in at.error)
    assert at.button(key="save").disabled
    field(at, "generation_defaults.temperature").set_value("0.2").run()
    field(at, "generation_defaults.top_k").set_value("40").run()
    field(at, "generation_defaults").set_value('{"seed": 7}').run()
    assert not at.button(key="save").disabled
    at.button(key="save").click().run()
    assert Registry(folder).entry(LLAMA)["generation_defaults"] == {
        "context_window": 16384, "temperature": 0.2, "top_k": 40, "seed": 7}


def test_roles_multiselect_and_priorities_as_numbers(folder):
    at = open_app("editor_page.py")
    at.selectbox(key="editor_picker").set_value(LLAMA).run()
    roles = field(at, "roles")
    assert {"chat", "tools", "vision", "embedding"} <= set(roles.options)
    roles.set_value(["chat", "coding"]).run()  # a new role is typed in
    gen = at.session_state["edit_gen"]
    at.number_input(key=f"ed:{gen}:priority:coding").set_value(20).run()
    at.button(key="save").click().run()
    entry = Registry(folder).entry(LLAMA)
    assert entry["roles"] == ["chat", "coding"] and entry["role_priority"] == {"coding": 20}


def test_settings_are_written_through_the_core_writer(folder, monkeypatch):
    monkeypatch.setenv(PROXY_URL_ENV, "http://127.0.0.1:9")
    at = open_app("settings_page.py")
    assert any("runs at `http://127.0.0.1:9`" in shown(w.value) for w in at.warning)
    at.button(key="proxy_url_fix").click().run()
    assert settings_of(folder)["proxy_url"] == "http://127.0.0.1:9"
    at.text_input(key="proxy_url_text").set_value("localhost-no-port").run()
    at.button(key="proxy_url_save").click().run()
    assert any("Not saved" in shown(e.value) and "not a URL" in shown(e.value) for e in at.error)
    at.segmented_control(key="settings_scope").set_value("rtx4080").run()
    at.text_input(key="set_gpu:rtx4080").set_value("24GiB")
    at.number_input(key="set_high:rtx4080").set_value(25100).run()
    at.button(key="machine_save").click().run()
    assert settings_of(folder)["profiles"]["rtx4080"] == {
        "gpu_memory": "24GiB", "gpu_memory_utilization": 0.85, "port_range": [24001, 25100]}
    assert Registry(folder).settings.gpu_memory == "16GiB"  # the base setting is untouched
    assert any("the proxy is not running" in shown(s.value) for s in at.success)  # the save says what applied it


def test_model_folders_dry_run_then_apply(folder, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    write_tiny_gguf(root / "tiny-F32.gguf")
    at = open_app("folders_page.py")
    assert any("No model roots" in shown(i.value) for i in at.info)
    assert at.button(key="rescan").disabled
    at.text_input(key="picker_path").set_value(str(tmp_path / "nope")).run()
    at.button(key="root_add").click().run()
    assert any("is not an existing folder" in shown(e.value) for e in at.error)
    at.text_input(key="picker_path").set_value(str(root)).run()
    at.button(key="scan_folder").click().run()
    run_until(at, lambda: any("Dry run, nothing written" in shown(i.value) for i in at.info), "the scan")
    assert any("1 to add, 0 to update" in shown(i.value) for i in at.info), [i.value for i in at.info]
    before = Registry(folder).snapshot().by_name
    at.button(key="scan_apply").click().run()
    run_until(at, lambda: any("Scan done: 1 added" in shown(s.value) for s in at.success), "the scan")
    assert len(Registry(folder).snapshot().by_name) == len(before) + 1
    at.button(key="root_add").click().run()
    assert settings_of(folder)["model_roots"] == [str(root)]


def test_migrate_previews_then_moves_legacy_config(folder):
    discovered = json.loads((folder / DISCOVERED_FILE).read_text())
    next(e for e in discovered if e["name"] == PHI)["backend_config"]["extra_args"] = ["-c", "4096"]
    (folder / DISCOVERED_FILE).write_text(json.dumps(discovered))
    at = open_app("settings_page.py")
    assert any("warning(s)" in e.label for e in at.expander)
    preview = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert list(preview["field"]) == ["backend_config.extra_args"] and list(preview["action"]) == ["moved"]
    at.button(key="migrate").click().run()
    curated = next(e for e in json.loads((folder / CURATED_FILE).read_text()) if e["name"] == PHI)
    assert curated["backend_config"]["extra_args"] == ["-c", "4096"]
    assert not any(b.key == "migrate" for b in at.button)


def test_fit_applies_the_context_to_curated(folder):
    at = open_app("fit_page.py")
    at.selectbox(key="fit_picker").set_value(MISTRAL).run()
    at.slider(key=f"fit_context:{MISTRAL}:None").set_value(4096).run()
    assert any("KV cache at 4,096" == m.label for m in at.metric)
    at.button(key="fit_apply").click().run()
    assert Registry(folder).entry(MISTRAL)["backend_config"]["extra_args"] == [
        "--max-model-len", "4096", "--enable-auto-tool-choice", "--tool-call-parser", "mistral"]  # in place


def test_fits_apply_writes_the_context_field_where_the_context_lives_there(folder):
    """Llama's context lives in generation_defaults.context_window: Apply writes that field, not a flag beside it."""
    at = open_app("fit_page.py")
    at.selectbox(key="fit_picker").set_value(LLAMA).run()
    at.slider(key=f"fit_context:{LLAMA}:None").set_value(4096).run()
    assert at.button(key="fit_apply").label == "Apply context window 4096 to curated"
    at.button(key="fit_apply").click().run()
    entry = Registry(folder).entry(LLAMA)
    assert entry["generation_defaults"]["context_window"] == 4096
    assert entry["backend_config"]["extra_args"] == ["--n-gpu-layers", "99", "--flash-attn", "on"]  # no -c added


def test_remove_a_model_keeps_curated_unless_ticked(folder):
    at = open_app()
    at.selectbox(key="models_picker").set_value(STORY_MODEL).run()
    at.button(key="row_remove").click().run()
    assert any("Delete its files (not possible" in c.label for c in at.checkbox)
    at.button(key="remove_confirm").click().run()
    assert STORY_MODEL not in {e["name"] for e in Registry(folder).discovered_entries()}
    assert any(e["name"] == STORY_MODEL for e in json.loads((folder / CURATED_FILE).read_text()))


def test_hosts_are_added_edited_and_removed_on_the_hosts_page(folder):
    def cell(at, number, column):
        return next(t for t in at.text_input if t.key.startswith("host:") and t.key.endswith(f":{number}:{column}"))

    at = open_app("hosts_page.py")
    cell(at, 0, "name").set_value("gpu-b").run()
    cell(at, 0, "url").set_value("http://127.0.0.1:9").run()
    cell(at, 0, "profile").set_value("rtx4080").run()
    at.button(key="hosts_save").click().run()
    assert not at.exception, at.exception
    hosts = json.loads((folder / "settings.json").read_text())["hosts"]
    assert hosts == {"gpu-b": {"url": "http://127.0.0.1:9", "profile": "rtx4080"}}
    assert any("Saved `hosts`" in s.value for s in at.success)
    cell(at, 1, "name").set_value("gpu-b").run()  # a second row with the same name is refused, nothing written
    cell(at, 1, "url").set_value("http://127.0.0.1:10").run()
    at.button(key="hosts_save").click().run()
    assert any("used twice" in e.value for e in at.error)
    assert json.loads((folder / "settings.json").read_text())["hosts"] == hosts
    cell(at, 1, "name").set_value("gpu-c").run()
    cell(at, 1, "url").set_value("not a url").run()  # the settings writer checks each value
    at.button(key="hosts_save").click().run()
    assert any("Not saved" in e.value for e in at.error)
    for column in ("name", "url", "profile"):  # clearing both rows removes every host
        cell(at, 0, column).set_value("").run()
        cell(at, 1, column).set_value("").run()
    at.button(key="hosts_save").click().run()
    assert json.loads((folder / "settings.json").read_text()).get("hosts") in (None, {})
