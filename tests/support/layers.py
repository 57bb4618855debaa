"""Builders for registry folders in temp dirs: hand-made layers and copies of the upstream corpus."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from modelreg.store import CURATED_FILE, DISCOVERED_FILE, SNAPSHOT_FILE

UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "upstream-registry"


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
