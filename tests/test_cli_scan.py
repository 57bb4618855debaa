"""`modelreg scan` and `modelreg fit`: exit codes, tables, JSON, one-line reasons."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modelreg.cli.main import main
from support import model_folders as mf
from support.tiny_gguf import CONTEXT_LENGTH, write_tiny_gguf

AWQ = "qwen2.5-vl-7b-instruct_(AWQ)"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def models(tmp_path):
    root = tmp_path / "models"
    mf.qwen25_vl_7b_awq(root)
    mf.llama32_1b_gguf(root)
    (root / "broken.gguf").write_bytes(b"nope")
    return root


def test_scan_prints_models_problems_and_a_summary(models, tmp_path, capsys):
    code, out, err = run(capsys, "scan", models, "--config-dir", tmp_path / "configs")
    assert code == 0 and err == ""
    assert AWQ in out and "llama-3.2-1b-instruct_(Q4_K_M)" in out
    assert f"skipped  {models / 'broken.gguf'}: not a GGUF file" in out
    assert f"      new  {AWQ}  (safetensors, awq)  {models / 'Qwen2.5-VL-7B-Instruct-AWQ'}" in out
    assert "2 model(s)" in out and "2 new stub(s)" in out and "1 problem(s)" in out


def test_scan_json_then_show_and_fit(models, tmp_path, capsys):
    config = tmp_path / "configs"
    code, out, _ = run(capsys, "--config-dir", config, "scan", models, "--json")
    doc = json.loads(out)
    assert code == 0 and {m["name"] for m in doc["models"]} == {AWQ, "llama-3.2-1b-instruct_(Q4_K_M)"}
    assert doc["problems"] == [{"path": str(models / "broken.gguf"),
                                "message": "not a GGUF file (magic b'nope', expected b'GGUF'); skipped"}]
    code, out, _ = run(capsys, "show", AWQ, "--json", "--config-dir", config)
    assert json.loads(out)["metadata"]["architecture"]["num_kv_heads"] == 4
    code, out, _ = run(capsys, "fit", AWQ, "--gpu-mem", "16GiB", "--json", "--config-dir", config)
    fit = json.loads(out)
    assert code == 0 and fit["kv_bytes_per_token"] == 2 * 28 * 4 * 128 * 2 and fit["gpu_memory_bytes"] == 16 * 2**30
    code, out, _ = run(capsys, "fit", AWQ, "--gpu-mem", "8GiB", "--utilization", "0.5", "--config-dir", config)
    assert code == 0 and "largest context that fits" in out and "add --max-model-len" in out


def test_scan_without_stubs(models, tmp_path, capsys):
    config = tmp_path / "configs"
    run(capsys, "scan", models, "--no-stubs", "--config-dir", config)
    assert not (config / "model_registry.curated.json").exists()
    assert len(json.loads((config / "model_registry.json").read_text())) == 2


def test_forget_removes_only_missing_models(models, tmp_path, capsys):
    config = tmp_path / "configs"
    run(capsys, "scan", models, "--config-dir", config)
    run(capsys, "set", AWQ, "backend_config.extra_args", '["--enforce-eager"]', "--config-dir", config)
    code, _, err = run(capsys, "forget", AWQ, "--config-dir", config)
    assert code == 2 and "not marked missing" in err
    (models / "Qwen2.5-VL-7B-Instruct-AWQ" / "config.json").rename(models / "config.json.bak")
    code, out, _ = run(capsys, "scan", models, "--config-dir", config)
    assert f"missing  {AWQ}" in out
    code, out, _ = run(capsys, "forget", AWQ, "--config-dir", config)
    discovered = json.loads((config / "model_registry.discovered.json").read_text())
    assert code == 0 and [e["name"] for e in discovered] == ["llama-3.2-1b-instruct_(Q4_K_M)"]
    code, out, _ = run(capsys, "show", AWQ, "--json", "--config-dir", config)
    assert json.loads(out)["backend_config"]["extra_args"] == ["--enforce-eager"]  # the user's configuration stays


def test_fit_errors_are_one_line_and_exit_2(models, tmp_path, capsys):
    config = tmp_path / "configs"
    run(capsys, "scan", models, "--config-dir", config)
    code, _, err = run(capsys, "fit", "qwen2.5-vl-7b-instruct", "--config-dir", config)
    assert code == 2 and err.count("\n") == 1 and f"did you mean {AWQ}" in err
    code, _, err = run(capsys, "fit", AWQ, "--gpu-mem", "lots", "--config-dir", config)
    assert code == 2 and "16GiB" in err


def test_the_console_script(models, tmp_path):
    """The installed `modelreg` entry point runs a scan as a user would."""
    done = subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(tmp_path / "c"), "scan",
                           str(models), "--json"], capture_output=True, text=True, check=True)
    assert len(json.loads(done.stdout)["models"]) == 2


def test_fit_json_never_reports_more_than_the_native_context(tmp_path, capsys):
    root = tmp_path / "models"
    root.mkdir()
    write_tiny_gguf(root / "tiny-llama-F32.gguf")
    config = tmp_path / "configs"
    run(capsys, "scan", root, "--config-dir", config)
    name = json.loads((config / "model_registry.json").read_text())[0]["name"]
    code, out, _ = run(capsys, "fit", name, "--gpu-mem", "24GiB", "--json", "--config-dir", config)
    fit = json.loads(out)
    assert code == 0 and fit["native_context"] == CONTEXT_LENGTH
    assert fit["memory_context"] > CONTEXT_LENGTH  # the memory alone holds far more
    assert fit["max_context"] == CONTEXT_LENGTH and fit["max_context_cap"] == "native context"
