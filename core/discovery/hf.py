"""Hugging Face model folders (config.json + safetensors) and the Hugging Face cache layout, read header-only."""
from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import orjson
from huggingface_hub import constants, scan_cache_dir

from modelreg.discovery import quant
from modelreg.discovery.facts import Found, Known, Problem, ScanError, fingerprint, found, model_entry, template_facts
from modelreg.discovery.naming import slug

TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
MARKER_FILE = ".modelreg-download.json"  # written by a finished download: repo, commit and the files it holds


def read_marker(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MARKER_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
EMBEDDING_FILES = ("sentence_bert_config.json", "modules.json")
_VISION_ARCH = re.compile(
    r"VL|Vision|Llava|Mllama|Pixtral|Idefics|PaliGemma|Florence|Molmo|Phi3V|Phi4MM|InternVL|MiniCPMV")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# vLLM's _get_and_verify_max_len: the smallest of these config keys is the native context length.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")


def is_model_folder(names: Iterable[str]) -> bool:
    """A folder with config.json plus *.safetensors or a safetensors index."""
    names = set(names)
    return CONFIG_FILE in names and (INDEX_FILE in names or any(n.endswith(".safetensors") for n in names))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise ScanError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                              "fix or re-download the file") from exc
    except UnicodeDecodeError as exc:
        raise ScanError(path, "not UTF-8 JSON; fix or re-download the file") from exc
    except OSError as exc:
        raise ScanError(path, f"cannot read: {exc.strerror or exc}") from exc


@dataclass
class Listing:
    """A model folder's files (path, size, sha256 when known), their fingerprint, and what could not be read."""

    files: list[dict[str, Any]]
    fingerprint: str
    problems: list[Problem] = field(default_factory=list)


