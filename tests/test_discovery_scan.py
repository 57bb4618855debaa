"""`scan()` end to end: discovered facts through the writer, stubs, stable names, missing models, corrupt inputs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from modelreg.discovery.scan import scan
from modelreg.fields import FieldClass, field_class
from modelreg.paths import flatten, get_path
from modelreg.registry import Registry
from modelreg.settings import save_setting
from support import model_folders as mf
from support.layers import upstream_copy, write_layers


@pytest.fixture()
def models(tmp_path):
    """A model root with every kind: Hugging Face folders, GGUF files (split, projector) and an Ollama store."""
    root = tmp_path / "models"
    for builder in (mf.llama31_8b, mf.qwen25_vl_7b_awq, mf.llama2_7b_gptq):
        builder(root / "hf")
    mf.llama32_1b_gguf(root / "gguf")
    mf.qwen25_vl_gguf_with_projector(root / "gguf" / "vl")
    mf.split_gguf(root / "gguf" / "split")
    mf.ollama_store(root / "ollama", tmp_path / "scratch")
    return root


@pytest.fixture()
def registry(tmp_path):
    return Registry(tmp_path / "configs", create=True)


def files_of(registry: Registry) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in registry.config_dir.glob("model_registry*.json")}


def test_scan_writes_facts_stubs_and_the_snapshot(models, registry):
    result = scan(registry, [models])
    assert result.problems == []
    names = sorted(m["name"] for m in result.models)
    assert names == sorted([
        "llama-3.1-8b-instruct_(BF16)", "qwen2.5-vl-7b-instruct_(AWQ)", "llama-2-7b-chat_(GPTQ)",
        "llama-3.2-1b-instruct_(Q4_K_M)", "qwen2.5-vl-7b-instruct_(Q4_K_M)", "qwen2.5-14b-instruct_(Q5_K_M)",
        "llama3.1-latest_(Q4_K_M)", "llava-7b_(Q4_0)", "huihui_ai-qwen3-abliterated-8b_(Q4_K_M)"])
    assert {m["status"] for m in result.models} == {"new"} and sorted(result.stubs) == names
    discovered = {e["name"]: e for e in registry.discovered_entries()}
    for entry in discovered.values():  # the writer took only facts and defaults
        assert not [p for p in flatten(entry) if field_class(p) is FieldClass.CONFIG]
    curated = {e["name"]: e for e in registry.curated_entries()}
    assert curated["llava-7b_(Q4_0)"]["backend"] == "ollama"
    assert curated["llava-7b_(Q4_0)"]["backend_config"]["port"] is None  # the Ollama daemon has its own port
    # llama-server is not installed here, llama-cpp-python is (in the test venv): GGUF stubs suggest the latter
    assert curated["qwen2.5-14b-instruct_(Q5_K_M)"]["backend"] == "llama-cpp-python"
    assert curated["llama-2-7b-chat_(GPTQ)"]["backend"] == "vllm"
    ports = [e["backend_config"]["port"] for e in curated.values() if e["backend"] != "ollama"]
    assert sorted(ports) == list(range(24001, 24001 + len(ports)))
    assert all(e["metadata"]["_config_needed"] for e in curated.values())
    merged = registry.entry("qwen2.5-vl-7b-instruct_(AWQ)")
    assert merged["display_name"] == "Qwen2.5-VL-7B-Instruct (AWQ)" and merged["capabilities"]["vision"] is True


def test_native_context_that_does_not_fit_gets_max_model_len(models, registry):
    scan(registry, [models])
    curated = {e["name"]: e for e in registry.curated_entries()}
    # Llama 3.1's 131072 tokens need 16 GiB of KV cache alone: more than the 16 GiB GPU of the default settings.
    args = curated["llama-3.1-8b-instruct_(BF16)"]["backend_config"]["extra_args"]
    assert args[0] == "--max-model-len" and 0 < int(args[1]) < 131072 and int(args[1]) % 1024 == 0
    # Llama 2's 4096 tokens fit: no suggestion.
    assert curated["llama-2-7b-chat_(GPTQ)"]["backend_config"]["extra_args"] is None


def test_scanning_twice_gives_byte_identical_files(models, registry):
    scan(registry, [models])
    before = files_of(registry)
    again = scan(registry, [models])
    assert files_of(registry) == before
    assert {m["status"] for m in again.models} == {"unchanged"} and again.stubs == []


def test_rescan_after_a_curated_edit_leaves_curated_and_merged_value(models, registry):
    scan(registry, [models])
    name = "qwen2.5-vl-7b-instruct_(AWQ)"
    registry.set_value(name, "backend_config.extra_args", ["--max-model-len", "4096", "--enforce-eager"])
    registry.set_value(name, "quantization", "awq_marlin")
    curated = registry.curated_path.read_bytes()
    changed = models / "hf" / "Qwen2.5-VL-7B-Instruct-AWQ" / "generation_config.json"
    changed.write_text('{"temperature": 0.1}')  # a changed file: the model is read again
    result = scan(registry, [models])
    assert next(m for m in result.models if m["name"] == name)["status"] == "updated"
    assert registry.curated_path.read_bytes() == curated
    merged = registry.entry(name)
    assert merged["backend_config"]["extra_args"] == ["--max-model-len", "4096", "--enforce-eager"]
    assert merged["quantization"] == "awq_marlin"
    assert next(e for e in registry.discovered_entries() if e["name"] == name)["quantization"] == "awq"


def test_an_existing_entry_keeps_its_name_when_its_path_matches(models, registry):
    folder = models / "hf" / "Llama-2-7B-Chat-GPTQ"
    write_layers(registry.config_dir, discovered=[
        {"name": "my-llama2", "backend_config": {"model_path": str(folder)}, "performance": {"rolling_samples": 3}}],
        curated=[{"name": "my-llama2", "backend": "vllm", "backend_config": {"port": 24001}}])
    result = scan(registry, [models])
    mine = next(m for m in result.models if m["path"] == str(folder))
    assert mine["name"] == "my-llama2" and mine["status"] == "updated"
    entry = next(e for e in registry.discovered_entries() if e["name"] == "my-llama2")
    assert entry["quantization"] == "gptq"
    assert entry["performance"] == {"rolling_samples": 3}  # another writer's fact stays
    assert "my-llama2" not in result.stubs
    assert 24001 not in [e["backend_config"]["port"] for e in registry.curated_entries() if e["name"] != "my-llama2"]


def test_name_clashes_get_a_deterministic_suffix(tmp_path, registry):
    one, two = tmp_path / "a", tmp_path / "b"
    mf.mistral_7b_v03(one)
    mf.mistral_7b_v03(two)
    first = {m["path"]: m["name"] for m in scan(registry, [one, two]).models}
    assert first[str(one / "Mistral-7B-Instruct-v0.3")] == "mistral-7b-instruct-v0.3_(BF16)"
    suffixed = first[str(two / "Mistral-7B-Instruct-v0.3")]
    assert suffixed.startswith("mistral-7b-instruct-v0.3_(BF16)-")
    other = Registry(tmp_path / "other-configs", create=True)  # the same files found in the other order: the same names
    assert {m["path"]: m["name"] for m in scan(other, [two, one]).models} == first
    shutil.rmtree(one)
    again = scan(registry, [two])
    assert [m["name"] for m in again.models] == [suffixed]  # the survivor keeps its name
    assert again.missing == ["mistral-7b-instruct-v0.3_(BF16)"]


def test_vanished_models_stay_marked_missing_until_they_return(models, registry, tmp_path):
    scan(registry, [models])
    name = "llama-2-7b-chat_(GPTQ)"
    registry.set_value(name, "backend_config.extra_args", ["--enforce-eager"])
    folder = models / "hf" / "Llama-2-7B-Chat-GPTQ"
    moved = folder.rename(tmp_path / "elsewhere")
    result = scan(registry, [models])
    assert result.missing == [name]
    assert registry.entry(name)["missing"] is True
    assert registry.entry(name)["backend_config"]["extra_args"] == ["--enforce-eager"]
    assert scan(registry, [models]).missing == []  # already marked
    moved.rename(folder)
    back = scan(registry, [models])
    assert next(m for m in back.models if m["name"] == name)["status"] == "returned"
    assert "missing" not in registry.entry(name)


def test_corrupt_inputs_are_reported_per_path_and_the_rest_written(models, registry, tmp_path):
    shard = models / "hf" / "Llama-3.1-8B-Instruct" / "model-00003-of-00004.safetensors"
    shard.write_bytes(shard.read_bytes()[:64])  # truncated safetensors header
    bad_gguf = models / "gguf" / "broken-Q4_K_M.gguf"
    bad_gguf.write_bytes(b"GGML" + bytes(100))  # bad magic
    manifest = models / "ollama" / "manifests" / "registry.ollama.ai" / "library" / "llava" / "7b"
    manifest.write_text("<html>not json</html>")
    dangling = models / "gguf" / "gone.gguf"
    dangling.symlink_to(tmp_path / "nowhere.gguf")
    result = scan(registry, [models])
    problems = {p.path: p.message for p in result.problems}
    assert "truncated" in problems[str(shard)]
    assert "not a GGUF file" in problems[str(bad_gguf)]
    assert "not JSON" in problems[str(manifest)]
    assert "dangling symlink" in problems[str(dangling)]
    assert len(problems) == 4
    assert len(result.models) == 7  # the nine models less the two that are corrupt
    assert len(registry.discovered_entries()) == 7 and registry.snapshot().entries


def test_a_folder_without_permission_is_reported_and_skipped(models):
    """As root, the scan runs without the capabilities that let root read every folder (util-linux setpriv)."""
    locked = models / "hf" / "Llama-2-7B-Chat-GPTQ"
    code = ("import json, sys; from modelreg.discovery.scan import discover; d = discover([sys.argv[1]]); "
            "print(json.dumps({'models': [m.key for m in d.models], 'problems': [[p.path, p.message] "
            "for p in d.problems]}))")
    command = [sys.executable, "-c", code, str(models / "hf")]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: a folder's permissions cannot stop root")
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    locked.chmod(0)
    try:
        out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)
    finally:
        locked.chmod(0o755)
    assert out["problems"] == [[str(locked), "cannot read folder: Permission denied; skipped"]]
    assert sorted(out["models"]) == sorted(str(models / "hf" / n) for n in
                                           ("Llama-3.1-8B-Instruct", "Qwen2.5-VL-7B-Instruct-AWQ"))


def test_a_missing_path_and_a_non_model_file_are_reported(tmp_path, registry):
    note = tmp_path / "notes.txt"
    note.write_text("hi")
    result = scan(registry, [tmp_path / "nope", note])
    assert [p.path for p in result.problems] == [str(tmp_path / "nope"), str(note)]
    assert result.models == []


def test_default_roots_are_the_settings_roots_and_the_caches(tmp_path, monkeypatch):
    hub, store, extra = tmp_path / "hub", tmp_path / "ollama", tmp_path / "extra"
    model = mf.llama32_1b_gguf(tmp_path / "src")
    mf.as_hf_cache(model.parent, hub, "bartowski/Llama-3.2-1B-Instruct-GGUF")
    mf.ollama_store(store, tmp_path / "scratch")
    mf.llama2_7b_gptq(extra)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "settings.json").write_text(json.dumps({"model_roots": [str(extra)]}))
    result = scan(Registry(config_dir))
    assert result.roots == [str(extra), str(hub), str(store)]
    assert {m["format"] for m in result.models} == {"safetensors", "gguf", "ollama"} and len(result.models) == 5


def test_rescans_read_only_what_changed(models, registry, monkeypatch):
    scan(registry, [models])
    touched = models / "gguf" / "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    os.utime(touched, ns=(1, 1))
    read = []
    from modelreg.discovery import gguf_models
    original = gguf_models.read_gguf_header
    monkeypatch.setattr(gguf_models, "read_gguf_header", lambda path: read.append(Path(path).name) or original(path))
    scan(registry, [models])
    assert read == [touched.name]


# ---- the upstream registry's models, scanned -------------------------------------------------------------------

UPSTREAM_OLLAMA = {  # served_model_id: (architecture, file_type, vision)
    "qwen3:8b": ("qwen3", "Q4_K_M", False),
    "qwen2.5vl:7b": ("qwen25vl", "Q4_K_M", True),
    "llama3.1-local:latest": ("llama", "Q5_K_M", False),
    "huihui_ai/gpt-oss-abliterated:20b": ("gpt-oss", "F16", False),
    "aqualaguna/gemma-3-27b-it-abliterated-GGUF:q3_k_m": ("gemma3", "Q3_K_M", False),
}


def upstream_models(root: Path, scratch: Path) -> None:
    """Disk shapes of the upstream registry's models: its vLLM folders and its Ollama store."""
    mf.qwen25_vl_7b_awq(root / "weights" / "Qwen")
    mf.qwen3_vl_8b_fp8(root / "weights" / "Qwen")
    mf.gpt_oss_20b(root / "weights" / "openai")
    huihui = mf.qwen3_vl_8b_fp8(root / "weights" / "huihui-ai",
                                repo_id="huihui-ai/Huihui-Qwen3-VL-8B-Instruct-abliterated-fp8")
    config = json.loads((huihui.path / "config.json").read_text())  # llm-compressor's FP8 format
    config["quantization_config"] = {"quant_method": "compressed-tensors", "format": "float-quantized",
                                     "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                                         "num_bits": 8, "type": "float", "strategy": "channel"},
                                         "input_activations": {"num_bits": 8, "type": "float", "dynamic": True}}}}
    (huihui.path / "config.json").write_text(json.dumps(config))
    for name, (arch, file_type, vision) in UPSTREAM_OLLAMA.items():
        extra = {f"{arch}.vision.block_count": 32} if vision else None
        blob = mf.write_gguf(scratch / f"{arch}-{file_type}.gguf", arch, context=32768, layers=36, heads=32,
                             kv_heads=8, hidden=4096, file_type=gguf.LlamaFileType[f"MOSTLY_{file_type}"], extra=extra)
        mf.ollama_model(root / "ollama", name, blob, family=arch, parameter_size="8B", file_type=file_type)


