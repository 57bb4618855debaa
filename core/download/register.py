"""Registering a finished download: scan it into the discovered layer, stub it, say what is left to decide."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelreg.discovery import ollama_store
from modelreg.discovery.scan import ScanResult, default_roots, scan
from modelreg.fields import STUB_FIELDS
from modelreg.paths import get_path
from modelreg.registry import CONFIG_NEEDED, Registry


@dataclass
class DownloadResult:
    """A finished download: where it is and what the registry now holds for it."""

    source: str  # "hf" or "ollama"
    ref: str  # repo id or Ollama name
    folder: str
    names: list[str]
    stubbed: list[str]
    to_decide: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_decide(registry: Registry, name: str) -> list[str]:
    """What the user still has to decide for a model: stub fields left empty, suggested values to confirm."""
    entry = registry.entry(name)
    curated: dict[str, Any] = next((e for e in registry.curated_entries()
                                    if e["name"] == name and e.get("profile") is None), {})
    needed = bool(get_path(entry, CONFIG_NEEDED))
    items = []
    for path in STUB_FIELDS:
        value = get_path(entry, path)
        if value is None:
            items.append(f"{path}: not set")
        elif needed and get_path(curated, path) is not None:
            items.append(f"{path} = {json.dumps(value)} (suggested; confirm or change)")
    if needed:
        items.append(f"{CONFIG_NEEDED} is true until you save your configuration "
                     f"(`modelreg set {name} PATH VALUE`, or the GUI's editor)")
    return items


def register_folder(registry: Registry, folder: Path, result: DownloadResult) -> None:
    """Scan the downloaded folder into the discovered layer, stub new models with suggestions, rebuild."""
    _record_scan(registry, scan(registry, [folder]), result, f"no model found in {folder}")


def register_ollama(registry: Registry, name: str, result: DownloadResult) -> None:
    """Scan Ollama's store (OLLAMA_MODELS or ~/.ollama/models) and register the pulled model."""
    stores = [root for root in default_roots(registry.settings) if ollama_store.is_store(root)]
    if not stores:
        result.problems.append(f"{name} was pulled, but Ollama's store is not on this machine (no OLLAMA_MODELS, "
                               "no ~/.ollama/models): set OLLAMA_MODELS to the daemon's models folder and run "
                               "`modelreg scan`")
        return
    report = scan(registry, stores)
    result.folder = ", ".join(str(s) for s in stores)
    model_path = ollama_store.MODEL_PATH_PREFIX + name
    mine = [m for m in report.models if m["path"] == model_path]
    _record_scan(registry, report, result, f"{name} was pulled but is not in the store at {result.folder}: "
                                           "is OLLAMA_MODELS the daemon's models folder?", only=mine)


def _record_scan(registry: Registry, report: ScanResult, result: DownloadResult, nothing: str,
                 only: list[dict[str, Any]] | None = None) -> None:
    models = report.models if only is None else only
    result.names = [m["name"] for m in models]
    result.stubbed = [n for n in report.stubs if n in result.names]
    result.problems += [str(p) for p in report.problems]
    result.to_decide = {n: to_decide(registry, n) for n in result.names}
    if not result.names:
        result.problems.append(nothing)
