"""The real vLLM (CPU) and llama.cpp llama-server that `make test` installs (.ci/backends.sh), as the tests run them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".cache" / "backends" / "bin"
VLLM = BIN / "vllm"
LLAMA_SERVER = BIN / "llama-server"
# vLLM on a CPU-only machine: a 1 GiB KV cache (its default wants 92 % of a NUMA node's memory), no hub access.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# What makes the tiny model start fast on the CPU (no compiled graphs, float32 kernels).
VLLM_CPU_ARGS = ["--enforce-eager", "--dtype", "float32"]


def require(program: Path) -> str:
    """The program's path; a missing one fails under CI (where `make test` installed it) and skips elsewhere."""
    if program.exists():
        return str(program)
    message = f"{program} is missing: `make backends` installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def vllm_env() -> dict[str, str]:
    """The environment a test's modelreg process (proxy, launch test) passes on to the real vLLM."""
    return {**os.environ, **VLLM_ENV}


def clean_llama_env() -> dict[str, str]:
    """The environment without llama.cpp's LLAMA_ARG_* settings, so that only the argv configures llama-server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}


def llama_server_registry(tmp_path: Path, extra_args: list[str], name: str = "tiny") -> Path:
    """A registry folder (tmp_path/configs) with one model, the tiny GGUF, served by the real llama-server."""
    import json

    from support.tiny_gguf import tiny_entry, write_tiny_gguf

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "stop_grace": 2, "executables": {"llama.cpp": require(LLAMA_SERVER)}}))
    entry = {**tiny_entry(write_tiny_gguf(tmp_path / "tiny.gguf"), name=name, extra_args=extra_args),
             "backend": "llama.cpp"}
    (folder / "model_registry.curated.json").write_text(json.dumps([entry]))
    return folder
