"""Bad input an adversarial audit found: each gets exit 2 with a one-line reason (file, line, field, what to do), or
is shown as the text it is, and nothing is lost or created."""
from __future__ import annotations

import json
import logging
import os
import stat
import subprocess

import pytest

from modelreg.cli.main import main
from modelreg.discovery import ollama_store
from modelreg.discovery.scan import scan
from modelreg.proxy.token import TOKEN_FILE, ensure_admin_token
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, SNAPSHOT_FILE
from support import model_folders as mf
from support.faults import MODELREG
from support.layers import discovered_model, write_layers


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, *argv) -> str:
    """Run a command that must be refused: exit 2 and one line on stderr, no traceback; returns that line."""
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def folder(tmp_path):
    folder = write_layers(tmp_path / "configs", [discovered_model("m0", "/m/0")],
                          [{"name": "m0", "backend": "vllm", "backend_config": {"port": 24001}}])
    Registry(folder).rebuild()
    return folder


def files_of(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- names and values are text, in the terminal too ----------------------------------------------------------------

def test_names_with_rich_markup_print_as_written(folder, capsys):
    """The audit: `stub 'm[/x]'` crashed list and diff for the whole registry; `a[red]b[/red]` printed as `ab`."""
    for name in ("m[/x]", "a[red]b[/red]", "[bold]x"):
        assert cli(capsys, "--config-dir", folder, "stub", name)[0] == 0
    code, out, _ = cli(capsys, "--config-dir", folder, "list")
    assert code == 0 and all(name in out for name in ("m[/x]", "a[red]b[/red]", "[bold]x"))
    code, out, _ = cli(capsys, "--config-dir", folder, "diff", "m[/x]")
    assert code == 0 and "metadata._config_needed" in out


def test_control_characters_in_names_never_reach_the_terminal(folder, capsys):
    """The audit: ANSI escapes in names reached the terminal raw (colours, a new window title, a cleared screen)."""
    evil = "evil\x1b]0;pwned\x07\x1b[2J\x9b31m\u202egnp.exe\rX"
    assert cli(capsys, "--config-dir", folder, "stub", evil)[0] == 0
    for argv in (("list",), ("show", evil), ("diff", evil), ("list", "--json"), ("history",),
                 ("set", evil, "roles", "chat"), ("show", "evil")):
        code, out, err = cli(capsys, "--config-dir", folder, *argv)
        for stream in (out, err):
            assert not any(ch in stream for ch in "\x1b\x07\x9b\u202e\r"), (argv, stream)
        assert code == (2 if argv == ("show", "evil") else 0) and "Traceback" not in err
    assert r"evil\x1b]0;pwned\x07\x1b[2J" in cli(capsys, "--config-dir", folder, "list")[1]
    assert evil in [e["name"] for e in json.loads(cli(capsys, "--config-dir", folder, "list", "--json")[1])]


def test_a_downloaded_config_with_markup_in_quant_method_scans_and_lists(tmp_path, capsys):
    """The audit: a config.json with `quant_method: "[/x]"` broke scan's report and then every `list`."""
    model = mf.llama31_8b(tmp_path / "models")
    config = json.loads((model.path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "[/x]\x1b[31m", "bits": 4}
    (model.path / "config.json").write_text(json.dumps(config))
    code, out, err = cli(capsys, "--config-dir", tmp_path / "configs", "scan", tmp_path / "models")
    assert code == 0 and "[/x]" in out and "\x1b" not in out, err
    code, out, _ = cli(capsys, "--config-dir", tmp_path / "configs", "list")
    assert code == 0 and "\x1b" not in out
    name = json.loads(cli(capsys, "--config-dir", tmp_path / "configs", "list", "--json")[1])[0]["name"]
    code, out, _ = cli(capsys, "--config-dir", tmp_path / "configs", "show", name)
    assert code == 0 and 'quantization = "[/x]\\u001b[31m"' in out and "\x1b" not in out


# ---- values a file or a command line may not hold ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", '{"a": [1, NaN]}'])
def test_nan_and_infinity_are_refused(folder, capsys, value):
    """The audit: `set m0 generation_defaults.temperature NaN` wrote a non-JSON NaN into curated."""
    before = files_of(folder)
    assert "is not a JSON number" in refused(capsys, "--config-dir", folder, "set", "m0", "metadata.tuning", "--",
                                             value)
    if not value.startswith("{"):  # a typed number field says so in its own words
        assert "not a finite number" in refused(capsys, "--config-dir", folder, "set", "m0",
                                                "generation_defaults.temperature", "--", value)
    assert "finite" in refused(capsys, "--config-dir", folder, "set", "m0", "backend_config.ready_timeout", "inf")
    assert files_of(folder) == before


def test_nan_written_by_hand_is_reported_with_file_line_and_column(folder, capsys):
    curated = folder / CURATED_FILE
    curated.write_text('[\n  {"name": "m0", "backend": "vllm",\n   "generation_defaults": {"temperature": NaN}}\n]\n')
    snapshot = (folder / SNAPSHOT_FILE).read_bytes()
    for command in (("validate",), ("rebuild",), ("set", "m0", "roles", "chat")):
        line = refused(capsys, "--config-dir", folder, *command)
        assert f"{curated}:3:43: invalid JSON: NaN is not a JSON number" in line, line
    assert (folder / SNAPSHOT_FILE).read_bytes() == snapshot


@pytest.mark.parametrize("depth", [70, 900, 1100])
def test_deep_nesting_is_reported_never_a_recursion_error(folder, capsys, depth):
    """The audit: at 1,000 levels rebuild, validate and set died with RecursionError; at 900, set did."""
    deep = "[" * depth + "]" * depth
    curated = folder / CURATED_FILE
    curated.write_text(f'[\n  {{"name": "m0", "backend": "vllm",\n   "notes": {deep}}}\n]\n')
    snapshot = (folder / SNAPSHOT_FILE).read_bytes()
    for command in (("validate",), ("rebuild",), ("set", "m0", "roles", "chat")):
        line = refused(capsys, "--config-dir", folder, *command)
        assert str(curated) in line and "deeper than 64 levels" in line, line
        if depth < 1024:
            assert f"{curated}:2: entry 'm0': field 'notes." in line  # file, line of the entry, the field
    assert (folder / SNAPSHOT_FILE).read_bytes() == snapshot
    result = subprocess.run([MODELREG, "--config-dir", folder, "validate"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # a real process, a real stack


@pytest.mark.parametrize("depth", [70, 900, 1100])
def test_a_deeply_nested_value_is_refused_before_writing(folder, capsys, depth):
    before = files_of(folder)
    line = refused(capsys, "--config-dir", folder, "set", "m0", "notes", "[" * depth + "]" * depth)
    assert "nests objects or lists" in line
    assert files_of(folder) == before


def test_facts_inside_an_object_set_at_a_parent_path_are_refused(folder, capsys):
    """The audit: `set m0 metadata '{"architecture": ...}'` wrote facts into curated through a parent path."""
    before = files_of(folder)
    line = refused(capsys, "--config-dir", folder, "set", "m0", "metadata", '{"architecture": {"num_layers": 2}}')
    assert "'metadata.architecture.num_layers' (inside the object set at 'metadata') is a fact" in line
    refused(capsys, "--config-dir", folder, "set", "m0", "metadata.scan", '{"key": "/elsewhere"}')
    assert files_of(folder) == before
    assert cli(capsys, "--config-dir", folder, "set", "m0", "metadata", '{"notes": "mine"}')[0] == 0


def test_duplicate_keys_and_an_unknown_backend_fail_validate(folder, capsys):
    """The audit: duplicate JSON keys and an unknown backend passed `validate`."""
    curated = folder / CURATED_FILE
    curated.write_text('[\n  {"name": "m0", "backend": "vllm",\n'
                       '   "backend_config": {"port": 24001, "port": 24002}}\n]\n')
    before = files_of(folder)
    code, _, err = cli(capsys, "--config-dir", folder, "validate")
    assert code == 2 and f"{curated}:2: entry 'm0': key 'port' appears twice in one object" in err
    line = refused(capsys, "--config-dir", folder, "set", "m0", "roles", "chat")  # a rewrite would drop a value
    assert "appears twice" in line and files_of(folder) == before
    write_layers(folder, curated=[{"name": "m0", "backend": "vlm"}])
    code, _, err = cli(capsys, "--config-dir", folder, "validate")
    assert code == 2 and "entry 'm0': field 'backend': unknown backend 'vlm'; use one of vllm" in err
    assert "unknown backend 'nope'" in refused(capsys, "--config-dir", folder, "set", "m0", "backend", "nope")
    write_layers(folder, curated=[{"name": "m0", "backend": "GGUF"}])  # the upstream spellings stay valid
    assert cli(capsys, "--config-dir", folder, "validate")[0] == 0


# ---- a missing registry folder -----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ("list",), ("show", "m0"), ("diff", "m0"), ("validate",), ("history",), ("rebuild",), ("launch-cmd", "m0"),
    ("fit", "m0"), ("set", "m0", "roles", "chat"), ("unset", "m0", "roles"), ("stub", "m0"), ("migrate",),
    ("restore", "x"), ("forget", "m0"), ("proxy",), ("gui",), ("download", "hf", "org/name", "--dry-run"),
])
def test_a_missing_config_dir_is_an_error_and_nothing_is_created(tmp_path, capsys, command):
    """The audit: `--config-dir /no/such/dir list` exited 0 and created the folders, a lock and an empty snapshot."""
    missing = tmp_path / "no" / "such" / "dir"
    line = refused(capsys, "--config-dir", missing, *command)
    assert f"registry folder {missing} does not exist" in line
    assert list(tmp_path.iterdir()) == []


def test_scan_creates_the_registry_folder_it_is_given(tmp_path, capsys):
    mf.llama32_1b_gguf(tmp_path / "models")
    code, out, err = cli(capsys, "--config-dir", tmp_path / "new" / "configs", "scan", tmp_path / "models")
    assert code == 0 and "1 new stub(s)" in out, err


# ---- Ollama's store ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("digest", ["../../outside.gguf", "sha256:../../../outside", "/etc/hostname", "sha256:zz",
                                    "sha256:" + "A" * 64, 42, None])
