"""The demo `make run` opens: tiny real model files, and a registry whose discovered layer is read from them
(`PYTHONPATH=tests python -m support.demo_models MODELS_DIR REGISTRY_DIR` writes .cache/demo-models and
.cache/demo-registry from configs/).

configs/ holds the demo's curated layer and settings and a discovered layer whose paths (relative to the repo
folder, where `make run` starts) point at these files. The demo registry is a copy of configs/ scanned over the
files, so its facts are those of the files it ships and the GUI's Rescan changes nothing. The GGUF files are the
tests' tiny Llama, which llama.cpp loads and answers with; the safetensors folders hold real configs and tiny
weight files. Phi 3.5 stays absent on purpose: the demo's example of a model whose files are gone.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from modelreg.discovery.scan import scan
from modelreg.registry import Registry
from modelreg.settings import SETTINGS_FILE
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from support.tiny_gguf import write_tiny_gguf

DEMO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEXT_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "max_position_embeddings": 32768, "vocab_size": 259, "torch_dtype": "bfloat16"}
FOLDERS = {
    "mistralai/Mistral-7B-Instruct-v0.3": {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                                           **TEXT_CONFIG},
    "Qwen/Qwen2.5-VL-7B-Instruct-AWQ": {"architectures": ["Qwen2_5_VLForConditionalGeneration"],
                                        "model_type": "qwen2_5_vl", **TEXT_CONFIG,
                                        "quantization_config": {"quant_method": "awq", "bits": 4},
                                        "vision_config": {"hidden_size": 32}},
}
# Gemma and its projector in a folder of their own: a scan pairs a projector with every model beside it.
GGUF_FILES = ("gguf/gemma-3-4b-it/gemma-3-4b-it-Q8_0.gguf", "gguf/gemma-3-4b-it/mmproj-gemma-3-4b-it-f16.gguf",
              "gguf/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf")


def write_model_files(root: Path) -> None:
    """The demo's model files under `root`, written afresh (anything else there would be a model a Rescan adds)."""
    shutil.rmtree(root, ignore_errors=True)
    for folder, config in FOLDERS.items():
        path = root / folder
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(config, indent=2))
        save_file({"model.embed_tokens.weight": np.zeros((4, 64), dtype=np.float16)}, str(path / "model.safetensors"))
    for name in GGUF_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_tiny_gguf(root / name)


def build_demo(models_root: Path, registry_dir: Path, configs: Path = DEMO_CONFIGS) -> Registry:
    """The model files, then a copy of `configs` (curated, discovered, settings) scanned over them, rebuilt.

    Run from the folder the demo's relative paths start at (the repo folder for `make run`)."""
    write_model_files(models_root)
    shutil.rmtree(registry_dir, ignore_errors=True)
    registry_dir.mkdir(parents=True)
    for name in (CURATED_FILE, DISCOVERED_FILE, SETTINGS_FILE):
        shutil.copyfile(configs / name, registry_dir / name)
    registry = Registry(registry_dir)
    scan(registry, [models_root], stubs=False)
    return registry


if __name__ == "__main__":
    models, registry = (Path(arg) for arg in (sys.argv[1:] + [".cache/demo-models", ".cache/demo-registry"])[:2])
    build_demo(models, registry)
    print(f"demo model files in {models}, demo registry in {registry}")
