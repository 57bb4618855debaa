"""Builders for registry folders in temp dirs: hand-made layers and copies of the upstream corpus."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE, SNAPSHOT_FILE, dumps

UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream-registry"


def write_layers(folder: Path, discovered: list[dict] | None = None, curated: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if discovered is not None:
        (folder / DISCOVERED_FILE).write_text(json.dumps(discovered, indent=2) + "\n")
    if curated is not None:
        (folder / CURATED_FILE).write_text(json.dumps(curated, indent=2) + "\n")
    return folder


def upstream_copy(folder: Path) -> Path:
    """The upstream registry files, copied (writable) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (DISCOVERED_FILE, CURATED_FILE, SNAPSHOT_FILE):
        target = folder / name
        shutil.copyfile(UPSTREAM / name, target)
        target.chmod(0o644)
    return folder


def discovered_model(name: str, path: str = "/models/x", **extra) -> dict:
    """A facts-only discovered entry as a scan writes it."""
    return {"name": name, "display_name": name, "backend_config": {"model_path": path},
            "metadata": {"format": "safetensors", "architecture": {"num_layers": 32}},
            "size_bytes": 1000, **extra}


# A registry for the exports: every kind of model they meet, and a host gpu-b that runs profile a6000.
SWAP_HOST, SWAP_PROFILE = "gpu-b", "a6000"
SWAP_PORTS = {"qwen2.5-7b-instruct_(AWQ)": 24001, "llama-3.1-8b-instruct_(Q4_K_M)": 24002, "tiny-embed": 24003,
         "old-model": 24004}


def registry_for_llama_swap(config_dir: Path) -> Path:
    """A registry with every kind of model the export meets, and a host `gpu-b` running profile a6000."""
    config_dir.mkdir(parents=True, exist_ok=True)
    settings = {"executables": {"vllm": "/opt/vllm/bin/vllm", "llama.cpp": "/usr/local/bin/llama-server",
                                "llama-cpp-python": "/usr/bin/python3"},
                "idle_ttl": 300, "ready_timeout": 120,
                "hosts": {SWAP_HOST: {"url": "http://gpu-b:8100", "profile": SWAP_PROFILE}},
                "profiles": {SWAP_PROFILE: {"gpu_memory_utilization": 0.85}}}
    (config_dir / "settings.json").write_text(json.dumps(settings))
    curated = [
        {"name": "qwen2.5-7b-instruct_(AWQ)", "backend": "vllm", "display_name": "Qwen2.5 7B Instruct (AWQ)",
         "served_model_id": "Qwen/Qwen2.5-7B-Instruct-AWQ", "model_aliases": ["qwen", "chat"],
         "capabilities": {"tools": True},
         "backend_config": {"model_path": "/models/Qwen2.5-7B-Instruct-AWQ", "port": 24001,
                            "extra_args": ["--max-model-len", "8192", "--enforce-eager"],
                            "exclusive_group": "big-gpu", "ready_timeout": 900}},
        {"name": "qwen2.5-7b-instruct_(AWQ)", "profile": SWAP_PROFILE,
         "backend_config": {"extra_args": ["--max-model-len", "32768", "--enforce-eager"], "idle_ttl": 600.5}},
        {"name": "llama-3.1-8b-instruct_(Q4_K_M)", "backend": "llama.cpp",
         "display_name": "Llama 3.1 8B Instruct (Q4_K_M)", "model_aliases": ["llama"],
         "capabilities": {"vision": True}, "generation_defaults": {"context_window": 16384},
         "backend_config": {"model_path": "/models/gguf/Llama 3.1 8B Q4_K_M.gguf", "port": 24002,
                            "extra_args": ["-ngl", "99"], "exclusive_group": "big-gpu"}},
        {"name": "tiny-embed", "backend": "llama-cpp-python", "capabilities": {"embedding": True},
         "backend_config": {"model_path": "/models/tiny.gguf", "port": 24003, "extra_args": ["--embedding", "true"]}},
        {"name": "old-model", "backend": "llama.cpp", "deprecated": True,
         "backend_config": {"model_path": "/models/gguf/old.gguf", "port": 24004}},
        {"name": "ollama-model", "backend": "ollama", "backend_config": {"model_path": "qwen3:8b"}},
        {"name": "needs-config", "backend": "vllm", "backend_config": {"model_path": "/models/new"}},
    ]
    (config_dir / CURATED_FILE).write_bytes(dumps(curated))
    Registry(config_dir, SWAP_PROFILE).rebuild()  # the snapshot `launch-cmd --profile a6000` reads
    return config_dir
