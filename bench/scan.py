"""Scan of 500 synthetic model folders and 200 GGUF files: modelreg's scan vs huggingface_hub.scan_cache_dir."""
from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path

import gguf
from huggingface_hub import scan_cache_dir

from bench.common import best_of, side_by_side
from modelreg.discovery.facts import Known
from modelreg.discovery.gguf_reader import STEPPED_OVER, read_gguf_header
from modelreg.discovery.scan import discover, scan
from modelreg.registry import Registry
from support import model_folders as mf  # the tests' builders of real model folders

FOLDERS = 500
GGUF_FILES = 200
BENCH_SCALE = 4096  # tensor dims / 4096: every tensor name, dtype and shard of the real model, tiny data
# (architecture, vocabulary) of the GGUF files: Llama 2, Mistral, Llama 3 and Qwen 2.5 vocabularies.
GGUF_SHAPES = (("llama", 32000), ("llama", 32768), ("llama", 128256), ("qwen2", 151936))
GGUF_TYPES = (gguf.LlamaFileType.MOSTLY_Q4_K_M, gguf.LlamaFileType.MOSTLY_Q5_K_M, gguf.LlamaFileType.MOSTLY_Q8_0,
              gguf.LlamaFileType.MOSTLY_Q6_K)


def build(root: Path) -> tuple[Path, Path]:
    """The same models twice: plain folders under root/plain, and a Hugging Face cache under root/cache."""
    plain, cache, scratch = root / "plain", root / "cache" / "hub", root / "scratch"
    for i in range(FOLDERS):
        builder = mf.HF_MODELS[i % len(mf.HF_MODELS)]
        built = builder(plain / f"org{i % 25}", scale=BENCH_SCALE, repo_id=f"org{i % 25}/model-{i:03d}")
        copy = scratch / built.path.name
        shutil.copytree(built.path, copy)
        mf.as_hf_cache(copy, cache, built.repo_id)
    templates = []
    for arch, vocab in GGUF_SHAPES:
        templates.append(mf.write_gguf(scratch / f"{arch}-{vocab}.gguf", arch, context=32768, layers=32, heads=32,
                                       kv_heads=8, hidden=4096, vocab=vocab, template=mf.QWEN3_TEMPLATE,
                                       tensors=290))
    for i in range(GGUF_FILES):
        repo = f"quants/Model-{i // 4:02d}-GGUF"
        file_type = GGUF_TYPES[i % 4].name.removeprefix("MOSTLY_")
        name = f"Model-{i // 4:02d}-{file_type}.gguf"
        target = plain / "gguf" / repo.split("/")[1] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(templates[(i // 4) % len(templates)], target)
        folder = scratch / "gguf" / repo.split("/")[1]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, folder / name)
        if i % 4 == 3:
            mf.as_hf_cache(folder, cache, repo)
    shutil.rmtree(scratch)
    return plain, cache


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="modelreg-bench-scan-"))
    try:
        print(f"building {FOLDERS} model folders and {GGUF_FILES} GGUF files (plain and as a Hugging Face cache)...")
        plain, cache = build(root)
        folders = [plain / f"org{i}" for i in range(25)]
        ggufs = sorted((plain / "gguf").rglob("*.gguf"))
        samples = [ggufs[i] for i in range(0, 16, 4)]  # one of each vocabulary size
        first = discover([cache])
        known = Known(m.entry for m in first.models)
        problems, count = len(first.problems), len(first.models)
        del first
        gc.collect()
        hub_s = best_of(3, lambda: scan_cache_dir(cache))
        cache_s = best_of(3, lambda: discover([cache]))
        rescan_s = best_of(3, lambda: discover([cache], known))
        folders_s = best_of(3, lambda: discover(folders))
        ours_gguf_s = best_of(3, lambda: (STEPPED_OVER.clear(), [read_gguf_header(p) for p in samples])) / len(samples)
        seen_gguf_s = best_of(3, lambda: [read_gguf_header(p) for p in samples]) / len(samples)
        library_gguf_s = best_of(1, lambda: [gguf.GGUFReader(p) for p in samples]) / len(samples)
        registry = Registry(root / "configs", create=True)
        scan(registry, [plain, cache])
        write_s = best_of(3, lambda: scan(registry, [plain, cache]))
        side_by_side(f"scan: {FOLDERS} safetensors model folders + {GGUF_FILES} GGUF files", [
            ("HF cache, first scan (every header read)", cache_s, "scan_cache_dir", hub_s, "s"),
            ("HF cache, rescan (unchanged files not re-read)", rescan_s, "scan_cache_dir", hub_s, "s"),
            (f"{FOLDERS} plain folders, first scan", folders_s, "goal", 2.0, "s"),
            ("GGUF header, per file (32k-152k vocabulary)", ours_gguf_s * 1000, "gguf.GGUFReader",
             library_gguf_s * 1000, "ms"),
            ("GGUF header, per file, its vocabulary seen before", seen_gguf_s * 1000, "gguf.GGUFReader",
             library_gguf_s * 1000, "ms"),
            ("`modelreg scan` rescan of plain + cache, with writes", write_s, "scan_cache_dir", hub_s, "s"),
        ], note=f"{count} models in the cache, {problems} problems. modelreg reads every config.json, tokenizer "
                "config, chat template, safetensors header and GGUF header (four at a time; a vocabulary is read "
                "string by string once per scan, its copies in other files are stepped over by one digest); "
                f"scan_cache_dir lists files and sizes. The GGUF header reader is {library_gguf_s / ours_gguf_s:.0f}x "
                "faster than the gguf library's reader. Goals: 500 folders under 2 s; rescans within 2x of "
                "scan_cache_dir.")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