def test_a_manifest_digest_outside_the_store_is_skipped_with_a_problem(tmp_path, digest):
    """The audit: a layer digest `../../x` was followed outside the store; an absolute or non-hex one aborted the
    whole scan with a traceback."""
    models = tmp_path / "models"
    manifests = mf.ollama_store(models, tmp_path / "scratch")
    outside = mf.write_gguf(tmp_path / "outside.gguf", "llama", context=4096, layers=2, heads=4, kv_heads=4,
                            hidden=64, vocab=50)
    assert outside.exists()
    target = manifests["llama3.1:latest"]
    manifest = json.loads(target.read_text())
    manifest["layers"][0]["digest"] = digest
    target.write_text(json.dumps(manifest))
    found, problems = ollama_store.store_models(models)
    assert sorted(m.entry["served_model_id"] for m in found) == ["huihui_ai/qwen3-abliterated:8b", "llava:7b"]
    assert [p.path for p in problems] == [str(target)] and "is not sha256:<64 hex digits>" in problems[0].message
    result = scan(Registry(tmp_path / "configs", create=True), [models])
    assert len(result.models) == 2 and len(result.problems) == 1
    assert not any(str(outside) in json.dumps(m) for m in result.models)


# ---- the proxy's admin token ---------------------------------------------------------------------------------------

