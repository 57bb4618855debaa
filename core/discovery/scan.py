"""`modelreg scan`: find models under roots, write their facts to the discovered layer, stub new ones, rebuild."""
from __future__ import annotations

import copy
import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from modelreg.discovery import gguf_reader, hf, ollama_store
from modelreg.discovery.facts import Found, Known, Problem, ScanError, facts_only
from modelreg.discovery.gguf_models import group_gguf_files, read_gguf_set
from modelreg.discovery.naming import assign_names, candidate_name, display_name
from modelreg.errors import BadInput
from modelreg.launch.advice.fit import estimate
from modelreg.launch.backends import LLAMA_CPP
from modelreg.launch.planning.plan import installed_gguf_backend
from modelreg.paths import get_path
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.store import file_stamp, registry_lock

BACKEND_FOR_FORMAT = {"safetensors": "vllm", "gguf": "llama.cpp", "ollama": "ollama"}
# Parts of an entry a scan computes whole; anything else an earlier entry holds is kept under the new facts.
REPLACED = frozenset({"artifacts", "capabilities", "metadata.architecture", "metadata.scan"})
CACHE_REPO_PREFIX = "models--"
_CACHE_SNAPSHOT = re.compile(r"(?P<repo>.*/models--(?P<id>[^/]+))/snapshots/(?P<rev>[^/]+)$")


@dataclass
class Discovery:
    """What a walk over the roots found, before anything is written."""

    models: list[Found] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    ollama_stores: list[str] = field(default_factory=list)


@dataclass
class ScanResult:
    models: list[dict[str, Any]]      # name, path, format, quantization, status (new, updated, unchanged, returned)
    missing: list[str]                # names newly marked missing (their files are gone)
    stubs: list[str]                  # curated stubs created
    problems: list[Problem]
    roots: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"roots": self.roots, "models": self.models, "missing": self.missing, "stubs": self.stubs,
                "problems": [{"path": p.path, "message": p.message} for p in self.problems]}


