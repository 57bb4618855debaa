"""GGUF models: split sets counted as one, `mmproj` projectors attached to their model, facts from the header."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from modelreg.discovery import quant
from modelreg.discovery.facts import Found, Known, Problem, ScanError, fingerprint, found, model_entry, template_facts
from modelreg.discovery.gguf_reader import GGUFError, GGUFHeader, read_gguf_header
from modelreg.discovery.naming import slug, strip_quant_suffix
from modelreg.launch.backends import is_projector_name

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
PROJECTOR_ARCH = "clip"


@dataclass
class GGUFSet:
    """One model's GGUF file(s) in a folder (split parts in order) and the projector beside it, if any."""

    parts: list[str]
    projector: str | None = None


def group_gguf_files(names: list[str]) -> tuple[list[GGUFSet], list[tuple[str, str]]]:
    """Group the `.gguf` file names of one folder into models; returns (sets, [(name, problem)])."""
    singles: list[str] = []
    splits: dict[str, dict[int, str]] = {}
    counts: dict[str, int] = {}
    projectors: list[str] = []
    for name in sorted(n for n in names if n.lower().endswith(".gguf")):
        if is_projector_name(name):
            projectors.append(name)
            continue
        match = _SPLIT.match(name)
        if match:
            splits.setdefault(match["stem"], {})[int(match["part"])] = name
            counts[match["stem"]] = int(match["count"])
        else:
            singles.append(name)
    problems: list[tuple[str, str]] = []
    sets = [GGUFSet([name]) for name in singles]
    for stem, parts in sorted(splits.items()):
        wanted = range(1, counts[stem] + 1)
        missing = [i for i in wanted if i not in parts]
        if missing:
            problems.append((parts[min(parts)], f"split GGUF is incomplete: part(s) {missing} of {counts[stem]} "
                                                f"missing; download the missing parts"))
            continue
        sets.append(GGUFSet([parts[i] for i in wanted]))
    projector = projectors[0] if projectors else None
    for model in sets:
        model.projector = projector
    sets.sort(key=lambda s: s.parts[0])
    return sets, problems


def read_header(path: Path) -> GGUFHeader:
    try:
        return read_gguf_header(path)
    except GGUFError as exc:
        raise ScanError(path, str(exc).removeprefix(f"{path}: ") + "; skipped") from exc
    except OSError as exc:
        raise ScanError(path, f"cannot read: {exc.strerror or exc}") from exc


def _per_layer(value: Any) -> Any:
    """Some architectures give per-layer lists (heads, feed-forward sizes); the fit plans for the largest."""
    return max(value) if isinstance(value, list) and value else value


