"""Every GUI page through Streamlit's AppTest: select, edit, save, reset, conflict, restore, launch test, status.

The registry is a copy of the demo in configs/; saves reach a real `modelreg proxy` where a test needs one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from modelreg.values import human_size
from modelreg.views.models import LAYER_COLORS
from support import free_port
from support.apptest import field, layer_background, models_table, open_app, run_until
from support.fake_hub import FakeHub, point_client_at
from support.fake_ollama import FakeOllama
from support.gui_servers import REPO, STORY_MODEL, gui_registry, shown, start_proxy
from support.tiny_gguf import tiny_entry, write_tiny_gguf

LLAMA = "llama-3.1-8b-instruct_(Q4_K_M)"
MISTRAL = "mistral-7b-instruct-v0.3_(BF16)"
TINY = "tiny-llama_(F32)"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELREG_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("MODELREG_PROFILE", raising=False)
    folder = gui_registry(tmp_path / "configs", proxy_port=free_port())
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def proxy(folder, tmp_path):
    port = int(json.loads((folder / "settings.json").read_text())["proxy_url"].rsplit(":", 1)[1])
    served = start_proxy(folder, port, tmp_path)
    yield f"http://127.0.0.1:{port}"
    served.stop()


def proxy_status(url: str, folder: Path) -> dict:
    token = (folder / ".admin-token").read_text().strip()
    return httpx.get(url + "/admin/status", headers={"Authorization": f"Bearer {token}"}).json()


def editor_for(name: str, profile: str | None = None) -> AppTest:
    at = open_app("editor_page.py")
    at.selectbox(key="editor_picker").set_value(name).run()
    if profile:
        at.radio(key="edit_profile").set_value(profile).run()
    return at


def texts(at: AppTest, kind) -> list[str]:
    return [e.value for e in kind]


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(t.value for t in at.dataframe if column in t.value.columns)


def test_models_page_colors_every_cell_by_layer_and_filters(folder):
    at = open_app()
    rows = {row["name"][0]: row for row in models_table(at)}
    assert rows[LLAMA]["display name"][1] == "override" and rows[LLAMA]["backend"][1] == "curated"
    assert rows[LLAMA]["format"][1] == "discovered"
    assert {layer: layer_background(at, layer) for layer in ("override", "curated", "discovered", "unset")} == {
        layer: LAYER_COLORS[layer][1] for layer in ("override", "curated", "discovered", "unset")}
    assert rows[STORY_MODEL]["extra_args"] == ("", "unset")
    assert rows[STORY_MODEL]["status"][0] == "needs config"
    table = next(e.proto.body for e in at.html if "mr-legend" in e.proto.body)
    assert f'title="{rows[LLAMA]["extra_args"][0]}"' in table  # a cell cut by its column shows in full on hover
    assert f'title="{rows[LLAMA]["format"][0]}"' not in table
    assert LAYER_COLORS["override"][0] in table and "mr-chip l-override" in table  # the legend
    at.multiselect(key="f_backend").set_value(["ollama"]).run()
    assert {row["backend"][0] for row in models_table(at)} == {"ollama ᶜ"}  # the value and its layer's letter
    assert at.get("popover")[0].proto.popover.label == "Filter & sort (1)"
    at.multiselect(key="f_backend").set_value([]).run()
    at.text_input(key="f_text").set_value("enforce").run()
    assert not models_table(at) and any("No model matches" in shown(i.value) for i in at.info)
    at.text_input(key="f_text").set_value("max-model-len").run()
    assert [row["name"][0] for row in models_table(at)] == [MISTRAL]


def test_models_page_sorts_and_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(gui_registry(tmp_path / "configs", free_port(), extra_models=60)))
    at = open_app()
    first = [row["name"][0] for row in models_table(at)]
    assert len(first) == 50 and first == sorted(first, key=str.lower)
    assert at.number_input(key="f_page").label == "Page (of 2)"
    at.number_input(key="f_page").set_value(2).run()
    second = [row["name"][0] for row in models_table(at)]
    assert len(second) == 17 and not set(first) & set(second) and first[-1].lower() < second[0].lower()
    at.selectbox(key="models_picker").set_value(first[3]).run()  # picking a model turns to its page
    assert at.number_input(key="f_page").value == 1
    assert any(f'data-model="{first[3]}" class="selected"' in e.proto.body for e in at.html)
    at.selectbox(key="f_sort").set_value("size GB").run()
    at.toggle(key="f_desc").set_value(True).run()
    assert at.get("popover")[0].proto.popover.label == "Filter & sort (1)"
    sizes = [float(row["size GB"][0].split()[0]) for row in models_table(at) if row["size GB"][0]]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) > 1
    assert any('title="column: size GB">GB ▼</th>' in e.proto.body for e in at.html)


def test_an_empty_registry_says_what_to_do_next(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(tmp_path))
    at = open_app()
    assert not models_table(at) and "No models yet" in at.subheader[0].value
    links = at.get("page_link")
    assert [link.proto.page for link in links] == ["folders_page", "download_page"]
    assert any("modelreg import llama-swap CONFIG.yaml" in m.value for m in at.markdown)


def test_a_selected_row_opens_in_the_editor(folder):
    at = open_app()
    at.selectbox(key="models_picker").set_value(LLAMA).run()
    selected = [row for row in models_table(at) if row["name"][0] == LLAMA]
    assert selected and any(f'data-model="{LLAMA}" class="selected"' in e.proto.body for e in at.html)
    at.button(key="open_editor").click().run()
    assert [t.value for t in at.title] == ["Model editor"]
    assert at.selectbox(key="editor_picker").value == LLAMA
    assert field(at, "display_name").value == "Llama 3.1 8B Instruct"


def test_save_writes_only_curated_and_the_proxy_serves_the_new_revision(folder, proxy):
    discovered_before = (folder / DISCOVERED_FILE).read_bytes()
    at = editor_for(STORY_MODEL)
    assert field(at, "backend_config.extra_args").value == ""
    field(at, "backend_config.extra_args").set_value("--max-model-len 4096 --enforce-eager").run()
    argv = [c.value for c in at.code if "serve" in c.value][0]
    assert argv.endswith("--max-model-len 4096 --enforce-eager")
    at.button(key="save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    curated = {e["name"]: e for e in json.loads((folder / CURATED_FILE).read_text()) if "profile" not in e}
    assert curated[STORY_MODEL]["backend_config"]["extra_args"] == ["--max-model-len", "4096", "--enforce-eager"]
    assert "_config_needed" not in curated[STORY_MODEL].get("metadata", {})
    assert (folder / DISCOVERED_FILE).read_bytes() == discovered_before
    revision = Registry(folder).snapshot().revision
    assert proxy_status(proxy, folder)["revision"] == revision
    assert any(f"the proxy serves revision {revision[:12]}" in shown(s.value) for s in at.success)
    assert field(at, "backend_config.extra_args").value == "--max-model-len 4096 --enforce-eager"  # reloaded form


def test_save_without_a_proxy_stands_and_says_so(folder):
    at = editor_for(MISTRAL)
    field(at, "roles").set_value(["chat"]).run()
    at.button(key="save").click().run()
    assert Registry(folder).entry(MISTRAL)["roles"] == ["chat"]
    assert any("proxy not reachable" in shown(w.value) and "the save stands" in shown(w.value) for w in at.warning)


def test_reset_to_discovered_removes_the_override(folder):
    at = editor_for(LLAMA)
    at.button(key=next(b.key for b in at.button if b.key and b.key.endswith(":display_name"))).click().run()
    assert field(at, "display_name").value == "Meta Llama 3.1 8B Instruct (Q4_K_M)"
    assert any("unset display_name" in shown(m.value) for m in at.markdown)
    at.button(key="save").click().run()
    curated = next(e for e in json.loads((folder / CURATED_FILE).read_text()) if e["name"] == LLAMA)
    assert "display_name" not in curated and curated["backend"] == "llama.cpp"
    assert Registry(folder).entry(LLAMA)["display_name"] == "Meta Llama 3.1 8B Instruct (Q4_K_M)"


def test_a_conflict_lists_only_the_fields_that_differ_each_with_a_choice(folder):
    at = editor_for(MISTRAL)
    registry = Registry(folder)
    registry.set_value(MISTRAL, "roles", ["from-another-window"])  # a field this form does not touch
    registry.set_value(MISTRAL, "generation_defaults.temperature", 0.9)  # one both change, differently
    registry.set_value(MISTRAL, "display_name", "Mistral (same)")  # one both change to the same value
    field(at, "backend_config.port").set_value("24100").run()
    field(at, "generation_defaults.temperature").set_value("0.5").run()
    field(at, "display_name").set_value("Mistral (same)").run()
    at.button(key="save").click().run()
    assert any("changed on disk" in shown(e.value) for e in at.error)
    assert not at.json  # no whole trees
    gen = at.session_state["edit_gen"]
    choices = [r for r in at.radio if r.key and r.key.startswith(f"conflict:{gen}:")]
    assert [r.key.rsplit(":", 1)[1] for r in choices] == ["generation_defaults.temperature"]
    labels = [shown(o) for o in choices[0].options]
    assert labels == ["mine: `0.5`", "on disk: `0.9`"], labels
    assert Registry(folder).entry(MISTRAL)["backend_config"]["port"] == 24003  # nothing written yet
    choices[0].set_value("theirs").run()
    at.button(key="save_over").click().run()
    entry = Registry(folder).entry(MISTRAL)
    assert entry["backend_config"]["port"] == 24100 and entry["roles"] == ["from-another-window"]
    assert entry["generation_defaults"]["temperature"] == 0.9 and entry["display_name"] == "Mistral (same)"


def test_a_value_that_does_not_parse_yet_is_an_unsaved_change(folder):
    at = editor_for(MISTRAL)
    field(at, "backend_config.extra_args").set_value("--max-model-len 8192 'x").run()
    assert not any(m.value == "No changes." for m in at.markdown)
    assert any("extra_args (not valid yet)" in shown(m.value) for m in at.markdown)
    assert not at.button(key="discard_edits").disabled and at.button(key="save").disabled
    assert ("mistral-7b-instruct-v0.3_(BF16)", None) in at.session_state["editor_drafts"]  # kept across pages
    at.button(key="discard_edits").click().run()
    assert any(m.value == "No changes." for m in at.markdown)
    assert "'x" not in field(at, "backend_config.extra_args").value


def test_an_error_shows_once_and_names_the_gui_fix(folder):
    at = editor_for(MISTRAL)
    field(at, "backend_config.port").set_value("70000").run()
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1 and "not a port" in errors[0], errors
    assert "modelreg set" not in errors[0] and "in the Model editor, set backend_config.port to" in errors[0]
    assert any("No command while a field above has an error" in c.value for c in at.caption)


def test_bad_input_and_fact_fields_are_refused_near_the_field(folder):
    before = (folder / CURATED_FILE).read_bytes()
    at = editor_for(MISTRAL)
    field(at, "backend_config.port").set_value("80a").run()
    assert any("not a whole number" in shown(e.value) for e in at.error)
    field(at, "backend_config.port").set_value("24003").run()
    field(at, "backend_config.extra_args").set_value("--port 9").run()
    assert any("`--port` is set by the launcher" in shown(e.value) for e in at.error) and at.button(key="save").disabled
    field(at, "backend_config.extra_args").set_value("--max-model-len 8192").run()
    assert not at.error and not at.button(key="save").disabled
    gen = at.session_state["edit_gen"]
    at.text_input(key=f"extra_path:{gen}").set_value("size_bytes").run()
    at.text_input(key=f"extra_value:{gen}").set_value("1").run()
    assert any("is a fact read from disk" in shown(e.value) for e in at.error)
    assert at.button(key="save").disabled
    assert (folder / CURATED_FILE).read_bytes() == before


@pytest.mark.parametrize("path, text, error", [
    ("backend_config.extra_args", "--max-model-length 8192", "did you mean `--max-model-len`?"),
    ("backend_config.extra_args", "--max_model_len 8192 --max-model-len 4096", "`--max-model-len` is given twice"),
    ("backend_config.extra_args", "--max-model-len", "takes a value but has none"),
    ("backend_config.extra_args", "--hos 0.0.0.0", "`--hos` (read as `--host`) is set by the launcher"),
    ("backend_config.port", "70000", "use a whole number from 1 to 65535"),
    ("chat_template", '{"source": "external", "path": "/no/such/template.jinja"}', "does not exist"),
])
def test_save_is_disabled_while_a_field_would_fail_the_launch(folder, path, text, error):
    """What the real backend would reject never reaches the curated file."""
    before = (folder / CURATED_FILE).read_bytes()
    at = editor_for(MISTRAL)
    field(at, path).set_value(text).run()
    assert any(error in shown(e.value) for e in at.error), [e.value for e in at.error]
    assert at.button(key="save").disabled
    assert (folder / CURATED_FILE).read_bytes() == before


def test_extra_args_take_a_json_list_and_show_what_they_parse_to(folder):
    at = editor_for(MISTRAL)
    field(at, "backend_config.extra_args").set_value('["--max-model-len", "4096", "--enforce-eager"]').run()
    assert any(t.value == 'parsed: ["--max-model-len", "4096", "--enforce-eager"]' for t in at.text)
    at.button(key="save").click().run()
    curated = {e["name"]: e for e in json.loads((folder / CURATED_FILE).read_text()) if "profile" not in e}
    assert curated[MISTRAL]["backend_config"]["extra_args"] == ["--max-model-len", "4096", "--enforce-eager"]


def test_profile_entry_is_edited_separately(folder):
    at = editor_for(MISTRAL, profile="rtx4080")
    assert "--enforce-eager" in field(at, "backend_config.extra_args").value
    field(at, "backend_config.port").set_value("24200").run()
    at.button(key="save").click().run()
    entries = json.loads((folder / CURATED_FILE).read_text())
    profile = next(e for e in entries if e["name"] == MISTRAL and e.get("profile") == "rtx4080")
    base = next(e for e in entries if e["name"] == MISTRAL and "profile" not in e)
    assert profile["backend_config"]["port"] == 24200 and base["backend_config"]["port"] == 24003


def test_diff_page_shows_layers_and_restores_history(folder):
    original = (folder / CURATED_FILE).read_bytes()
    Registry(folder).set_value(LLAMA, "backend_config.port", 25555)
    at = open_app("diff_page.py")
    at.selectbox(key="diff_picker").set_value(LLAMA).run()
    table = table_with(at, "discovered")
    port = table[table["field"] == "backend_config.port"].iloc[0]
    assert (port["curated"], port["merged"], port["from"]) == ("25555", "25555", "curated")
    diff = [c.value for c in at.code if c.language == "diff"][0]
    assert '"port": 25555' in diff and '"port": 24002' in diff
    at.button(key="restore").click().run()
    assert (folder / CURATED_FILE).read_bytes() != original  # asks first: nothing restored yet
    assert any('"port": 25555' in c.value for c in at.code if c.language == "diff")
    at.button(key="restore_confirm").click().run()
    assert (folder / CURATED_FILE).read_bytes() == original
    assert Registry(folder).entry(LLAMA)["backend_config"]["port"] == 24002


def test_diff_page_shows_a_stale_snapshot_and_rebuilds_it(folder):
    curated = json.loads((folder / CURATED_FILE).read_text())
    next(e for e in curated if e["name"] == LLAMA)["backend_config"]["port"] = 26000
    (folder / CURATED_FILE).write_text(json.dumps(curated, indent=2) + "\n")  # hand edit, no rebuild
    at = open_app("diff_page.py")
    assert any("is stale" in shown(w.value) for w in at.warning)
    drift = table_with(at, "snapshot")
    assert list(drift["field"]) == ["backend_config.port"] and list(drift["layers"]) == ["26000"]
    at.button(key="rebuild").click().run()
    assert any("is up to date" in shown(s.value) for s in at.success)


def test_launch_test_runs_the_real_server_in_the_background(folder, tiny_model):
    registry = Registry(folder)
    entry = tiny_entry(tiny_model, extra_args=[])
    registry.discovered_writer().upsert([{"name": TINY, "backend_config": {"model_path": str(tiny_model)},
                                          "metadata": {"format": "gguf"}}])
    registry.apply_curated(TINY, {"backend": entry["backend"], "backend_config.port": entry["backend_config"]["port"]})
    at = editor_for(TINY)
    field(at, "backend_config.extra_args").set_value("--n_ctx 256").run()
    at.button(key="save").click().run()
    at.button(key="editor_launch").click().run()
    assert [t.value for t in at.title] == ["Launch test"]
    at.switch_page("launch_page.py")  # AppTest stays on its own page after st.switch_page; a browser follows it
    deadline = time.monotonic() + 120
    while not any(TINY in a.value for a in [*at.success, *at.error]) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert [s.value for s in at.success if "answered" in s.value], [e.value for e in at.error]
    assert any(c.value.endswith("--n_ctx 256") for c in at.code)       # the argv used, with the new flag
    assert [m.value for m in at.metric if m.label == "context size"] == ["256"]  # the server's own report


def test_settings_page_switches_profile_and_shows_proxy_status(folder, proxy):
    at = open_app("settings_page.py")
    assert any("serves the snapshot on disk" in shown(s.value) for s in at.success)
    assert at.metric[0].label == "serves revision"
    assert any("Both layers validate" in shown(s.value) for s in at.success)
    at.selectbox(key="profile_choice").set_value("rtx4080").run()
    at.switch_page("models_page.py").run()
    args, layer = next(row["extra_args"] for row in models_table(at) if row["name"][0] == MISTRAL)
    assert "--enforce-eager" in args and layer == "profile"
    assert layer_background(at, "profile") == LAYER_COLORS["profile"][1]
    at.switch_page("settings_page.py").run()
    at.button(key="profile_default").click().run()
    assert json.loads((folder / "settings.json").read_text())["active_profile"] == "rtx4080"
    assert Registry(folder).profile == "rtx4080" and not [b for b in at.button if b.key == "profile_default"]
    assert any("the proxy applied it" in shown(s.value) for s in at.success)  # the running proxy reread settings


def test_rescan_runs_in_the_background_and_stubs_new_models(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    root = tmp_path / "models"
    root.mkdir()
    write_tiny_gguf(root / "tiny-llama-F32.gguf")
    settings = json.loads((folder / "settings.json").read_text())
    (folder / "settings.json").write_text(json.dumps({**settings, "model_roots": [str(root)]}))
    at = open_app("folders_page.py")
    assert any(str(root) in shown(m.value) for m in at.markdown)
    at.button(key="rescan").click().run()
    deadline = time.monotonic() + 60
    while not any("Scan" in a.value for a in [*at.success, *at.error]) and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    assert any("Scan done: 1 added" in shown(s.value) and "1 new stub(s)" in shown(s.value) for s in at.success), \
        [e.value for e in at.error]
    log = [c.value for c in at.code if "new" in c.value][0]
    registry = Registry(folder)
    demo = json.loads((REPO / "configs" / DISCOVERED_FILE).read_text())
    added = set(registry.snapshot().by_name) - {e["name"] for e in demo}
    assert len(added) == 1 and next(iter(added)) in log
    assert registry.entry(next(iter(added)))["metadata"]["_config_needed"] is True


# ---- the download wizard (issue 7), against the loopback Hub ------------------------------------------------------

GGUF_REPO = "tiny-org/tiny-llama-GGUF"
Q8 = "tiny-llama-Q8_0.gguf"


@pytest.fixture
def hub(folder, tmp_path, monkeypatch, tiny_model):
    """The loopback Hub serving a tiny GGUF repo (two quantizations); downloads go to tmp_path/models."""
    settings = json.loads((folder / "settings.json").read_text())
    (folder / "settings.json").write_text(json.dumps({**settings, "model_roots": [str(tmp_path / "models")]}))
    with FakeHub() as server:
        server.add_repo(GGUF_REPO, {"tiny-llama-F32.gguf": tiny_model.read_bytes(),
                                    Q8: tiny_model.read_bytes() + b"\0" * 32, "README.md": b"# tiny"})
        point_client_at(server, monkeypatch, tmp_path / "hf-home")
        yield server


def analysed(ref: str, at: AppTest | None = None, source: str = "hf") -> AppTest:
    at = at or open_app("download_page.py")
    at.radio(key="wz_source").set_value(source).run()
    at.text_input(key="wz_ref").set_value(ref)
    at.button(key="wz_analyse").click().run()
    assert not at.exception, at.exception
    return at


def variant_radio(at: AppTest):
    return next(r for r in at.radio if r.key.startswith("wz_variant:"))


def test_wizard_page_from_repo_id_to_a_saved_configuration(folder, hub, proxy, tmp_path, tiny_model):
    at = analysed(GGUF_REPO)
    wizard = at.session_state["wizard"]
    assert any("formats: gguf" in shown(m.value) and "chat template: gguf" in shown(m.value) for m in at.markdown)
    variants = variant_radio(at)
    size = human_size(tiny_model.stat().st_size + len("# tiny"))
    assert variants.value == "Q8_0" and f"F32 · gguf · {size} · 1 weight file(s)" in variants.options
    variants.set_value("F32").run()
    assert wizard.variant == "F32"
    assert any(f"2 file(s), {size} into `{tmp_path / 'models' / GGUF_REPO}`" in shown(i.value) for i in at.info)
    at.button(key="wz_download").click().run()
    run_until(at, lambda: wizard.step == "review", "the download")
    name = wizard.name
    assert any(f"{name} is registered" in shown(h.value) for h in at.subheader)
    facts = at.dataframe[0].value
    assert facts[facts["field"] == "metadata.format"]["value"].tolist() == ["gguf"]
    stub = json.loads(at.json[0].value)
    assert stub["metadata"]["_config_needed"] is True and stub["backend"] == "llama-cpp-python"  # installed here
    assert any("roles: not set" in shown(m.value) for m in at.markdown)

    at.button(key="wz_configure").click().run()
    at.selectbox(key=f"wz_field:{name}:backend").set_value("llama-cpp-python")
    at.text_input(key=f"wz_field:{name}:backend_config.extra_args").set_value("--n_ctx 256").run()
    assert any("llama_cpp.server" in c.value and c.value.endswith("--n_ctx 256") for c in at.code)
    assert not Registry(folder).entry(name)["backend_config"].get("extra_args")  # nothing written before save
    at.button(key="wz_save").click().run()
    assert not at.exception, at.exception
    entry = Registry(folder).entry(name)
    assert entry["backend"] == "llama-cpp-python" and entry["backend_config"]["extra_args"] == ["--n_ctx", "256"]
    assert "_config_needed" not in entry["metadata"]
    revision = Registry(folder).snapshot().revision
    assert proxy_status(proxy, folder)["revision"] == revision
    assert any(f"the proxy serves revision {revision[:12]}" in shown(s.value) for s in at.success)
    assert wizard.step == "launch_test" and not at.button(key="wz_launch").disabled


def test_wizard_page_explains_bad_input(folder, hub, monkeypatch):
    before = (folder / CURATED_FILE).read_bytes(), (folder / DISCOVERED_FILE).read_bytes()
    at = analysed("nobody/no-such-model")
    assert any("'nobody/no-such-model' not found" in shown(e.value) and "hf auth login" in shown(e.value)
               for e in at.error)
    analysed("../etc", at)
    assert any("is not a Hugging Face repo id" in shown(e.value) for e in at.error)
    hub.add_repo("evil/repo", {"config.json": b"{}", "../../evil.txt": b"x", "m.safetensors": b"y"})
    analysed("evil/repo", at)
    assert any("outside the model folder" in shown(e.value) for e in at.error) and at.button(key="wz_download").disabled
    monkeypatch.setattr("modelreg.views.wizard.free_space", lambda path: 1000)
    analysed(GGUF_REPO, at)
    assert any("Not enough disk space" in shown(e.value) and "1000 B free" in shown(e.value) for e in at.error)
    assert at.button(key="wz_download").disabled
    analysed("bad name!", at, source="ollama")
    assert any("is not an Ollama model name" in shown(e.value) for e in at.error)
    assert at.session_state["wizard"].step == "source"
    assert ((folder / CURATED_FILE).read_bytes(), (folder / DISCOVERED_FILE).read_bytes()) == before


def test_wizard_page_download_survives_failures_and_page_changes(folder, hub, tiny_model):
    hub.add_repo("corp/gated", {"model-Q4_K_M.gguf": tiny_model.read_bytes()}, gated="auto")
    names = set(Registry(folder).snapshot().by_name)
    at = analysed("corp/gated")
    wizard = at.session_state["wizard"]
    assert any("gated repo" in shown(w.value) and "hf auth login" in shown(w.value) for w in at.warning)
    at.button(key="wz_download").click().run()
    run_until(at, lambda: not wizard.job.running, "the gated download to fail")
    assert any("hf auth login" in shown(e.value) for e in at.error)
    first = wizard.job_id
    at.button(key="wz_retry").click().run()
    run_until(at, lambda: not wizard.job.running, "the retry to fail")
    assert wizard.job_id != first and any("hf auth login" in shown(e.value) for e in at.error)
    at.button(key="wz_back_source").click().run()
    assert at.text_input(key="wz_ref").value == "corp/gated"  # the form holds what the wizard holds

    hub.cut(Q8, after_bytes=100)
    hub.fail(Q8, status=500)  # the client's own retry fails too
    analysed(GGUF_REPO, at)
    at.button(key="wz_download").click().run()
    run_until(at, lambda: not wizard.job.running, "the broken download to fail")
    assert any("network or server failure" in shown(e.value) and "resumes" in shown(e.value) for e in at.error)
    assert set(Registry(folder).snapshot().by_name) == names  # nothing half-registered
    pause = hub.hold(Q8, after_bytes=1000)
    at.button(key="wz_retry").click().run()
    assert pause.reached.wait(20)
    at.switch_page("models_page.py").run()
    at.switch_page("download_page.py").run()  # another page and back: the same job, still running
    assert wizard.step == "download" and wizard.job.running and at.get("progress")
    pause.release.set()
    run_until(at, lambda: wizard.step == "review", "the resumed download")
    assert any(f"{wizard.name} is registered" in shown(h.value) for h in at.subheader)
    assert Registry(folder).entry(wizard.name)["backend_config"]["model_path"].endswith(Q8)


def test_wizard_page_pulls_an_ollama_model(folder, tmp_path, monkeypatch, tiny_model):
    store = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    with FakeOllama(store) as daemon:
        daemon.add_model("tiny:q8", tiny_model.read_bytes(), template="{{ .Prompt }}")
        settings = json.loads((folder / "settings.json").read_text())
        (folder / "settings.json").write_text(json.dumps({**settings, "ollama_host": daemon.host}))
        at = analysed("tiny:q8", source="ollama")
        assert any(f"Pulls `tiny:q8` through the Ollama daemon at {daemon.host}" in shown(i.value) for i in at.info)
        at.button(key="wz_download").click().run()
        wizard = at.session_state["wizard"]
        run_until(at, lambda: wizard.step == "review", "the pull")
    stub = json.loads(at.json[0].value)
    assert stub["backend"] == "ollama" and stub["metadata"]["_config_needed"] is True
    assert Registry(folder).entry(wizard.name)["backend_config"]["model_path"] == "ollama:/tiny:q8"


def test_the_context_field_shows_and_edits_the_one_place_it_lives(folder):
    """Mistral's context lives in its --max-model-len: the field shows it, an edit there rewrites that flag in place,
    and a flag typed into extra_args that differs from the field is an error naming both."""
    at = editor_for(MISTRAL)
    assert field(at, "generation_defaults.context_window").value == "16384"
    field(at, "generation_defaults.context_window").set_value("8192").run()
    assert "**Pending:** set backend_config.extra_args" in shown(" ".join(m.value for m in at.markdown))
    assert not at.error
    at.button(key="save").click().run()
    curated = {e["name"]: e for e in json.loads((folder / CURATED_FILE).read_text()) if "profile" not in e}
    assert curated[MISTRAL]["backend_config"]["extra_args"][:2] == ["--max-model-len", "8192"]
    assert "context_window" not in curated[MISTRAL]["generation_defaults"]
    at = editor_for(LLAMA)  # its context lives in the field; a differing -c in extra_args is refused
    field(at, "backend_config.extra_args").set_value("--n-gpu-layers 99 --flash-attn on -c 512").run()
    both = "generation_defaults.context_window is 16384 and backend_config.extra_args --ctx-size is 512"
    assert any(both in shown(e.value) for e in at.error), [e.value for e in at.error]
    assert at.button(key="save").disabled


def test_one_rerun_merges_checks_and_plans_the_entry_once(folder, monkeypatch):
    """The editor computes the edited entry's merge, launch check and launch plan once per rerun (it was six merges)."""
    import modelreg.launch.planning.plan as plan_module
    import modelreg.views.editor as editor_module
    counts = {"merge": 0, "check": 0, "plan": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(editor_module, "merge_entry", counted("merge", editor_module.merge_entry))
    monkeypatch.setattr(plan_module, "check_config", counted("check", plan_module.check_config))
    import modelreg.launch.planning.checks as checks_module
    monkeypatch.setattr(checks_module, "check_config", counted("check", checks_module.check_config))
    monkeypatch.setattr(editor_module, "launch_plan", counted("plan", editor_module.launch_plan))
    at = editor_for(MISTRAL)
    field(at, "backend_config.port").set_value("24100").run()  # an edit pending: the edited entry differs
    counts.update(merge=0, check=0, plan=0)
    at.run()
    assert not at.exception and "set backend_config.port" in shown(" ".join(m.value for m in at.markdown))
    assert counts == {"merge": 1, "check": 1, "plan": 1}, counts