def default_roots(settings: Settings) -> list[Path]:
    """The settings' model roots, the Hugging Face cache and the Ollama store (those that exist)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(os.environ.get("HF_HOME") or "~/.cache/huggingface", "hub")
    ollama = os.environ.get("OLLAMA_MODELS") or "~/.ollama/models"
    roots = [Path(os.path.expanduser(p)) for p in [*settings.model_roots, hub, ollama]]
    return [r for i, r in enumerate(roots) if r.exists() and r not in roots[:i]]


def discover(roots: Iterable[str | os.PathLike], known: Known | None = None) -> Discovery:
    """Walk the roots and read every model found (headers only); corrupt inputs become problems.

    With `known` (the entries of an earlier scan), models whose files are unchanged are not read again.
    """
    gguf_reader.STEPPED_OVER.clear()  # each scan reads every vocabulary once, then steps over its copies
    walker = _Walker(known)
    for root in roots:
        walker.root(Path(os.path.abspath(os.path.expanduser(root))))
    walker.read_all()
    keys: set[str] = set()
    unique = []
    for model in walker.found.models:  # a model reached through two roots counts once
        if model.key not in keys:
            keys.add(model.key)
            unique.append(model)
    walker.found.models = unique
    return walker.found


def _cache_identity(folder: Path) -> tuple[str | None, dict[str, str] | None]:
    """For `.../models--org--name/snapshots/<rev>`: (repo folder, source); else (None, None)."""
    match = _CACHE_SNAPSHOT.match(folder.as_posix())
    if not match:
        return None, None
    return match["repo"], {"huggingface_id": match["id"].replace("--", "/"), "revision": match["rev"]}


class _Walker:
    """Walks the roots, then reads the models it found (headers only), several at a time: on a cold disk the reads
    wait on I/O, not on each other."""

    def __init__(self, known: Known | None):
        self.known = known
        self.found = Discovery()
        self.seen: set[tuple[int, int]] = set()
        self.reads: list[Callable[[], tuple[Any, list[Problem]]]] = []  # each gives (model or None, problems)

    def read_all(self) -> None:
        with ThreadPoolExecutor(_READERS) as pool:
            for model, problems in pool.map(lambda read: read(), self.reads):
                if model is not None:
                    self.found.models.append(model)
                self.found.problems += problems
        self.reads = []

    def problem(self, path: Any, message: str) -> None:
        self.found.problems.append(Problem(str(path), message))

    def root(self, path: Path) -> None:
        self.found.roots.append(str(path))
        if not path.exists():
            self.problem(path, "does not exist (a dangling symlink or a wrong path); skipped")
        elif path.is_dir():
            self.walk(path)
        elif path.suffix.lower() == ".gguf":
            self.gguf_folder(path.parent, [path.name])
        else:
            self.problem(path, "not a GGUF file or a folder; give a model folder, a .gguf file or a folder of them")

    def walk(self, root: Path) -> None:
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                stat = folder.stat()
                if (stat.st_dev, stat.st_ino) in self.seen:
                    continue
                self.seen.add((stat.st_dev, stat.st_ino))
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                self.problem(folder, f"cannot read folder: {exc.strerror or exc}; skipped")
                continue
            names, subdirs = [], []
            for entry in entries:
                try:
                    if entry.is_dir():
                        subdirs.append(entry)
                    elif entry.is_file():
                        names.append(entry.name)
                    elif entry.is_symlink():
                        self.problem(entry.path, "dangling symlink (its target is gone); skipped")
                except OSError as exc:
                    self.problem(entry.path, f"cannot read: {exc.strerror or exc}; skipped")
            if ollama_store.is_store(folder):
                self.found.ollama_stores.append(str(folder))
                models, problems = ollama_store.store_models(folder, self.known)
                self.found.models += models
                self.found.problems += problems
                continue
            if any(d.name.startswith(CACHE_REPO_PREFIX) for d in subdirs) and self.cache(folder):
                stack += [Path(d.path) for d in reversed(subdirs) if not d.name.startswith(".") and "--" not in d.name]
                continue
            if hf.is_model_folder(names):
                self.model_folder(folder)
                continue
            self.gguf_folder(folder, names)
            stack += [Path(d.path) for d in reversed(subdirs) if not d.name.startswith(".")]

    def model_folder(self, folder: Path, **cached: Any) -> None:
        repo, source = _cache_identity(folder)
        options = {"key": repo, "source": source, "raw_name": source["huggingface_id"].split("/")[-1]} \
            if repo and source else {}
        self.reads.append(lambda: _read(hf.read_model_folder, folder, known=self.known, **{**options, **cached}))

    def gguf_folder(self, folder: Path, names: list[str], stats: dict[str, tuple[int, Any]] | None = None,
                    source: dict[str, str] | None = None, key_base: Path | None = None) -> None:
        sets, problems = group_gguf_files(names)
        for name, message in problems:
            self.problem(folder / name, message)
        if not sets:
            return
        if stats is None:
            stats = {}
            for name in {n for s in sets for n in s.parts + ([s.projector] if s.projector else [])}:
                try:
                    stat = (folder / name).stat()
                    stats[name] = (stat.st_size, stat.st_mtime_ns)
                except OSError:
                    stats[name] = (0, None)
            repo, source = _cache_identity(folder)
            key_base = Path(repo) if repo else None
        for model in sets:
            self.reads.append(functools.partial(_read, read_gguf_set, folder, model, stats, source=source,
                                                key_base=key_base, known=self.known))

    def cache(self, cache_dir: Path) -> bool:
        """Read a Hugging Face cache through huggingface_hub's scanner; False if it cannot (walk it instead)."""
        problems: list[Problem] = []
        try:
            revisions = hf.cache_revisions(cache_dir, problems)
        except OSError as exc:
            self.problem(cache_dir, f"Hugging Face cache scanner failed ({exc.strerror or exc}); reading its folders "
                                    "one by one")
            return False
        self.found.problems += problems
        for repo, revision, listing in revisions:
            snapshot = Path(revision.snapshot_path)
            source = {"huggingface_id": repo.repo_id, "revision": revision.commit_hash}
            names = [f["path"] for f in listing.files]
            if hf.is_model_folder(names):
                self.model_folder(snapshot, listing=listing, key=str(repo.repo_path), source=source,
                                  raw_name=repo.repo_id.split("/")[-1])
            else:
                stats = {f["path"]: (f["size"], f.get("sha256")) for f in listing.files if "/" not in f["path"]}
                self.gguf_folder(snapshot, list(stats), stats, source=source, key_base=Path(repo.repo_path))
        return True


_READERS = 4


def _read(reader: Callable[..., tuple[Found, list[Problem]]], *args: Any, **options: Any,
          ) -> tuple[Found | None, list[Problem]]:
    try:
        return reader(*args, **options)
    except ScanError as exc:
        return None, [Problem(str(exc.path), exc.message)]


# ---- writing the registry ----------------------------------------------------------------------------------