def test_an_admin_token_others_can_read_is_made_private_with_a_warning(tmp_path, caplog, monkeypatch):
    """The audit: an existing `.admin-token` with mode 0644 was used without a warning."""
    monkeypatch.delenv("MODELREG_ADMIN_TOKEN", raising=False)
    token = tmp_path / TOKEN_FILE
    token.write_text("s3cret-token-value\n")
    os.chmod(token, 0o644)
    with caplog.at_level(logging.WARNING):
        assert ensure_admin_token(tmp_path) == "s3cret-token-value"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert "had mode 0644 (readable by others); changed it to 0600" in caplog.text
    caplog.clear()
    ensure_admin_token(tmp_path)
    assert caplog.text == ""


def test_a_damaged_history_record_is_named_not_a_traceback(folder, capsys):
    assert cli(capsys, "--config-dir", folder, "set", "m0", "roles", "chat")[0] == 0
    record = next((folder / ".history").glob("*.json"))
    header = json.loads(record.read_bytes().split(b"\n")[0])
    item = record.stem
    record.write_text(json.dumps({k: header[k] for k in ("id", "saved_at", "reason", "revision")}
                                 | {"text": '{"not": "a list"}'}))  # a version the old format kept whole
    assert f"is damaged ({record}" in refused(capsys, "--config-dir", folder, "restore", item)
    assert cli(capsys, "--config-dir", folder, "set", "m0", "roles", "embed")[0] == 0  # a damaged record blocks no edit
    record.write_text("{damaged")
    assert cli(capsys, "--config-dir", folder, "set", "m0", "roles", "chat")[0] == 0
    code, out, _ = cli(capsys, "--config-dir", folder, "history")  # listed as damaged, the newer ones restorable
    assert code == 0 and f"DAMAGED: {record}: not a curated history record" in out
