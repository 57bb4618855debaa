"""The `modelreg` core commands: exit codes, JSON output, one-line reasons."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modelreg.cli.main import main
from support.layers import discovered_model, upstream_copy, write_layers

NAME = "qwen2.5-vl-7b-instruct_(AWQ)"


@pytest.fixture
def folder(tmp_path):
    return write_layers(tmp_path, [discovered_model(NAME), discovered_model("other", "/m/o")], [])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_set_then_show_provenance(folder, capsys):
    assert run(capsys, "set", NAME, "backend_config.extra_args", '["--max-model-len","4096"]',
               "--config-dir", folder)[0] == 0
    code, out, _ = run(capsys, "show", NAME, "--json", "--provenance", "--config-dir", folder)
    doc = json.loads(out)
    assert code == 0
    assert doc["entry"]["backend_config"]["extra_args"] == ["--max-model-len", "4096"]
    assert doc["provenance"]["backend_config.extra_args"] == "curated"
    assert doc["provenance"]["backend_config.model_path"] == "discovered"


def test_value_is_json_when_it_parses_else_string(folder, capsys):
    run(capsys, "--config-dir", folder, "set", NAME, "backend_config.port", "24001")
    run(capsys, "--config-dir", folder, "set", NAME, "backend", "vllm")
    entry = json.loads(run(capsys, "--config-dir", folder, "show", NAME, "--json")[1])
    assert entry["backend_config"]["port"] == 24001 and entry["backend"] == "vllm"


def test_config_dir_from_environment(folder, capsys, monkeypatch):
    monkeypatch.setenv("MODELREG_CONFIG_DIR", str(folder))
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0 and [e["name"] for e in json.loads(out)] == ["other", NAME]


@pytest.mark.parametrize("argv, reason", [
    (["set", NAME, "size_bytes", "5"], "is a fact"),
    (["set", "qwen2.5-vl-7b-instruct", "backend", "vllm"], "did you mean"),
    (["set", NAME, "backend_config.extra_args", '["--max-model-len", 4096]'], "extra_args: expected a JSON list"),
    (["restore", "nope"], "no history item"),
])
def test_refusals_exit_2_with_one_line_reason(folder, capsys, argv, reason):
    code, _, err = run(capsys, "--config-dir", folder, *argv)
    assert code == 2
    assert reason in err and err.count("\n") == 1


def test_unset_diff_history_restore(folder, capsys):
    run(capsys, "--config-dir", folder, "set", NAME, "display_name", "Mine")
    rows = {r["field"]: r for r in json.loads(run(capsys, "--config-dir", folder, "diff", NAME, "--json")[1])}
    assert rows["display_name"] == {"name": NAME, "field": "display_name", "discovered": NAME, "curated": "Mine",
                                    "profile": None, "merged": "Mine", "source": "curated", "status": "overridden",
                                    "changed": True}
    assert run(capsys, "--config-dir", folder, "unset", NAME, "display_name")[0] == 0
    history = json.loads(run(capsys, "--config-dir", folder, "history", "--json")[1])
    assert len(history) == 2
    assert run(capsys, "--config-dir", folder, "restore", history[0]["id"])[0] == 0
    assert json.loads(run(capsys, "--config-dir", folder, "show", NAME, "--json")[1])["display_name"] == "Mine"


def test_stub_command(folder, capsys):
    assert "created" in run(capsys, "--config-dir", folder, "stub", "other")[1]
    assert "already" in run(capsys, "--config-dir", folder, "stub", "other")[1]
    curated = json.loads((folder / "model_registry.curated.json").read_text())
    assert curated[0]["metadata"] == {"_config_needed": True}


def test_rebuild_prints_count_and_revision(folder, capsys):
    code, out, _ = run(capsys, "--config-dir", folder, "rebuild")
    assert code == 0 and out.startswith("2 models, revision ") and len(out.split()[-1]) == 64


def test_validate_and_migrate_upstream(tmp_path, capsys):
    upstream_copy(tmp_path)
    code, out, err = run(capsys, "--config-dir", tmp_path, "validate")
    assert "run `modelreg migrate`" in out
    # three curated Qwen3-VL entries pass --swap-space, which vLLM 0.32 no longer has: vLLM would exit at once
    assert code == 2 and err.count("`--swap-space` is not a flag of vllm serve 0.32.0+cpu") == 3
    # their chat templates live on the machine that runs them: a warning here
    assert "qwen_template.jinja does not exist" in out
    code, out, _ = run(capsys, "--config-dir", tmp_path, "migrate", "--dry-run", "--json")
    report = json.loads(out)
    assert code == 0 and not report["written"] and len(report["moves"]) > 100
    assert run(capsys, "--config-dir", tmp_path, "migrate")[0] == 0
    code, out, _ = run(capsys, "--config-dir", tmp_path, "validate")
    assert code == 2 and "holds configuration" not in out


def test_invalid_layers_exit_2_from_a_real_process(folder):
    (folder / "model_registry.curated.json").write_text('[{"name": 1}]')
    proc = subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(folder), "rebuild"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "model_registry.curated.json:1: entry #1: field 'name'" in proc.stderr


def test_list_shows_extra_args_shell_quoted(folder, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per model, whatever the table does on a narrow terminal
    args = ["--override-generation-config", '{"temperature": 0.5}']
    assert run(capsys, "--config-dir", folder, "set", NAME, "backend", "vllm")[0] == 0
    assert run(capsys, "--config-dir", folder, "set", NAME, "backend_config.extra_args", json.dumps(args))[0] == 0
    code, out, _ = run(capsys, "--config-dir", folder, "list")
    assert code == 0 and """--override-generation-config '{"temperature": 0.5}'""" in out


def test_validate_warns_of_a_bad_host_and_stays_valid(folder, capsys):
    (folder / "settings.json").write_text(json.dumps({"hosts": {"gpu-a": {"url": "http://127.0.0.1:9"},
                                                                "gpu-b": {"url": "not a url at all"}}}))
    code, out, err = run(capsys, "validate", "--config-dir", folder)
    assert code == 0 and "valid (" in out
    assert "warning:" in out + err and "hosts entry 1 ('gpu-b') ignored" in out + err
