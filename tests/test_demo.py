"""The demo `make run` opens survives its own Rescan: its discovered layer is read from the files it ships."""
from __future__ import annotations

import json

from modelreg.cli.main import main
from modelreg.registry import Registry
from support.demo_models import build_demo


def test_a_rescan_of_the_demo_changes_no_fact(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo's paths are relative to the folder `make run` starts in
    for store in ("HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS"):  # the Rescan's other default roots: empty here
        monkeypatch.setenv(store, str(tmp_path / "empty" / store))
    registry = build_demo(tmp_path / ".cache/demo-models", tmp_path / ".cache/demo-registry")
    before = registry.snapshot().entries
    assert {e["name"] for e in before if e.get("missing")} == {"phi-3.5-mini-instruct_(Q4_K_M)"}  # absent on purpose
    gemma = next(e for e in before if e["name"] == "gemma-3-4b-it_(Q8_0)")
    assert gemma["size_bytes"] < 10_000_000  # the facts are the shipped tiny files', not a 4 GB model's
    llama = next(e for e in before if e["name"] == "llama-3.1-8b-instruct_(Q4_K_M)")
    assert not llama["capabilities"]["vision"]  # Gemma's projector sits in Gemma's own folder

    assert main(["--config-dir", str(registry.config_dir), "scan", "--json"]) == 0  # the GUI's Rescan: default roots
    result = json.loads(capsys.readouterr().out)
    assert result["roots"] == [str(tmp_path / ".cache/demo-models")]
    assert {m["status"] for m in result["models"]} == {"unchanged"} and len(result["models"]) == 4
    assert result["missing"] == [] and result["stubs"] == []
    assert Registry(registry.config_dir).snapshot().entries == before
