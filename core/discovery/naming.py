"""Stable registry names for discovered models: `<slug>_(<QUANT>)`, kept across rescans, clashes suffixed."""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Mapping

from gguf import GGMLQuantizationType, LlamaFileType

_QUANT_WORDS = sorted(
    {t.name.removeprefix("MOSTLY_").removeprefix("ALL_").lower() for t in LlamaFileType if t.name != "GUESSED"}
    | {t.name.lower() for t in GGMLQuantizationType}
    | {"awq", "gptq", "fp8", "fp16", "bf16", "fp32", "f16", "f32", "int4", "int8", "gguf", "w4a16", "w8a8",
       "w8a16", "mxfp4", "nvfp4", "bnb-4bit", "bnb-8bit", "4bit", "8bit", "exl2", "hqq", "aqlm", "fp8-dynamic",
       "fp8_dynamic", "dynamic", "gptq-int4", "gptq-int8", "awq-int4"},
    key=len, reverse=True)
_TRAILING_QUANT = re.compile(r"[-_.:](?:" + "|".join(re.escape(w) for w in _QUANT_WORDS) + r")$", re.IGNORECASE)
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def slug(text: str) -> str:
    """Lower case; anything but letters, digits, `.`, `_` and `-` becomes `-`."""
    return _UNSAFE.sub("-", text.lower()).strip("-._") or "model"


def strip_shard_suffix(stem: str) -> str:
    """`model-Q4_K_M-00001-of-00003` -> `model-Q4_K_M` (the name of a split file's whole set)."""
    return _SHARD.sub("", stem)


def strip_quant_suffix(raw: str) -> str:
    """`Qwen2.5-VL-7B-Instruct-AWQ` -> `Qwen2.5-VL-7B-Instruct`; `x-GGUF-q3_k_m` -> `x` (never to nothing)."""
    base = strip_shard_suffix(raw)
    while True:
        shorter = _TRAILING_QUANT.sub("", base)
        if shorter == base or not shorter.strip("-_."):
            return base
        base = shorter


def candidate_name(raw: str, quantization: str | None) -> str:
    base = slug(strip_quant_suffix(raw))
    return f"{base}_({quantization.upper()})" if quantization else base


def display_name(raw: str, quantization: str | None) -> str:
    base = strip_quant_suffix(raw)
    return f"{base} ({quantization.upper()})" if quantization else base


def suffixed(name: str, key: str) -> str:
    """A deterministic variant of `name` for a clash: a short hash of the model's identity (its path)."""
    return f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def assign_names(candidates: Mapping[str, str], kept: Mapping[str, str], taken: Iterable[str]) -> dict[str, str]:
    """Names for models keyed by identity: `kept` names stay; new models get their candidate if free.

    Several new models wanting one free candidate: the first identity (sorted) gets it, the rest a hash suffix, so
    the outcome depends only on the files found, not on the order they were found in.
    """
    names = dict(kept)
    used = set(taken) | set(kept.values())
    wanting: dict[str, list[str]] = {}
    for key in sorted(candidates):
        if key not in names:
            wanting.setdefault(candidates[key], []).append(key)
    for candidate in sorted(wanting):
        for index, key in enumerate(wanting[candidate]):
            name = candidate if index == 0 and candidate not in used else suffixed(candidate, key)
            used.add(name)
            names[key] = name
    return names