def test_the_upstream_registry_models_classify_as_upstream_did(tmp_path):
    registry = Registry(upstream_copy(tmp_path / "configs"))
    upstream = {e["name"]: e for e in registry.discovered_entries()}
    merged_before = {e["name"]: e for e in registry.snapshot().entries}
    upstream_models(tmp_path / "disk", tmp_path / "scratch")
    result = scan(registry, [tmp_path / "disk"])
    assert result.problems == []
    by_path = {m["path"]: m for m in result.models}
    compared = []
    for name, old in upstream.items():
        path = old["backend_config"]["model_path"]
        if path.startswith("ollama:/"):  # the same store path: the upstream entry keeps its name
            found = [m for m in result.models if m["path"] == path]
            assert found and found[0]["name"] in upstream, name
        else:  # upstream's folders, found under this disk's root
            found = [m for p, m in by_path.items() if Path(p).name == Path(path).name]
        if not found:
            assert name in result.missing  # Florence-2 and SigLIP are not on this disk
            continue
        entry = next(e for e in registry.discovered_entries() if e["name"] == found[0]["name"])
        assert (entry["quantization"], bool(entry["capabilities"]["vision"])) == (
            old["quantization"], bool(old["capabilities"]["vision"])), name
        assert {"safetensors": "vllm", "ollama": "ollama"}[entry["metadata"]["format"]] == old["backend"]
        compared.append(name)
    assert len(compared) == 13  # all but Florence-2, SigLIP and the abliterated Qwen3-VL of prithivMLmods
    for name, before in merged_before.items():  # the scan changed no configuration
        after = registry.entry(name)
        for path in ("backend", "backend_config.port", "backend_config.extra_args", "generation_defaults", "roles"):
            assert get_path(after, path) == get_path(before, path), (name, path)
    assert result.stubs == sorted(m["name"] for m in result.models if m["status"] == "new")


@pytest.mark.parametrize("executables, backend, note", [
    ({"llama.cpp": "FAKE"}, "llama.cpp", False),                                     # llama-server found
    ({"llama.cpp": "/no/llama-server"}, "llama-cpp-python", False),                  # this venv imports llama_cpp
    ({"llama.cpp": "/no/llama-server", "llama-cpp-python": "OTHER"}, "llama-cpp-python", False),  # asked in a child
    ({"llama.cpp": "/no/llama-server", "llama-cpp-python": "/no/python"}, "llama.cpp", True),
])
def test_a_gguf_stub_suggests_an_installed_backend(tmp_path, registry, executables, backend, note):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    other = tmp_path / "python"  # another program than this interpreter that runs it
    other.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    other.chmod(0o755)
    save_setting(registry.config_dir, "executables", {k: {"FAKE": str(fake), "OTHER": str(other)}.get(v, v)
                                                      for k, v in executables.items()})
    root = tmp_path / "models"
    mf.llama32_1b_gguf(root / "gguf")
    result = scan(Registry(registry.config_dir), [root])
    assert Registry(registry.config_dir).entry(result.stubs[0])["backend"] == backend
    notes = [p.message for p in result.problems if "is installed here" in p.message]
    assert bool(notes) == note