def _identity(entry: dict[str, Any]) -> str | None:
    key = get_path(entry, "metadata.scan.key") or get_path(entry, "backend_config.model_path")
    if not isinstance(key, str) or not key:
        return None
    return key if key.startswith(ollama_store.MODEL_PATH_PREFIX) else os.path.abspath(os.path.expanduser(key))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _vanished(entry: dict[str, Any], found: Discovery) -> bool:
    """True when this scan can tell the entry's model is gone: its path is gone, or a scanned root holds the path
    but no model was found there (unreadable or corrupt right now, reported as a problem, is not gone)."""
    path = get_path(entry, "backend_config.model_path")
    if entry.get("missing") or not isinstance(path, str) or not path:
        return False
    if path.startswith(ollama_store.MODEL_PATH_PREFIX):
        store = get_path(entry, "metadata.scan.ollama.store")
        return bool(found.ollama_stores) and (store is None or store in found.ollama_stores)
    path = os.path.abspath(os.path.expanduser(path))
    if any(_within(path, p.path) or _within(p.path, path) for p in found.problems):
        return False
    return not os.path.exists(path) or any(_within(path, root) for root in found.roots)


def _carry_over(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The new facts over the old ones: facts other writers added (downloaded_at, performance, probes ...) stay.

    Objects merge key by key, except those the scan computes whole (REPLACED).
    """
    merged = copy.deepcopy(old)

    def overlay(target: dict[str, Any], source: dict[str, Any], prefix: str) -> None:
        for key, value in source.items():
            path = prefix + key
            if isinstance(value, dict) and isinstance(target.get(key), dict) and path not in REPLACED:
                overlay(target[key], value, path + ".")
            else:
                target[key] = copy.deepcopy(value)

    overlay(merged, new, "")
    return merged


def _keeps(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> bool:
    """Whether the new facts over the old entry (as _carry_over lays them) leave it as it is: the common rescan,
    told without copying either."""
    for key, value in new.items():
        current = old.get(key, _ABSENT)
        if current == value:
            continue
        path = prefix + key
        if type(value) is dict and type(current) is dict and path not in REPLACED:
            if not _keeps(current, value, path + "."):
                return False
        elif current != value:
            return False
    return True


_ABSENT = object()


def _free_ports(registry: Registry, entries: Iterable[dict[str, Any]]) -> Iterator[int]:
    used = {get_path(e, "backend_config.port") for e in entries}
    low, high = registry.settings.port_range
    return (port for port in range(low, high + 1) if port not in used)


def scan(registry: Registry, paths: Iterable[str | os.PathLike] | None = None, stubs: bool = True,
         dry_run: bool = False) -> ScanResult:
    """Scan `paths` (default: default_roots), write discovered facts, mark vanished models, stub new ones, rebuild.

    `dry_run`: write nothing; the result says what would be added, updated, marked missing and stubbed.

    The walk runs unlocked; naming and every write run under the registry lock, against the layers as they are
    then, so scans at once add to each other (a name another scan took gets a suffix) instead of replacing."""
    read_at = file_stamp(registry.discovered_path)
    existing = registry.discovered_entries()
    found = discover(list(paths or []) or default_roots(registry.settings), Known(existing))
    ollama_store.enrich_from_daemon(found.models, registry.settings.ollama_host)
    with registry_lock(registry.config_dir):
        recovered = registry.finish_pending_stubs() if stubs and not dry_run else []
        if file_stamp(registry.discovered_path) != read_at:  # another process wrote it meanwhile: read it again
            existing = registry.discovered_entries()
        curated = registry.curated_entries()
        owners: dict[str, str] = {}
        for entry in sorted(existing, key=lambda e: (get_path(e, "metadata.scan.key") is None, str(e.get("name")))):
            key = _identity(entry)
            if key is not None:
                owners.setdefault(key, entry["name"])
        keys = {m.key for m in found.models}
        names = assign_names(
            {m.key: candidate_name(m.raw_name, m.quantization) for m in found.models},
            {key: owners[key] for key in keys if key in owners},
            [e["name"] for e in existing] + [e["name"] for e in curated if isinstance(e.get("name"), str)])
        by_name = {e["name"]: e for e in existing}
        entries, report = [], []
        for model in sorted(found.models, key=lambda m: names[m.key]):
            name = names[model.key]
            new = {"name": name, "display_name": display_name(model.raw_name, model.quantization), **model.entry}
            old = by_name.get(name)
            if old is None:
                entry, status = new, "new"
            elif not old.get("missing") and _keeps(old, new):
                entry, status = old, "unchanged"
            else:
                facts = facts_only(old)
                entry = _carry_over(facts, new)
                status = "returned" if old.get("missing") else "unchanged" if entry == facts else "updated"
            entries.append(entry)
            report.append({"name": name, "path": entry["backend_config"]["model_path"], "format": model.format,
                           "quantization": model.quantization, "status": status})
        vanished = sorted(e["name"] for e in existing if _identity(e) not in keys and _vanished(e, found))
        if dry_run:
            would_stub = [e["name"] for e in entries if e["name"] not in by_name] if stubs else []
            return ScanResult(report, vanished, would_stub, found.problems, found.roots)
        fresh = [e for e in entries if e["name"] not in by_name]
        owed, notes = _stub_suggestions(registry, fresh, existing + curated) if stubs else ({}, [])
        found.problems.extend(notes)
        changed = [entry for entry, row in zip(entries, report) if row["status"] != "unchanged"]
        created = registry.record_discovery(changed, vanished, owed)
    return ScanResult(report, vanished, recovered + created, found.problems, found.roots)


def remove_model(registry: Registry, name: str, delete_files: bool = False, drop_curated: bool = False,
                 ) -> dict[str, Any]:
    """Forget one model's discovered entry; optionally delete its files (only when they lie under a model root) and
    its curated entries (base and every profile). Returns what was done."""
    import shutil

    entry = next((e for e in registry.discovered_entries() if e["name"] == name), None)
    plan = removal_plan(registry, name)
    if entry is None and not drop_curated:
        raise BadInput(f"{name!r} has no discovered entry; tick its curated entry to remove the model")
    if delete_files:
        if not plan["deletable"]:
            raise BadInput(f"will not delete {plan['path']!r}: {plan['why_not']}")
        path = Path(plan["path"])
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if entry is not None:
        registry.discovered_writer().remove([name], rebuild=not drop_curated)
    if drop_curated:
        registry.remove_curated(name)
    return {"name": name, "forgot": entry is not None, "deleted": plan["path"] if delete_files else None,
            "curated_removed": drop_curated}


def removal_plan(registry: Registry, name: str) -> dict[str, Any]:
    """What removing a model would touch: its path and size on disk, and whether its files may be deleted (only a
    file or folder strictly inside a `model_roots` folder, never a root itself or anything outside)."""
    entry = next((e for e in registry.discovered_entries() if e["name"] == name), None)
    path = get_path(entry or {}, "backend_config.model_path")
    curated = [e for e in registry.curated_entries() if e.get("name") == name]
    plan: dict[str, Any] = {"name": name, "discovered": entry is not None, "curated_entries": len(curated),
                            "path": path, "size_bytes": None, "deletable": False, "why_not": None}
    if not isinstance(path, str) or path.startswith(ollama_store.MODEL_PATH_PREFIX):
        plan["why_not"] = "its files are not a path on disk (Ollama models are removed with `ollama rm`)"
        return plan
    real = os.path.realpath(os.path.expanduser(path))
    roots = [os.path.realpath(os.path.expanduser(r)) for r in registry.settings.model_roots]
    if not os.path.exists(real):
        plan["why_not"] = "its files are already gone"
    elif not any(real != root and _within(real, root) for root in roots):
        plan["why_not"] = "it is not inside one of the model_roots folders"
    else:
        plan["deletable"] = True
        plan["path"] = real
        files = [real] if os.path.isfile(real) else [os.path.join(d, f) for d, _, fs in os.walk(real) for f in fs]
        plan["size_bytes"] = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    return plan


def forget(registry: Registry, names: Iterable[str]) -> list[str]:
    """Remove discovered entries marked missing (their curated entries, if any, stay); returns the names removed."""
    entries = {e["name"]: e for e in registry.discovered_entries()}
    names = list(names)
    for name in names:
        if name not in entries:
            raise BadInput(f"{name!r} is not in the discovered layer; `modelreg list` shows the models")
        if not entries[name].get("missing"):
            raise BadInput(f"{name!r} is not marked missing (its files were found by the last scan); delete the "
                           "files and run `modelreg scan` first")
    registry.discovered_writer().remove(names)
    return names


def _stub_suggestions(registry: Registry, new: list[dict[str, Any]], others: list[dict[str, Any]],
                      ) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Backend from format (for GGUF, one that is installed), a port no entry uses, and `--max-model-len` when the
    native context does not fit; and a note per GGUF model when no GGUF backend is installed.

    New models never have a curated entry: their names avoid every name either layer holds.
    """
    ports = _free_ports(registry, others)
    settings = registry.settings
    stubs: dict[str, dict[str, Any]] = {}
    notes: list[Problem] = []
    gguf_backend = None
    for entry in new:
        backend = BACKEND_FOR_FORMAT[entry["metadata"]["format"]]
        if backend == LLAMA_CPP:
            if gguf_backend is None:
                gguf_backend, note = installed_gguf_backend(settings)
            backend = gguf_backend
            if note:
                notes.append(Problem(entry["backend_config"]["model_path"], note))
        suggestions: dict[str, Any] = {"backend": backend}
        if backend != "ollama":
            suggestions["backend_config.port"] = next(ports, None)
        if backend == "vllm":
            fit = estimate({**entry, "backend": backend}, settings.gpu_memory, settings.gpu_memory_utilization)
            if fit.get("suggested_args"):
                suggestions["backend_config.extra_args"] = fit["suggested_args"]
        stubs[entry["name"]] = {p: v for p, v in suggestions.items() if v is not None}
    return stubs, notes
