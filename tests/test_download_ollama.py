"""Pulls through the real ollama client against a loopback daemon that writes Ollama's store, then registration."""

import json

import pytest

from modelreg.download.ollama import check_ollama_name, pull_ollama
from modelreg.download.progress import DownloadError, DownloadProgress
from modelreg.errors import BadInput
from modelreg.registry import Registry
from support.fake_ollama import FakeOllama

TEMPLATE = "{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}"


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(path))
    return path


@pytest.fixture
def daemon(store, tiny_model):
    with FakeOllama(store) as server:
        server.add_model("tiny:q8", tiny_model.read_bytes(), template=TEMPLATE, params={"num_ctx": 2048})
        server.add_model("someone/tiny:latest", tiny_model.read_bytes(), template=TEMPLATE)
        yield server


@pytest.fixture
def registry(tmp_path, daemon) -> Registry:
    config = tmp_path / "configs"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"ollama_host": daemon.host}))
    return Registry(config)


@pytest.mark.parametrize("name, listed", [("llama3.2", "llama3.2:latest"), ("llama3.2:1b", "llama3.2:1b"),
                                          ("someone/model:tag", "someone/model:tag"),
                                          ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M")])
def test_ollama_names_are_normalised_as_ollama_lists_them(name, listed):
    assert check_ollama_name(name) == listed


@pytest.mark.parametrize("name", ["", "bad name", "../x", "a/b/c/d", "model:", "-x"])
def test_bad_ollama_names_are_refused(name):
    with pytest.raises(BadInput, match="not an Ollama model name"):
        check_ollama_name(name)


def test_pull_reports_progress_then_discovers_and_stubs(registry, daemon, store, tiny_model):
    seen = []
    progress = DownloadProgress(listeners=[lambda p: seen.append(p.snapshot())])
    result = pull_ollama(registry, "tiny:q8", progress=progress)
    assert (store / "manifests/registry.ollama.ai/library/tiny/q8").is_file()
    [name] = result.names
    assert result.stubbed == [name] and result.folder == str(store)
    entry = registry.entry(name)
    assert entry["backend_config"]["model_path"] == "ollama:/tiny:q8"
    assert entry["backend"] == "ollama" and entry["metadata"]["_config_needed"] is True
    assert entry["metadata"]["format"] == "ollama"
    pulled = [s for s in seen if s["bytes_total"]]
    assert pulled[-1]["bytes_done"] == pulled[-1]["bytes_total"] >= tiny_model.stat().st_size
    assert seen[-1]["phase"] == "done"


def test_pulling_a_namespaced_model_registers_that_model(registry, daemon):
    tiny = pull_ollama(registry, "tiny:q8")
    other = pull_ollama(registry, "someone/tiny")
    assert registry.entry(other.names[0])["backend_config"]["model_path"] == "ollama:/someone/tiny:latest"
    assert set(tiny.names).isdisjoint(other.names)


def test_unknown_model_and_missing_daemon_say_what_to_do(registry, daemon, tmp_path):
    with pytest.raises(BadInput, match="Ollama has no model 'nope:1b'.*ollama.com/library"):
        pull_ollama(registry, "nope:1b")
    with pytest.raises(DownloadError, match="no Ollama daemon answers at http://127.0.0.1:9.*ollama serve"):
        pull_ollama(registry, "tiny:q8", host="http://127.0.0.1:9")
    assert registry.discovered_entries() == []


def test_a_pull_that_breaks_off_registers_nothing_and_can_be_repeated(registry, daemon, store):
    daemon.cut_pull_after(3)
    with pytest.raises(DownloadError, match="broke off.*run it again"):
        pull_ollama(registry, "tiny:q8")
    assert registry.discovered_entries() == []
    assert not (store / "manifests/registry.ollama.ai/library/tiny/q8").exists()
    daemon.cut_pull_after(None)
    assert pull_ollama(registry, "tiny:q8").names


def test_cancel_stops_reading_the_pull(registry, daemon):
    progress = DownloadProgress()
    progress.listeners.append(lambda p: p.bytes_done and p.cancel())
    with pytest.raises(DownloadError, match="cancelled"):
        pull_ollama(registry, "tiny:q8", progress=progress)
    assert registry.discovered_entries() == []
