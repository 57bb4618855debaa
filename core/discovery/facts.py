"""What every reader returns: a found model (identity, raw name, entry body) or a problem with one path."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable

from modelreg.paths import remove_path
from modelreg.registry import config_paths
from modelreg.store import json_copy

# Part of every fingerprint: raise it when readers record new facts, so earlier scans are read again.
SCAN_VERSION = 1
_TOOLS = re.compile(r"\btools\b|\.Tools\b")
_THINKING = re.compile(r"enable_thinking|<think>|\.Think\b|reasoning_content")


@dataclass
class Found:
    """One model on disk. `key` is its identity across rescans (a path); `entry` holds everything but the name."""

    key: str
    raw_name: str
    quantization: str | None
    entry: dict[str, Any]

    @property
    def format(self) -> str:
        return self.entry["metadata"]["format"]


def found(key: str, raw_name: str, quantization: str | None, entry: dict[str, Any], fingerprint: str) -> Found:
    """A Found whose entry records its identity, name on disk and the fingerprint of the files it was read from."""
    entry["metadata"]["scan"].update(key=key, raw_name=raw_name, fingerprint=fingerprint)
    return Found(key, raw_name, quantization, entry)


def fingerprint(items: Iterable[tuple]) -> str:
    """A short digest of (path, size, mtime) tuples (or other identifying tuples) of the files a model was read from."""
    digest = hashlib.sha1(f"scan-v{SCAN_VERSION}".encode())
    for item in sorted(items):
        digest.update(repr(item).encode())
    return digest.hexdigest()[:16]


class Known:
    """Entries of an earlier scan by identity: a model whose files did not change is taken from here, not re-read."""

    def __init__(self, entries: Iterable[dict[str, Any]] = ()):
        self.by_key: dict[str, dict[str, Any]] = {}
        for entry in entries:
            scan = (entry.get("metadata") or {}).get("scan") or {}
            if scan.get("key") and scan.get("fingerprint") and scan.get("raw_name"):
                self.by_key[scan["key"]] = entry

    def get(self, key: str, files_fingerprint: str) -> Found | None:
        entry = self.by_key.get(key)
        if entry is None or entry["metadata"]["scan"]["fingerprint"] != files_fingerprint:
            return None
        body = facts_only(entry, "name", "display_name")
        return Found(key, body["metadata"]["scan"]["raw_name"], body.get("quantization"), body)


def facts_only(entry: dict[str, Any], *drop: str) -> dict[str, Any]:
    """A copy of a discovered entry without `missing`, the `drop` keys, and legacy configuration (which the
    discovered writer keeps by itself)."""
    facts = json_copy({k: v for k, v in entry.items() if k not in ("missing", *drop)})
    for path in config_paths(facts, include_empty=True):
        remove_path(facts, path)
    return facts


@dataclass(frozen=True)
class Problem:
    """A path the scan skipped, and why (what is wrong and what to do)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ScanError(Exception):
    """Raised by a reader for input it cannot use; the scan reports it as a Problem and goes on."""

    def __init__(self, path: Any, message: str):
        self.path, self.message = str(path), message
        super().__init__(f"{path}: {message}")


def template_facts(text: str, location: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """Where a chat template lives and its sha256 (the text itself is not copied), and what it supports."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return ({**location, "sha256": digest},
            {"tools": bool(_TOOLS.search(text)), "thinking": bool(_THINKING.search(text))})


def prune(value: Any) -> Any:
    """Drop None values and empty dicts recursively, so entries hold only what was found."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in pruned.items() if v != {}}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def model_entry(*, model_path: str, fmt: str, size_bytes: int, files: list[dict[str, Any]], model_type: str | None,
                architecture: dict[str, Any], capabilities: dict[str, bool], quantization: str | None,
                family: str, source_provider: str, scan: dict[str, Any], template: dict[str, Any] | None,
                source: dict[str, Any] | None = None, served_model_id: str | None = None,
                extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The discovered entry body every reader builds (facts and defaults only; never configuration)."""
    entry = prune({
        "backend_config": {"model_path": model_path},
        "capabilities": {"text": True, "vision": False, "tools": False, "embedding": False, "thinking": False,
                         **capabilities},
        "quantization": quantization,
        "family": family,
        "source_provider": source_provider,
        "served_model_id": served_model_id,
        "size_bytes": size_bytes,
        "artifacts": {"files": files},
        "source": source,
        "metadata": {
            "format": fmt,
            "model_type": model_type,
            "architecture": architecture,
            "scan": {**scan, "chat_template": template},
            **(extra_metadata or {}),
        },
    })
    if template:
        entry["chat_template"] = {"source": "embedded", "path": None, "sha256": template["sha256"]}
    return entry