def list_files(folder: Path) -> Listing:
    """Every file under a model folder (dot folders skipped) with its size, sorted by path."""
    files: list[dict[str, Any]] = []
    stamps: list[tuple] = []
    problems: list[Problem] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(folder / rel if rel else folder))
        except OSError as exc:
            problems.append(Problem(str(folder / rel), f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir():
                    if not entry.name.startswith("."):
                        stack.append(path)
                    continue
                stat = entry.stat()
                files.append({"path": path, "size": stat.st_size})
                stamps.append((path, stat.st_size, stat.st_mtime_ns))
            except FileNotFoundError:
                problems.append(Problem(entry.path, "dangling symlink (its target is gone); skipped"))
            except OSError as exc:
                problems.append(Problem(entry.path, f"cannot read: {exc.strerror or exc}; skipped"))
    files.sort(key=lambda f: f["path"])
    return Listing(files, fingerprint(stamps), problems)


def native_context_length(text: dict[str, Any], model_type: str | None, tokenizer_config: dict[str, Any]) -> int | None:
    """The context length vLLM derives when `--max-model-len` is not given (its _get_and_verify_max_len)."""
    lengths = [text[k] for k in CONTEXT_KEYS if isinstance(text.get(k), (int, float))]
    if not lengths:
        return None
    length = text["model_max_length"] if isinstance(text.get("model_max_length"), (int, float)) else min(lengths)
    tokenizer_max = tokenizer_config.get("model_max_length")
    if isinstance(tokenizer_max, (int, float)):
        length = min(length, tokenizer_max)
    rope = text.get("rope_scaling")
    if isinstance(rope, dict) and "gemma3" not in (model_type or ""):
        rope_type = rope.get("rope_type") or rope.get("type")
        if rope_type not in ("su", "longrope", "llama3"):
            if rope_type == "yarn" and rope.get("original_max_position_embeddings"):
                length = rope["original_max_position_embeddings"]
            length *= rope.get("factor") or 1.0
    return int(length)


def _first(config: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def architecture_facts(config: dict[str, Any], tokenizer_config: dict[str, Any]) -> dict[str, Any]:
    """Layers, heads, sizes and context as vLLM reads them (text_config first for vision-language models)."""
    text = {**config, **(config.get("text_config") or {})}
    model_type = text.get("model_type") or config.get("model_type")
    heads = _first(text, "num_attention_heads", "n_head", "num_heads")
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    if text.get("multi_query") and not text.get("new_decoder_architecture"):
        kv_heads = 1
    else:
        kv_heads = _first(text, "n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num") or heads
    head_dim = _first(text, "head_dim", "hidden_size_per_head")
    if head_dim is None and hidden and heads:
        head_dim = hidden // heads
    vision = config.get("vision_config") if isinstance(config.get("vision_config"), dict) else None
    facts = {
        "architectures": config.get("architectures"),
        "num_layers": _first(text, "num_hidden_layers", "n_layer", "num_layers", "n_layers"),
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_size": hidden,
        "intermediate_size": text.get("intermediate_size"),
        "max_position_embeddings": text.get("max_position_embeddings"),
        "context_length": native_context_length(text, model_type, tokenizer_config),
        "rope_theta": text.get("rope_theta"),
        "rope_scaling": text.get("rope_scaling") if isinstance(text.get("rope_scaling"), dict) else None,
        "sliding_window": text.get("sliding_window"),
        "vocab_size": text.get("vocab_size"),
        "kv_lora_rank": text.get("kv_lora_rank"),
        "qk_rope_head_dim": text.get("qk_rope_head_dim") if text.get("kv_lora_rank") else None,
        "torch_dtype": _first(text, "torch_dtype", "dtype"),
        "vision": {
            "hidden_size": vision.get("hidden_size"),
            "num_layers": _first(vision, "depth", "num_hidden_layers"),
            "patch_size": vision.get("patch_size"),
            "image_size": vision.get("image_size"),
        } if vision is not None else None,
    }
    return facts


def _chat_template(folder: Path, names: set[str], tokenizer_config: dict[str, Any]) -> tuple[dict | None, dict]:
    # TEMPLATE_FILES first: transformers prefers them over tokenizer_config's template
    for file in TEMPLATE_FILES:
        if file in names:
            text: Any  # a JSON file's value is whatever it holds
            if file.endswith(".jinja"):
                try:
                    text = (folder / file).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ScanError(folder / file, f"cannot read chat template: {exc}") from exc
            else:
                text = (read_json(folder / file) or {}).get("chat_template")
            if isinstance(text, str):
                return template_facts(text, {"file": file})
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        key = "default" if "default" in named else next(iter(named), None)
        chosen = named.get(key)
        if isinstance(chosen, str):
            return template_facts(chosen, {"file": TOKENIZER_CONFIG, "key": f"chat_template[{key}]"})
    if isinstance(template, str):
        return template_facts(template, {"file": TOKENIZER_CONFIG, "key": "chat_template"})
    return None, {}


def _safetensors(folder: Path, names: set[str], quant_info: dict | None) -> dict[str, Any]:
    """Dtype counts and parameter count from the safetensors headers only (weights are never read)."""
    if INDEX_FILE in names:
        index = read_json(folder / INDEX_FILE)
        shards = sorted(set((index.get("weight_map") or {}).values())) if isinstance(index, dict) else []
        gone = [s for s in shards if s not in names]
        if gone:
            raise ScanError(folder, f"{INDEX_FILE} lists {', '.join(gone[:3])} which is not in the folder; "
                                    "the download is incomplete (download it again)")
    else:
        shards = sorted(n for n in names if n.endswith(".safetensors") and "/" not in n)
    counts: dict[str, int] = {}
    parameters = 0
    for shard in shards:
        tensors = read_safetensors_header(folder / shard)
        for _, dtype, elements in tensors:
            counts[dtype] = counts.get(dtype, 0) + elements
        parameters += quant.parameter_count(tensors, quant_info)
    return {"shards": shards, "dtype_counts": dict(sorted(counts.items())), "parameters": parameters}


def read_safetensors_header(path: Path) -> list[tuple[str, str, int]]:
    """(name, dtype, elements) of every tensor in a safetensors file, from its header (the weights are not read)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            if size > constants.SAFETENSORS_MAX_HEADER_LENGTH or not head:
                raise ScanError(path, f"not a safetensors file (header of {size} bytes); re-download the file")
            header = handle.read(size)
    except OSError as exc:
        raise ScanError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(head) < 8 or len(header) < size:
        raise ScanError(path, f"truncated: the header needs {size + 8} bytes, the file has {len(head) + len(header)}; "
                              "re-download the file")
    try:
        tensors = orjson.loads(header)
        return [(name, info["dtype"], math.prod(info["shape"])) for name, info in tensors.items()
                if name != "__metadata__"]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ScanError(path, f"the safetensors header is not a JSON object of tensors ({exc}); re-download the "
                              "file") from exc


def read_model_folder(folder: Path, *, key: str | None = None, raw_name: str | None = None,
                      source: dict[str, Any] | None = None, listing: Listing | None = None,
                      known: Known | None = None) -> tuple[Found, list[Problem]]:
    """Facts of one Hugging Face model folder; raises ScanError when the model cannot be used as it is.

    With `known`, a folder whose files are unchanged since the last scan is taken from it without reading.
    """
    listing = listing or list_files(folder)
    key = key or str(folder)
    earlier = known.get(key, listing.fingerprint) if known else None
    if earlier:
        return earlier, listing.problems
    files = listing.files
    names = {f["path"] for f in files}
    config = read_json(folder / CONFIG_FILE)
    if not isinstance(config, dict):
        raise ScanError(folder / CONFIG_FILE, "expected a JSON object; fix or re-download the file")
    tokenizer_config = read_json(folder / TOKENIZER_CONFIG) if TOKENIZER_CONFIG in names else {}
    tokenizer_config = tokenizer_config if isinstance(tokenizer_config, dict) else {}
    quantize_config = read_json(folder / "quantize_config.json") if "quantize_config.json" in names else None
    quant_info = quant.quantization_from_config(config, quantize_config)
    weights = _safetensors(folder, names, quant_info)
    arch = architecture_facts(config, tokenizer_config)
    dtype = quant.dtype_of(weights["dtype_counts"])
    label = quant_info["label"] if quant_info else quant.label_for_dtype(dtype, arch["torch_dtype"])
    arch["parameters"] = weights["parameters"] or None
    arch["params_billion"] = round(weights["parameters"] / 1e9, 2) if weights["parameters"] else None
    template, template_caps = _chat_template(folder, names, tokenizer_config)
    architectures = " ".join(arch["architectures"] or [])
    shard_set = set(weights["shards"])
    scan = {
        "path": str(folder),
        "dtype": dtype,
        "dtype_params": weights["dtype_counts"],
        "quantization": quant_info,
        "weights_bytes": sum(f["size"] for f in files if f["path"] in shard_set),
        "processor_files": sorted(names.intersection(PROCESSOR_FILES)) or None,
    }
    raw = raw_name or folder.name
    marker = read_marker(folder) if MARKER_FILE in names else {}
    if marker.get("repo_id") and not source:  # downloaded by `modelreg download hf`
        source = {"huggingface_id": marker["repo_id"], "revision": marker.get("commit")}
    entry = model_entry(
        model_path=str(folder), fmt="safetensors", size_bytes=sum(f["size"] for f in files), files=files,
        model_type=config.get("model_type"), architecture=arch,
        capabilities={
            "vision": bool(arch["vision"] or scan["processor_files"] or _VISION_ARCH.search(architectures)),
            "embedding": bool(names.intersection(EMBEDDING_FILES)),
            **template_caps,
        },
        quantization=label, family=slug(raw), source_provider="hf", scan=scan, template=template, source=source)
    if marker.get("downloaded_at"):
        entry["downloaded_at"] = marker["downloaded_at"]
    return found(key, raw, label, entry, listing.fingerprint), listing.problems


def cache_revisions(cache_dir: Path, problems: list[Problem]) -> list[tuple[Any, Any, Listing]]:
    """(repo, chosen revision, its files with sizes and LFS sha256) for every model repo in the cache."""
    info = scan_cache_dir(cache_dir)
    problems.extend(Problem(str(cache_dir), f"Hugging Face cache: {warning}; skipped") for warning in info.warnings)
    chosen = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        main = [r for r in repo.revisions if "main" in r.refs]
        revision = main[0] if main else max(repo.revisions, key=lambda r: (r.last_modified, r.commit_hash))
        files, stamps = [], []
        inside = len(str(revision.snapshot_path)) + 1  # paths as strings: a Path per file costs more than the read
        for cached in revision.files:
            path = str(cached.file_path)[inside:].replace(os.sep, "/")
            blob = os.path.basename(cached.blob_path)
            item: dict[str, Any] = {"path": path, "size": cached.size_on_disk}
            if _SHA256.fullmatch(blob):
                item["sha256"] = blob
            files.append(item)
            stamps.append((path, cached.size_on_disk, blob, cached.blob_last_modified))
        files.sort(key=lambda f: f["path"])
        chosen.append((repo, revision, Listing(files, fingerprint(stamps))))
    return chosen
