"""Ollama's store on disk (`manifests/<host>/<namespace>/<model>/<tag>`, `blobs/sha256-<hex>`), read from files."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from modelreg.discovery.facts import Found, Known, Problem, ScanError, fingerprint, found, model_entry, template_facts
from modelreg.discovery.gguf_models import gguf_facts, read_header
from modelreg.discovery.naming import slug, strip_quant_suffix

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
MEDIA = "application/vnd.ollama.image."
MODEL_PATH_PREFIX = "ollama:/"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # what Ollama writes; anything else could name a file outside blobs/


def is_store(path: Path) -> bool:
    return (path / "manifests").is_dir() and (path / "blobs").is_dir()


def model_name(host: str, namespace: str, model: str, tag: str) -> str:
    """The name Ollama shows: `llama3.1:latest`, `huihui_ai/gpt-oss-abliterated:20b`, `hf.co/org/repo:Q4_K_M`."""
    if host == DEFAULT_HOST:
        return f"{model}:{tag}" if namespace == DEFAULT_NAMESPACE else f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / digest.replace(":", "-")


def manifests(root: Path) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """(manifest file, model name) for every `<host>/<namespace>/<model>/<tag>` file, sorted."""
    found: list[tuple[Path, str]] = []
    problems: list[Problem] = []
    base = root / "manifests"
    for dirpath, dirnames, filenames in os.walk(base, onerror=lambda e: problems.append(
            Problem(e.filename, f"cannot list folder: {e.strerror}; skipped"))):
        dirnames.sort()
        parts = Path(dirpath).relative_to(base).parts
        for tag in sorted(filenames):
            if tag.startswith("."):
                continue
            if len(parts) != 3:
                problems.append(Problem(os.path.join(dirpath, tag), "not at manifests/<host>/<namespace>/<model>/"
                                                                     "<tag>; skipped"))
                continue
            found.append((Path(dirpath) / tag, model_name(*parts, tag)))
    return found, problems


def _read_json(path: Path, what: str, raw: bytes | None = None) -> Any:
    try:
        return json.loads(path.read_bytes() if raw is None else raw)
    except FileNotFoundError as exc:
        raise ScanError(path, f"{what} is missing from the store; run `ollama pull` for the model again") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScanError(path, f"{what} is not JSON ({exc}); run `ollama pull` for the model again") from exc
    except OSError as exc:
        raise ScanError(path, f"cannot read {what}: {exc.strerror or exc}") from exc


def _blob_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ScanError(path, "blob missing from the store; run `ollama pull` for the model again") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScanError(path, f"cannot read: {exc}") from exc


def read_manifest(root: Path, manifest: Path, name: str, known: Known | None = None) -> Found:
    """Facts of one Ollama model from its manifest, config blob, GGUF model blob and template layer.

    Blobs are content-addressed, so an unchanged manifest (and model blob) means an unchanged model.
    """
    try:
        raw = manifest.read_bytes()
    except OSError as exc:
        raise ScanError(manifest, f"cannot read manifest: {exc.strerror or exc}") from exc
    doc = _read_json(manifest, "manifest", raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise ScanError(manifest, "manifest has no `layers` list; run `ollama pull` for the model again")
    layers = {str(layer.get("mediaType", "")).removeprefix(MEDIA): layer for layer in doc["layers"]
              if isinstance(layer, dict)}
    if "model" not in layers:
        raise ScanError(manifest, "manifest lists no model layer (an adapter-only model is not supported)")
    config_ref = doc.get("config") or {}
    if not isinstance(config_ref, dict):
        raise ScanError(manifest, "manifest `config` is not an object; run `ollama pull` for the model again")
    for ref in [*layers.values(), *([config_ref] if "digest" in config_ref else [])]:
        if not isinstance(ref.get("digest"), str) or not DIGEST.fullmatch(ref["digest"]):
            raise ScanError(manifest, f"layer digest {ref.get('digest')!r} is not sha256:<64 hex digits>, so it "
                                      "names no blob of this store; skipped: run `ollama pull` for the model again")
        if ref.get("size") is not None and type(ref["size"]) is not int:
            raise ScanError(manifest, f"layer size {ref.get('size')!r} is not a whole number; skipped: run "
                                      "`ollama pull` for the model again")
    config = _read_json(blob_path(root, config_ref["digest"]), "config blob") if config_ref.get("digest") else {}
    model_blob = blob_path(root, layers["model"]["digest"])
    try:
        blob_size = model_blob.stat().st_size
    except FileNotFoundError as exc:
        raise ScanError(model_blob, "model blob missing from the store; run `ollama pull` for the model again") from exc
    model_path = MODEL_PATH_PREFIX + name
    print_ = fingerprint([("manifest", hashlib.sha1(raw).hexdigest()), ("model", blob_size)])
    earlier = known.get(model_path, print_) if known else None
    if earlier:
        return earlier
    header = read_header(model_blob)
    facts = gguf_facts(header, projector="projector" in layers)
    template = None
    template_caps: dict[str, bool] = {}
    if "template" in layers:
        template_file = blob_path(root, layers["template"]["digest"])
        template, template_caps = template_facts(_blob_text(template_file),
                                                 {"file": str(template_file), "layer": "template"})
    elif facts["template"]:
        template, template_caps = facts["template"], {}
    params = _read_json(blob_path(root, layers["params"]["digest"]), "params blob") if "params" in layers else None
    capabilities = {**facts["capabilities"], **{k: v for k, v in template_caps.items() if v}}
    quantization = str(config.get("file_type") or facts["quantization"] or "").lower() or None
    files = [{"path": str(blob_path(root, layer["digest"]).relative_to(root)), "size": layer.get("size"),
              "sha256": layer["digest"].removeprefix("sha256:"), "media_type": kind}
             for kind, layer in sorted(layers.items())]
    size = sum(layer.get("size") or 0 for layer in layers.values())
    ollama_caps = (["embedding"] if capabilities.get("embedding") else ["completion"]) + [
        cap for cap in ("tools", "vision", "thinking") if capabilities.get(cap)]
    short = name.split("/", 1)[1] if name.startswith(("hf.co/", "huggingface.co/")) else name
    raw_name = strip_quant_suffix(short)
    scan = {
        "path": str(model_blob),
        **facts["scan"],
        "weights_bytes": sum(layers[k].get("size") or 0 for k in ("model", "projector") if k in layers),
        "projector": str(blob_path(root, layers["projector"]["digest"])) if "projector" in layers else None,
        "ollama": {"store": str(root), "manifest": str(manifest), "params": params},
    }
    entry = model_entry(
        model_path=model_path, fmt="ollama", size_bytes=size, files=files, model_type=facts["model_type"],
        architecture=facts["architecture"], capabilities=capabilities, quantization=quantization,
        family=slug(raw_name), source_provider="ollama", scan=scan, template=template, served_model_id=name,
        extra_metadata={
            "ollama_family": config.get("model_family") or facts["model_type"],
            "ollama_families": config.get("model_families"),
            "ollama_parameter_size": config.get("model_type"),
            "ollama_context_length": facts["architecture"].get("context_length"),
            "ollama_embedding_length": facts["architecture"].get("hidden_size"),
            "ollama_capabilities": ollama_caps,
        })
    return found(model_path, raw_name, quantization, entry, print_)


def store_models(root: Path, known: Known | None = None) -> tuple[list[Found], list[Problem]]:
    models: list[Found] = []
    listed, problems = manifests(root)
    for manifest, name in listed:
        try:
            models.append(read_manifest(root, manifest, name, known))
        except ScanError as exc:
            problems.append(Problem(exc.path, exc.message))
    return models, problems


def enrich_from_daemon(models: list[Found], host: str, timeout: float = 2.0) -> None:
    """Add what a running Ollama daemon's `show` reports: its capabilities, parameter count and parameters.

    The store's files already give the facts; where the daemon answers, its word on capabilities wins. No daemon,
    or a daemon serving another store, leaves the facts as the files gave them.
    """
    import httpx
    import ollama

    wanted = [m for m in models if m.format == "ollama"]
    client: ollama.Client | None = None
    for model in wanted:
        client = client or ollama.Client(host=host, timeout=timeout)
        try:
            shown = client.show(model.entry["served_model_id"])
        except ollama.ResponseError:
            continue
        except (ConnectionError, httpx.HTTPError):
            return
        meta = model.entry["metadata"]
        if shown.capabilities:
            meta["ollama_capabilities"] = list(shown.capabilities)
            for capability in ("vision", "tools", "thinking", "embedding"):
                model.entry["capabilities"][capability] = capability in shown.capabilities
        if shown.parameters:
            meta["ollama_parameters"] = shown.parameters
        count = (shown.modelinfo or {}).get("general.parameter_count")
        if isinstance(count, int):
            meta["architecture"]["parameters"] = count
            meta["architecture"]["params_billion"] = round(count / 1e9, 2)