def gguf_facts(header: GGUFHeader, extra_tensors: Sequence[Any] = (), projector: bool = False,
               template_location: dict[str, Any] | None = None) -> dict[str, Any]:
    """Architecture, quantization, capabilities and template of a GGUF model from its header(s)."""
    md = header.metadata
    arch_name = header.architecture
    tensors = list(header.tensors) + list(extra_tensors)
    heads = _per_layer(header.arch_value("attention.head_count"))
    hidden = header.arch_value("embedding_length")
    key_length = header.arch_value("attention.key_length") or (hidden // heads if hidden and heads else None)
    value_length = header.arch_value("attention.value_length")
    type_counts = quant.count_by((t.ggml_type, t.n_elements) for t in tensors)
    label = quant.gguf_file_type_label(md.get("general.file_type")) or quant.gguf_tensor_type_label(type_counts)
    parameters = sum(t.n_elements for t in tensors)
    rope_type = header.arch_value("rope.scaling.type")
    architecture = {
        "num_layers": header.arch_value("block_count"),
        "num_attention_heads": heads,
        "num_kv_heads": _per_layer(header.arch_value("attention.head_count_kv")) or heads,
        "head_dim": key_length,
        "v_head_dim": value_length if value_length and value_length != key_length else None,
        "hidden_size": hidden,
        "intermediate_size": _per_layer(header.arch_value("feed_forward_length")),
        "context_length": header.arch_value("context_length"),
        "rope_theta": header.arch_value("rope.freq_base"),
        "rope_scaling": {
            "rope_type": rope_type,
            "factor": header.arch_value("rope.scaling.factor"),
            "original_max_position_embeddings": header.arch_value("rope.scaling.original_context_length"),
        } if rope_type and rope_type != "none" else None,
        "sliding_window": header.arch_value("attention.sliding_window"),
        "vocab_size": header.arch_value("vocab_size") or header.array_lengths.get("tokenizer.ggml.tokens")
        or (len(md["tokenizer.ggml.tokens"]) if isinstance(md.get("tokenizer.ggml.tokens"), list) else None),
        "kv_lora_rank": header.arch_value("attention.kv_lora_rank"),
        "parameters": parameters or None,
        "params_billion": round(parameters / 1e9, 2) if parameters else None,
    }
    if architecture["kv_lora_rank"]:
        architecture["qk_rope_head_dim"] = header.arch_value("rope.dimension_count")
    vision_keys = any(k.startswith(f"{arch_name}.vision.") for k in md) or bool(md.get("clip.has_vision_encoder"))
    template = md.get("tokenizer.chat_template")
    location = template_location or {"key": "tokenizer.chat_template"}
    template_info, template_caps = template_facts(template, location) if isinstance(template, str) else (None, {})
    return {
        "architecture": architecture,
        "quantization": label,
        "template": template_info,
        "capabilities": {"vision": projector or vision_keys,
                         "embedding": arch_name in ("bert", "nomic-bert", "jina-bert-v2") or bool(
                             md.get(f"{arch_name}.pooling_type")), **template_caps},
        "scan": {
            "dtype": quant.gguf_tensor_type_label(type_counts),
            "gguf": {
                "version": header.version,
                "architecture": arch_name,
                "name": md.get("general.name"),
                "basename": md.get("general.basename"),
                "size_label": md.get("general.size_label"),
                "file_type": md.get("general.file_type"),
                "quantized_by": md.get("general.quantized_by"),
            },
        },
        "model_type": arch_name,
    }


def read_gguf_set(folder: Path, model: GGUFSet, stats: dict[str, tuple[int, Any]], *,
                  source: dict[str, Any] | None = None, key_base: Path | None = None,
                  known: Known | None = None) -> tuple[Found, list[Problem]]:
    """A GGUF model file (or split set) in `folder`; its projector beside it is recorded, not listed as a model.

    `stats` maps file names to (size, stamp): the modification time, or the content hash in a Hugging Face cache.
    """
    key = str((key_base or folder) / model.parts[0])
    names = model.parts + ([model.projector] if model.projector else [])
    print_ = fingerprint((name, *stats[name]) for name in names)
    earlier = known.get(key, print_) if known else None
    if earlier:
        return earlier, []
    first = folder / model.parts[0]
    header = read_header(first)
    if header.architecture == PROJECTOR_ARCH:
        raise ScanError(first, "a multimodal projector (architecture clip), not a model; it is recorded with the "
                               "model beside it")
    extra = [t for part in model.parts[1:] for t in read_header(folder / part).tensors]
    problems: list[Problem] = []
    projector = model.projector
    if projector:
        try:
            read_header(folder / projector)
        except ScanError as exc:  # the model still serves text without its projector
            problems.append(Problem(exc.path, exc.message))
            projector = None
    facts = gguf_facts(header, extra, projector=bool(projector),
                       template_location={"file": model.parts[0], "key": "tokenizer.chat_template"})
    files: list[dict[str, Any]] = [{"path": name, "size": stats[name][0]}
                                   for name in model.parts + ([projector] if projector else [])]
    size = sum(f["size"] for f in files)
    stem = re.sub(r"\.gguf$", "", model.parts[0], flags=re.IGNORECASE)
    raw = strip_quant_suffix(stem)
    scan = {"path": str(first), **facts["scan"], "weights_bytes": size,
            "parts": model.parts if len(model.parts) > 1 else None,
            "projector": str(folder / projector) if projector else None}
    entry = model_entry(
        model_path=str(first), fmt="gguf", size_bytes=size, files=files, model_type=facts["model_type"],
        architecture=facts["architecture"], capabilities=facts["capabilities"], quantization=facts["quantization"],
        family=slug(raw), source_provider="hf" if source else "local", scan=scan, template=facts["template"],
        source=source)
    return found(key, raw, facts["quantization"], entry, print_), problems
