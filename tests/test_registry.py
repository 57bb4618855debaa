"""The Registry API: one write path per layer, conflicts, history, stubs, validation messages."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelreg import build
from modelreg.errors import (
    BadInput,
    ConfigFieldInDiscovered,
    ConflictError,
    FactFieldRefused,
    InvalidRegistry,
    UnknownModel,
)
from modelreg.fields import FieldClass, field_class
from modelreg.paths import flatten
from modelreg.registry import Registry
from modelreg.store import revision_of
from support.layers import discovered_model, write_layers

FOUR_ARGS = ["--max-model-len", "4096", "--enforce-eager", "--trust-remote-code"]


@pytest.fixture
def reg(tmp_path):
    write_layers(tmp_path, [discovered_model("alpha"), discovered_model("beta", "/models/b")], [])
    return Registry(tmp_path)


def test_old_system_failure_cannot_happen(tmp_path):
    """Discovered has extra_args [], curated the real four; a machine write of a second model changes nothing."""
    legacy = discovered_model("qwen2.5-vl-7b-instruct_(AWQ)")
    legacy["backend_config"]["extra_args"] = []
    write_layers(tmp_path, [legacy], [{"name": legacy["name"], "backend_config": {"extra_args": FOUR_ARGS}}])
    reg = Registry(tmp_path)
    reg.rebuild()
    reg.discovered_writer().upsert([discovered_model("second-model", "/models/second")])
    merged = json.loads(reg.snapshot_path.read_text())
    assert {e["name"]: e for e in merged}[legacy["name"]]["backend_config"]["extra_args"] == FOUR_ARGS
    discovered = {e["name"]: e for e in json.loads(reg.discovered_path.read_text())}
    assert discovered[legacy["name"]]["backend_config"]["extra_args"] == []
    assert "extra_args" not in discovered["second-model"]["backend_config"]


def test_discovered_writer_refuses_config(reg):
    with pytest.raises(ConfigFieldInDiscovered, match="extra_args"):
        reg.discovered_writer().upsert([{"name": "alpha", "backend_config": {"extra_args": ["--x"]}}])
    with pytest.raises(ConfigFieldInDiscovered, match="backend"):
        reg.discovered_writer().replace([{"name": "alpha", "backend": "vllm"}])


def test_set_writes_curated_only_and_rebuilds(reg):
    before = reg.discovered_path.read_bytes()
    snap = reg.set_value("alpha", "backend_config.extra_args", FOUR_ARGS)
    assert reg.discovered_path.read_bytes() == before
    assert snap.by_name["alpha"]["backend_config"]["extra_args"] == FOUR_ARGS
    assert json.loads(reg.curated_path.read_text()) == [{"name": "alpha", "backend_config": {"extra_args": FOUR_ARGS}}]
    assert reg.snapshot().revision == revision_of(reg.snapshot_path.read_bytes())


def test_set_refuses_facts_and_unknown_models(reg):
    with pytest.raises(FactFieldRefused, match="size_bytes"):
        reg.set_value("alpha", "size_bytes", 1)
    with pytest.raises(FactFieldRefused):
        reg.apply_curated("alpha", {"metadata.architecture.num_layers": 1, "backend": "vllm"})
    with pytest.raises(UnknownModel, match="alpha"):
        reg.set_value("alpah", "backend", "vllm")
    assert not reg.curated_path.read_text().strip("[]\n")


def test_unset_removes_override_and_prunes(reg):
    reg.set_value("alpha", "backend_config.port", 24001)
    reg.unset_value("alpha", "backend_config.port")
    assert json.loads(reg.curated_path.read_text()) == []
    assert "port" not in reg.entry("alpha")["backend_config"]


def test_stale_base_revision_is_a_conflict(reg):
    seen = reg.curated_revision()
    reg.set_value("alpha", "backend", "vllm")
    with pytest.raises(ConflictError):
        reg.apply_curated("alpha", {"backend": "llama.cpp"}, base_revision=seen)
    assert reg.entry("alpha")["backend"] == "vllm"
    reg.apply_curated("alpha", {"backend": "llama.cpp"}, base_revision=reg.curated_revision())
    assert reg.entry("alpha")["backend"] == "llama.cpp"


def test_history_lists_and_restores(reg):
    reg.set_value("alpha", "backend", "vllm")
    reg.set_value("alpha", "backend", "llama.cpp")
    items = reg.history_items()
    assert len(items) == 2 and "alpha: set backend" in items[0].reason
    reg.restore(items[0].id)  # the version before the last write
    assert reg.entry("alpha")["backend"] == "vllm"
    with pytest.raises(BadInput, match="no history item"):
        reg.restore("../../etc/passwd")


def test_history_is_bounded(tmp_path):
    write_layers(tmp_path, [discovered_model("alpha")], [])
    (tmp_path / "settings.json").write_text('{"history_limit": 3}')
    reg = Registry(tmp_path)
    for port in range(1, 8):
        reg.set_value("alpha", "backend_config.port", port)
    assert len(reg.history_items()) == 3


def test_stub_is_idempotent_and_never_touches_existing(reg):
    assert reg.stub("alpha", {"backend": "vllm", "backend_config.port": 24001})
    stub = json.loads(reg.curated_path.read_text())[0]
    assert stub["metadata"]["_config_needed"] is True
    assert stub["backend_config"] == {"port": 24001, "extra_args": None}
    reg.set_value("alpha", "backend_config.extra_args", FOUR_ARGS)
    assert not reg.stub("alpha", {"backend": "llama.cpp"})
    entry = reg.entry("alpha")
    assert entry["backend"] == "vllm" and entry["backend_config"]["extra_args"] == FOUR_ARGS
    assert "_config_needed" not in entry.get("metadata", {})


def test_stub_nulls_do_not_hide_legacy_values(tmp_path):
    legacy = discovered_model("alpha")
    legacy["backend_config"]["extra_args"] = ["--n_ctx", "512"]
    write_layers(tmp_path, [legacy], [])
    reg = Registry(tmp_path)
    reg.stub("alpha")
    assert reg.entry("alpha")["backend_config"]["extra_args"] == ["--n_ctx", "512"]


def test_profile_entries_win_for_the_active_profile(tmp_path):
    write_layers(tmp_path, [discovered_model("alpha")], [
        {"name": "alpha", "backend_config": {"port": 1}},
        {"name": "alpha", "profile": "4080", "backend_config": {"port": 2}}])
    assert Registry(tmp_path).merged().by_name["alpha"]["backend_config"]["port"] == 1
    merged = Registry(tmp_path, profile="4080").merged()
    assert merged.by_name["alpha"]["backend_config"]["port"] == 2
    assert merged.sources["alpha"]["backend_config.port"] == "profile:4080"


def test_profile_from_env_and_settings(tmp_path, monkeypatch):
    write_layers(tmp_path, [discovered_model("alpha")], [])
    (tmp_path / "settings.json").write_text('{"active_profile": "a"}')
    assert Registry(tmp_path).profile == "a"
    monkeypatch.setenv("MODELREG_PROFILE", "b")
    assert Registry(tmp_path).profile == "b"
    assert Registry(tmp_path, profile="c").profile == "c"


def test_profile_edit_goes_to_profile_entry(reg):
    reg.set_value("alpha", "backend_config.port", 9, profile="4080")
    assert json.loads(reg.curated_path.read_text()) == [
        {"name": "alpha", "profile": "4080", "backend_config": {"port": 9}}]


@pytest.mark.parametrize("curated, message", [
    ([{"display_name": "x"}], "field 'name'"),
    ([{"name": "alpha", "backend_config": {"extra_args": "--x 1"}}], "backend_config.extra_args"),
    ([{"name": "alpha"}, {"name": "alpha"}], "duplicate name"),
    ([{"name": "ghost", "profile": "4080"}], "has no base model"),
    ([{"name": "alpha", "backend_config": {"port": "80"}}], "backend_config.port"),
])
def test_schema_errors_name_entry_field_and_line(tmp_path, curated, message):
    write_layers(tmp_path, [discovered_model("alpha")], curated)
    reg = Registry(tmp_path)
    report = reg.validate()
    assert not report.ok
    assert message in report.errors[0]
    assert "model_registry.curated.json" in report.errors[0]


def test_error_gives_line_of_bad_entry(tmp_path):
    write_layers(tmp_path, [discovered_model("alpha")], [{"name": "alpha"}, {"name": "beta", "roles": "x"}])
    error = Registry(tmp_path).validate().errors[0]
    line = (tmp_path / "model_registry.curated.json").read_text().splitlines().index("  {", 4) + 1
    assert f"model_registry.curated.json:{line}: entry 'beta'" in error


def test_malformed_json_names_file_line_column(tmp_path):
    write_layers(tmp_path, [discovered_model("alpha")], [])
    (tmp_path / "model_registry.curated.json").write_text('[\n  {"name": "alpha",}\n]\n')
    with pytest.raises(BadInput, match=r"model_registry.curated.json:2:\d+: invalid JSON"):
        Registry(tmp_path).merged()


def test_rebuild_refuses_invalid_layers_and_keeps_last_good(reg):
    good = reg.rebuild()
    reg.curated_path.write_text('[{"name": "alpha", "backend_config": {"extra_args": 5}}]')
    with pytest.raises(InvalidRegistry):
        reg.rebuild()
    assert revision_of(reg.snapshot_path.read_bytes()) == good.revision


def test_corrupt_curated_is_never_overwritten(reg):
    reg.curated_path.write_text("[{oops")
    with pytest.raises(BadInput):
        reg.set_value("alpha", "backend", "vllm")
    with pytest.raises(BadInput):
        reg.stub("beta")
    assert reg.curated_path.read_text() == "[{oops"


def test_invalid_edit_is_refused_before_writing(reg):
    with pytest.raises(InvalidRegistry, match="extra_args"):
        reg.set_value("alpha", "backend_config.extra_args", "--enforce-eager")
    assert json.loads(reg.curated_path.read_text()) == []


def test_rebuild_is_idempotent_and_deterministic(reg):
    reg.set_value("alpha", "backend", "vllm")
    first = reg.snapshot_path.read_bytes()
    assert reg.rebuild().revision == revision_of(first)
    assert reg.snapshot_path.read_bytes() == first


def test_diff_statuses(tmp_path):
    write_layers(tmp_path, [discovered_model("alpha", display_name="Disk")],
                 [{"name": "alpha", "display_name": "Mine", "backend": "vllm", "size_bytes": 1000}])
    rows = {r.field: r for r in Registry(tmp_path).diff("alpha")}
    assert rows["display_name"].status == "overridden" and rows["display_name"].merged == "Mine"
    assert rows["backend"].status == "curated-only" and rows["backend"].changed
    assert rows["backend_config.model_path"].status == "discovered-only"
    assert rows["size_bytes"].status == "same"


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("scan"), st.sampled_from(["alpha", "beta", "gamma"]), st.integers(1, 9)),
    st.tuples(st.just("set"), st.sampled_from(["alpha", "beta"]),
              st.sampled_from(["backend", "backend_config.extra_args", "backend_config.port", "display_name"])),
    st.tuples(st.just("unset"), st.sampled_from(["alpha", "beta"]), st.sampled_from(["backend", "display_name"])),
    st.tuples(st.just("stub"), st.sampled_from(["alpha", "beta", "gamma"]), st.just(0)),
    st.tuples(st.just("missing"), st.sampled_from(["alpha", "gamma"]), st.just(0)),
), max_size=12)
VALUES = {"backend": "vllm", "backend_config.extra_args": FOUR_ARGS, "backend_config.port": 24001,
          "display_name": "Mine"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPERATIONS)
def test_no_operation_sequence_puts_config_in_discovered_or_loses_curated(tmp_path_factory, operations):
    folder = write_layers(tmp_path_factory.mktemp("ops"), [discovered_model("alpha"), discovered_model("beta")], [])
    reg = Registry(folder)
    for op, name, arg in operations:
        before = json.loads(reg.curated_path.read_text())
        if op == "scan":
            reg.discovered_writer().upsert([discovered_model(name, f"/models/{name}", size_bytes=arg)])
            assert json.loads(reg.curated_path.read_text()) == before  # rescans never change curated
        elif op == "set":
            reg.set_value(name, arg, VALUES[arg])
        elif op == "unset":
            reg.unset_value(name, arg)
        elif op == "stub" and name in reg.merged().by_name:  # a name some layer has
            reg.stub(name, {"backend": "vllm"})
        elif op == "missing":
            reg.discovered_writer().mark_missing([name])
        for entry in json.loads(reg.discovered_path.read_text()):
            assert not [p for p in flatten(entry) if field_class(p) is FieldClass.CONFIG]
        merged = reg.merged()
        for entry in json.loads(reg.curated_path.read_text()):
            for path, value in flatten(entry).items():
                if value is not None and value != {} and field_class(path) is not FieldClass.FACT:
                    assert flatten(merged.by_name[entry["name"]])[path] == value


def test_rebuild_merges_only_the_models_whose_entries_changed(reg, monkeypatch):
    reg.rebuild()
    merged = []
    original = build.merge_entry
    monkeypatch.setattr(build, "merge_entry", lambda name, layers: merged.append(name) or original(name, layers))
    assert reg.rebuild().revision == reg.snapshot().revision
    assert merged == []
    other = Registry(reg.config_dir)  # another writer (another process, in real life): it reads the index
    other.set_value("alpha", "backend", "vllm")
    assert merged == ["alpha"]
    assert reg.rebuild().by_name["alpha"]["backend"] == "vllm"
    assert merged == ["alpha", "alpha"]
    reg.snapshot_path.unlink()
    reg.rebuild()
    assert reg.snapshot_path.exists() and merged == ["alpha", "alpha"]
