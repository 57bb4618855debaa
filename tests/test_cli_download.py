"""`modelreg download hf|ollama`: a real process pointed at the loopback Hub with HF_ENDPOINT, exit codes, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys

import pytest

from modelreg.cli.main import main
from support import wait_for
from support.fake_hub import FakeHub, point_client_at, tiny_safetensors_files
from support.fake_ollama import FakeOllama

LLAMA = "tiny-org/tiny-llama"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with FakeHub() as server:
        server.add_repo(LLAMA, tiny_safetensors_files(shards=2))
        point_client_at(server, monkeypatch, tmp_path / "hf-home")
        yield server


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "configs"
    path.mkdir()
    return path


def modelreg(*args, **options) -> subprocess.Popen:
    """`modelreg ARGS` in a fresh interpreter: it sees the Hub only through the HF_ENDPOINT variable."""
    return subprocess.Popen([sys.executable, "-m", "modelreg", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy(), **options)


def test_download_in_a_new_process_registers_the_model(hub, config, tmp_path):
    process = modelreg("--config-dir", str(config), "download", "hf", LLAMA, "--to", str(tmp_path / "models"))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert f"{LLAMA} at {hub.repos[LLAMA].commit[:12]}" in stdout and "safetensors" in stdout
    assert "registered tiny-llama" in stdout and "(new curated stub)" in stdout
    assert "to decide: roles: not set" in stdout
    assert "is not in model_roots" in stdout  # --to outside the scan roots is pointed out
    assert (tmp_path / "models" / LLAMA / "config.json").is_file()
    listed = subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config), "list", "--json"],
                            capture_output=True, text=True, check=True)
    [entry] = json.loads(listed.stdout)
    assert entry["backend"] == "vllm" and entry["metadata"]["_config_needed"] is True


def test_dry_run_lists_the_files_and_downloads_nothing(hub, config, tmp_path, capsys):
    assert main(["--config-dir", str(config), "download", "hf", LLAMA, "--to", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would download 9 file(s)" in out and "model-00001-of-00002.safetensors" in out
    assert not [r for r in hub.requests if "x-file-path" in r.headers]
    assert not (config / "model_registry.discovered.json").exists()


def test_json_result(hub, config, tmp_path, capsys):
    assert main(["--config-dir", str(config), "download", "hf", LLAMA, "--to", str(tmp_path / "m"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == "hf" and result["folder"] == str(tmp_path / "m" / LLAMA)
    assert result["stubbed"] == result["names"] and len(result["names"]) == 1


@pytest.mark.parametrize("args, reason", [
    (["hf", "nobody/nothing", "--to", "{tmp}"], "Hugging Face repo 'nobody/nothing' not found"),
    (["hf", "../etc/passwd", "--to", "{tmp}"], "is not a Hugging Face repo id"),
    (["hf", LLAMA, "--variant", "Q4_K_M", "--to", "{tmp}"], "has no variant 'Q4_K_M'; choose one of: safetensors"),
    (["hf", LLAMA], "no folder to download into: pass --to ROOT"),
    (["ollama", "bad name"], "is not an Ollama model name"),
])
def test_bad_input_exits_2_with_one_line(hub, config, tmp_path, capsys, args, reason):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["--config-dir", str(config), "download", *args]) == 2
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1


def test_gated_repo_exit_2_tells_how_to_log_in(hub, config, tmp_path, capsys):
    hub.add_repo("corp/gated", tiny_safetensors_files(), gated="manual")
    assert main(["--config-dir", str(config), "download", "hf", "corp/gated", "--to", str(tmp_path)]) == 2
    assert "hf auth login" in capsys.readouterr().err
    assert not (tmp_path / "corp" / "gated").exists()


def test_ctrl_c_cancels_and_the_next_run_resumes(hub, config, tmp_path):
    pause = hub.hold("model-00002-of-00002.safetensors", after_bytes=1000)
    args = ("--config-dir", str(config), "download", "hf", LLAMA, "--to", str(tmp_path / "models"))
    process = modelreg(*args)
    assert pause.reached.wait(60)
    staged = tmp_path / "models" / ".modelreg-downloads" / LLAMA / "config.json"
    wait_for(staged.exists, timeout=60, what="config.json to finish before Ctrl-C")  # downloads run in parallel
    process.send_signal(signal.SIGINT)
    pause.release.set()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "cancelled" in stderr and "resumes" in stderr
    assert not (tmp_path / "models" / LLAMA).exists()
    assert main(["--config-dir", str(config), "download", "hf", LLAMA, "--to", str(tmp_path / "models")]) == 0
    assert len(hub.downloads_of("config.json")) == 1  # finished before Ctrl-C, not fetched again


def test_download_ollama(config, tmp_path, tiny_model, monkeypatch, capsys):
    store = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    with FakeOllama(store) as daemon:
        daemon.add_model("tiny:q8", tiny_model.read_bytes(), template="{{ .Prompt }}")
        assert main(["--config-dir", str(config), "download", "ollama", "tiny:q8", "--host", daemon.host]) == 0
        out = capsys.readouterr().out
        assert "downloaded tiny:q8" in out and "(new curated stub)" in out
        assert main(["--config-dir", str(config), "download", "ollama", "nope", "--host", daemon.host]) == 2
        assert "Ollama has no model 'nope:latest'" in capsys.readouterr().err
