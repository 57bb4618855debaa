"""Tiny real model files for the demo registry in configs/ (`make run` writes them to .cache/demo-models/
through `PYTHONPATH=tests python -m support.demo_models DIR`).

The demo's discovered layer points at these paths (relative to the repo folder, where `make run` starts), so a
Rescan finds every demo model on disk instead of marking it missing. The GGUF files are the tests' tiny Llama,
which llama.cpp loads and answers with; the safetensors folders hold real configs and tiny weight files.
Phi 3.5 stays absent on purpose: the demo's example of a model whose files are gone.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from support.tiny_gguf import write_tiny_gguf

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
GGUF_FILES = ("gguf/gemma-3-4b-it-Q8_0.gguf", "gguf/mmproj-gemma-3-4b-it-f16.gguf",
              "gguf/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf")


def main(root: Path) -> None:
    for folder, config in FOLDERS.items():
        path = root / folder
        if (path / "model.safetensors").exists():
            continue
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(config, indent=2))
        save_file({"model.embed_tokens.weight": np.zeros((4, 64), dtype=np.float16)}, str(path / "model.safetensors"))
    for name in GGUF_FILES:
        if not (root / name).exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            write_tiny_gguf(root / name)
    print(f"demo model files in {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/demo-models"))
