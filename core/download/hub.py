"""Hugging Face downloads: analyse a repo, fetch a variant with progress (resumable, cancellable) through a staging
folder, then register it; a partial download never reaches the registry."""
from __future__ import annotations

import errno
import fnmatch
import glob
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

from filelock import FileLock, Timeout

from modelreg.discovery.gguf_models import group_gguf_files
from modelreg.discovery.hf import MARKER_FILE, TEMPLATE_FILES, read_marker
from modelreg.discovery.naming import strip_shard_suffix
from modelreg.download.progress import DownloadError, DownloadProgress
from modelreg.download.register import DownloadResult, register_folder
from modelreg.errors import BadInput, RegistryError
from modelreg.registry import Registry
from modelreg.store import atomic_write
from modelreg.values import human_size

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".onnx_data", ".h5",
                   ".msgpack", ".tflite", ".ot", ".npz")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "spiece.model")
# The quantization a GGUF file name carries (llama.cpp's type names, unsloth's `UD-` dynamic prefix).
GGUF_QUANT = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:IQ[1-4]_(?:XXS|XS|S|M|NL)|Q[2-8]_K(?:_(?:XXL|XL|L|M|S))?|Q[4-8]_[01]|TQ[12]_0"
    r"|MXFP4(?:_MOE)?|BF16|F16|FP16|F32))(?![A-Za-z0-9])", re.IGNORECASE)
# Preferred default GGUF choice, best first: a good quality/size balance for a single consumer GPU.
GGUF_PREFERENCE = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "IQ4_XS", "Q4_0", "Q5_K_S", "Q6_K", "Q8_0")
REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
STAGING_DIR = ".modelreg-downloads"  # dot folder under the models root: scans skip it


# ---- repo analysis ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None = None


@dataclass
class Variant:
    """One download choice: a GGUF quantization (one file or a split set) or the full safetensors/pytorch set."""

    key: str
    format: str
    weight_files: list[str]
    files: list[str]  # weights plus the config, tokenizer and template files that come along
    size_bytes: int
    quantization: str | None = None
    chat_template: bool = False
    recommended: bool = False


@dataclass
class RepoAnalysis:
    """What a repo offers, read from the Hub API before anything is downloaded."""

    repo_id: str
    revision: str
    commit: str
    gated: str | bool
    files: list[RepoFile]
    variants: list[Variant]
    formats: list[str]
    has_config: bool
    has_tokenizer: bool
    chat_template_sources: list[str]
    unsafe_files: list[str]
    logged_in: bool

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def recommended(self) -> Variant | None:
        return next((v for v in self.variants if v.recommended), self.variants[0] if self.variants else None)

    def variant(self, key: str | None) -> Variant:
        """The variant named `key` (case-insensitive), or the recommended one for None."""
        if key is None:
            chosen = self.recommended
            if chosen is None:
                raise BadInput(f"{self.repo_id} holds no model weights (no .safetensors, .gguf or .bin files); "
                               "pick files with --include")
            return chosen
        for variant in self.variants:
            if variant.key.lower() == key.lower():
                return variant
        raise BadInput(f"{self.repo_id} has no variant {key!r}; choose one of: "
                       + ", ".join(v.key for v in self.variants))

    def login_hint(self) -> str | None:
        """What to do before downloading a gated repo without a token."""
        if not self.gated or self.logged_in:
            return None
        return gated_message(self.repo_id, anonymous=True)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_size"] = self.total_size
        data["login_hint"] = self.login_hint()
        return data


def gated_message(repo_id: str, anonymous: bool, endpoint: str | None = None) -> str:
    page = f"{(endpoint or 'https://huggingface.co').rstrip('/')}/{repo_id}"
    if anonymous:
        return (f"{repo_id} is a gated repo: accept its terms at {page}, then log in with huggingface_hub "
                "(`hf auth login`, or `python -c 'import huggingface_hub; huggingface_hub.login()'`, "
                "or set HF_TOKEN to a read token) and run the download again")
    return (f"{repo_id} is a gated repo and your Hugging Face token has no access yet: request access at {page}, "
            "wait for approval, then run the download again (check which token is used with `hf auth whoami`)")


def split_repo_id(repo_id: str) -> tuple[str, str]:
    """`org/name` -> (org, name); refuses anything that could name a folder outside `<root>/<org>/<name>`."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(REPO_PART.match(p) for p in parts) or any(".." in p or "--" in p for p in parts):
        raise BadInput(f"{repo_id!r} is not a Hugging Face repo id: use the form ORG/NAME (letters, digits, "
                       "'-', '_' and '.'; no '..' or '--'), e.g. Qwen/Qwen2.5-0.5B-Instruct")
    return parts[0], parts[1]


def unsafe_file_name(path: str) -> bool:
    """True for a repo file name that would land outside the download folder (absolute, `..`, drive, UNC)."""
    if not path or "\x00" in path or ".." in path.replace("\\", "/").split("/"):
        return True
    return any(p.drive or p.root for p in (PurePosixPath(path), *(PureWindowsPath(s) for s in path.split("/"))))


def is_weight(path: str) -> bool:
    return path.lower().endswith(WEIGHT_SUFFIXES)


def gguf_quantization(path: str) -> str | None:
    """`Llama-3.2-1B-Instruct-Q4_K_M.gguf` -> `Q4_K_M` (from the file name, else its folder)."""
    for part in reversed(PurePosixPath(path).parts):
        found = GGUF_QUANT.findall(part)
        if found:
            return found[-1].upper()
    return None


def _variants(files: dict[str, RepoFile], gguf_template: bool, support: list[str],
              template_in_support: bool) -> list[Variant]:
    def size_of(paths: list[str]) -> int:
        return sum(files[p].size for p in paths)

    variants: list[Variant] = []
    sets, _ = group_gguf_files([p for p in files if p.lower().endswith(".gguf")])
    keys = [gguf_quantization(s.parts[0]) or PurePosixPath(s.parts[0]).stem for s in sets]
    for gguf_set, key in zip(sets, keys, strict=True):
        if keys.count(key) > 1:
            key = strip_shard_suffix(PurePosixPath(gguf_set.parts[0]).stem)
        extra = [gguf_set.projector] if gguf_set.projector else []
        chosen = gguf_set.parts + extra + support
        variants.append(Variant(key, "gguf", gguf_set.parts + extra, chosen, size_of(chosen),
                                quantization=gguf_quantization(gguf_set.parts[0]), chat_template=gguf_template))
    safetensors = [p for p in files if p.endswith(".safetensors")]
    native = [p for p in safetensors if not PurePosixPath(p).name.startswith("consolidated")]
    for fmt, weights in (("safetensors", native or safetensors),
                         ("pytorch", [] if safetensors else [p for p in files if p.endswith(".bin")
                                                             and "training_args" not in p])):
        if weights:
            chosen = weights + support
            variants.append(Variant(fmt, fmt, weights, chosen, size_of(chosen), chat_template=template_in_support))
    ranked = sorted((v for v in variants if v.format == "gguf"),
                    key=lambda v: GGUF_PREFERENCE.index(v.quantization) if v.quantization in GGUF_PREFERENCE
                    else len(GGUF_PREFERENCE))
    default = next((v for v in variants if v.format != "gguf"), ranked[0] if ranked else None)
    if default is not None:
        default.recommended = True
    return variants


def analyse_hf_repo(repo_id: str, revision: str | None = None, *, token: str | bool | None = None,
                    endpoint: str | None = None) -> RepoAnalysis:
    """Read a repo's commit, files and sizes from the Hub API and group them into download choices."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.hf_api import RepoFile as HubRepoFile

    split_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo_id, revision, endpoint=endpoint):
        info = api.model_info(repo_id, revision=revision)
        listing = [f for f in api.list_repo_tree(repo_id, recursive=True, revision=info.sha)
                   if isinstance(f, HubRepoFile)]
    files = {f.path: RepoFile(f.path, int(f.size or 0), f.lfs.sha256 if f.lfs else None) for f in listing}
    names = {PurePosixPath(p).name for p in files}
    tokenizer_config = (info.config or {}).get("tokenizer_config") or {}
    template_sources = [p for p in files if PurePosixPath(p).name in TEMPLATE_FILES]
    if tokenizer_config.get("chat_template"):
        template_sources.append("tokenizer_config.json")
    gguf_template = bool((info.gguf or {}).get("chat_template"))
    if gguf_template:
        template_sources.append("gguf")
    support = sorted(p for p in files if not is_weight(p) and not unsafe_file_name(p))
    formats = sorted({suffix for p in files for suffix in (_format_of(p),) if suffix})
    return RepoAnalysis(
        repo_id=repo_id, revision=revision or "main", commit=info.sha or revision or "main", gated=info.gated or False,
        files=sorted(files.values(), key=lambda f: f.path),
        variants=_variants(files, gguf_template, support, any(s != "gguf" for s in template_sources)),
        formats=formats, has_config="config.json" in files,
        has_tokenizer=bool(names.intersection(TOKENIZER_FILES)), chat_template_sources=sorted(template_sources),
        unsafe_files=sorted(p for p in files if unsafe_file_name(p)),
        logged_in=bool(token) if token is not None else get_token() is not None)


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for suffix, fmt in ((".safetensors", "safetensors"), (".gguf", "gguf"), (".onnx", "onnx"),
                        (".bin", "pytorch"), (".pth", "pytorch"), (".pt", "pytorch"), (".h5", "tensorflow"),
                        (".msgpack", "flax")):
        if lower.endswith(suffix) and not lower.endswith("training_args.bin"):
            return fmt
    return None


def select_files(analysis: RepoAnalysis, variant: str | None = None,
                 include: list[str] | None = None) -> list[RepoFile]:
    """The files to fetch: a variant's, or the weight files matching `include` globs plus the support files."""
    by_path = {f.path: f for f in analysis.files}
    if include:
        matched = [p for p in by_path if any(fnmatch.fnmatch(p, g) for g in include)]
        if not matched:
            raise BadInput(f"no file of {analysis.repo_id} matches --include {' '.join(include)}; the repo has: "
                           + ", ".join(sorted(by_path)[:12]) + (" ..." if len(by_path) > 12 else ""))
        support = [p for p in by_path if not is_weight(p)]
        paths = sorted(set(matched) | set(support))
    else:
        paths = analysis.variant(variant).files
    return [by_path[p] for p in paths]


# ---- errors from huggingface_hub, as messages ----------------------------------------------------------------

@contextmanager
def hub_errors(repo_id: str, revision: str | None, folder: Path | None = None,
               endpoint: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub and network errors into DownloadError/BadInput messages that say what to do."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kept = (f"; the files finished so far are kept in {folder} and running the same download again resumes"
            if folder else "")
    try:
        yield
    except RegistryError:
        raise
    except GatedRepoError as exc:
        status = exc.response.status_code if exc.response is not None else 401
        raise DownloadError(gated_message(repo_id, anonymous=status == 401, endpoint=endpoint)) from exc
    except RevisionNotFoundError as exc:
        raise BadInput(f"{repo_id} has no revision {revision!r}: use a branch, tag or commit that exists "
                       "(default: main)") from exc
    except RepositoryNotFoundError as exc:
        raise BadInput(f"Hugging Face repo {repo_id!r} not found: check the id (ORG/NAME); if it is private, log "
                       "in with `hf auth login` (or set HF_TOKEN) and retry") from exc
    except RemoteEntryNotFoundError as exc:
        raise DownloadError(f"{repo_id}: a file listed by the Hub is missing on the server "
                            f"({exc.response.url if exc.response is not None else exc}){kept}") from exc
    except (httpx2.HTTPError, HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while downloading {repo_id}{kept}; free space and retry") from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DownloadError(f"download of {repo_id} stopped: network or server failure ({reason}){kept}") from exc


def _progress_bridge(progress: DownloadProgress) -> type:
    """A tqdm class for snapshot_download that draws nothing and feeds `progress` (bytes, files) and cancel."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Bridge(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:  # tqdm's own arguments
            self.bridge_name = kwargs.get("name")
            self.counts_files = kwargs.get("unit") in (None, "it")
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            progress.check_cancelled()
            if self.bridge_name == "huggingface_hub.snapshot_download":  # bytes written to disk, all files
                progress.add_bytes(int(n or 0))
            elif self.bridge_name is None and self.counts_files:  # files finished
                progress.update(files_done=progress.files_done + int(n or 0))
            return super().update(n)

    return Bridge


# ---- Hugging Face download ---------------------------------------------------------------------------------------

def model_folder(root: str | Path, repo_id: str) -> Path:
    """`<root>/<org>/<name>`, refused when it (or a symlink on the way) leads outside the root."""
    org, name = split_repo_id(repo_id)
    base = Path(root).expanduser().resolve()
    folder = (base / org / name).resolve()
    if not folder.is_relative_to(base) or folder == base:
        raise BadInput(f"{base / org / name} leads outside the models root {base} (a symlink?); "
                       "remove the link or choose another --to")
    return folder


def download_root(registry: Registry, root: str | Path | None) -> Path:
    if root:
        return Path(root).expanduser()
    if registry.settings.model_roots:
        return Path(registry.settings.model_roots[0]).expanduser()
    raise BadInput("no folder to download into: pass --to ROOT, or add a folder to `model_roots` in "
                   f"{registry.config_dir / 'settings.json'}")


def _complete_files(folder: Path, wanted: list[RepoFile], marker: dict[str, Any] | None = None) -> set[str]:
    """Files of `wanted` already complete in `folder` (size matches; with a marker, recorded at the same commit)."""
    done = set()
    recorded = (marker or {}).get("files")
    for f in wanted:
        path = folder / f.path
        if path.is_file() and path.stat().st_size == f.size and (recorded is None or recorded.get(f.path) == f.size):
            done.add(f.path)
    return done


def free_space(path: Path) -> int:
    """Free bytes on the file system that holds `path` (its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage("/").free


def check_free_space(path: Path, needed: int) -> None:
    free = free_space(path)
    if needed > free:
        raise DownloadError(f"not enough disk space for this download: it needs {human_size(needed)} but only "
                            f"{human_size(free)} is free at {path}; free space or choose another --to")


def download_hf(registry: Registry, repo_id: str, *, revision: str | None = None, variant: str | None = None,
                include: list[str] | None = None, root: str | Path | None = None,
                progress: DownloadProgress | None = None, analysis: RepoAnalysis | None = None,
                token: str | bool | None = None, endpoint: str | None = None,
                max_workers: int = 4) -> DownloadResult:
    """Fetch a repo variant into `<root>/<org>/<name>`, then scan, stub and rebuild.

    Files land in a staging folder under the root (`.modelreg-downloads/`, which scans skip) and move into the
    model folder only once every chosen file is complete, so a scan never sees half a model. Interrupted runs
    resume: finished files are kept and the client resumes a broken connection with a Range request.
    """
    progress = progress or DownloadProgress()
    progress.update(phase="analysing", message=f"reading {repo_id} from the Hub")
    if analysis is None or analysis.repo_id != repo_id or (revision and analysis.revision != revision):
        analysis = analyse_hf_repo(repo_id, revision, token=token, endpoint=endpoint)
    if analysis.unsafe_files:
        raise BadInput(f"refusing to download {repo_id}: its file list names paths that would be written outside "
                       f"the model folder ({', '.join(analysis.unsafe_files[:3])}); nothing was downloaded")
    chosen = select_files(analysis, variant, include)
    base = download_root(registry, root)
    folder = model_folder(base, repo_id)
    org, name = split_repo_id(repo_id)
    staging = base.expanduser().resolve() / STAGING_DIR / org / name
    staging.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(staging) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DownloadError(f"{repo_id} is already being downloaded into {folder} by another process; wait for it "
                            "or cancel it") from None
    try:
        marker = read_marker(folder)
        in_place = _complete_files(folder, chosen, marker) if marker.get("commit") == analysis.commit else set()
        to_fetch = [f for f in chosen if f.path not in in_place]
        staged = _complete_files(staging, to_fetch)
        needed = sum(f.size for f in to_fetch if f.path not in staged)
        progress.update(phase="downloading", bytes_total=sum(f.size for f in to_fetch),
                        bytes_done=sum(f.size for f in to_fetch if f.path in staged),
                        files_total=len(to_fetch), files_done=len(staged),
                        message=f"{len(to_fetch)} file(s), {human_size(needed)} to fetch into {folder}")
        check_free_space(staging, needed)
        if to_fetch:
            progress.check_cancelled()
            _fetch(analysis, to_fetch, staging, progress, token, endpoint, max_workers)
            progress.update(phase="verifying", message="checking every file is complete")
            missing = [f.path for f in to_fetch if f.path not in _complete_files(staging, to_fetch)]
            if missing:
                raise DownloadError(f"download of {repo_id} is incomplete ({', '.join(missing[:3])} missing or "
                                    f"short); the finished files are kept in {staging}; run the same download "
                                    "again to resume")
            _move_into_place(staging, folder, to_fetch)
        _write_marker(folder, analysis, chosen, marker)
    finally:
        lock.release()
        Path(lock.lock_file).unlink(missing_ok=True)
    _remove_empty(staging, base.expanduser().resolve() / STAGING_DIR)
    notes = []
    roots = [Path(r).expanduser().resolve() for r in registry.settings.model_roots]
    if not any(folder.is_relative_to(r) for r in roots):
        notes.append(f"{base} is not in model_roots of {registry.config_dir / 'settings.json'}: add it so that "
                     "`modelreg scan` keeps finding this model")
    result = DownloadResult("hf", repo_id, str(folder), [], [], {}, notes)
    progress.update(phase="registering", message=f"scanning {folder}")
    register_folder(registry, folder, result)
    progress.update(phase="done", message=f"{repo_id} is in {folder}")
    return result


def _fetch(analysis: RepoAnalysis, files: list[RepoFile], staging: Path, progress: DownloadProgress,
           token: str | bool | None, endpoint: str | None, max_workers: int) -> None:
    from huggingface_hub import snapshot_download

    patterns = [glob.escape(f.path) for f in files]
    with hub_errors(analysis.repo_id, analysis.revision, folder=staging, endpoint=endpoint):
        snapshot_download(analysis.repo_id, revision=analysis.commit, local_dir=staging, allow_patterns=patterns,
                          tqdm_class=_progress_bridge(progress), token=token, endpoint=endpoint,
                          max_workers=max_workers)


def _move_into_place(staging: Path, folder: Path, files: list[RepoFile]) -> None:
    """Move the complete files from staging into the model folder (one rename when the folder is new)."""
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        staging.rename(folder)
        return
    for f in files:
        target = folder / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / f.path).replace(target)


def _write_marker(folder: Path, analysis: RepoAnalysis, chosen: list[RepoFile], old: dict[str, Any]) -> None:
    files = dict(old.get("files") or {}) if old.get("commit") == analysis.commit else {}
    files.update({f.path: f.size for f in chosen})
    marker = {"repo_id": analysis.repo_id, "revision": analysis.revision, "commit": analysis.commit,
              "files": dict(sorted(files.items())),
              "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(folder / MARKER_FILE, json.dumps(marker, indent=2).encode() + b"\n")


def _remove_empty(path: Path, stop: Path) -> None:
    """Remove the staging folder's empty folders, then its empty parents up to and including `stop`.

    Complete files of another variant left by an earlier, interrupted run stay for that run to resume."""
    shutil.rmtree(path / ".cache", ignore_errors=True)
    for folder, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:
            pass
    for parent in path.parents:
        if not parent.is_relative_to(stop):
            break
        try:
            parent.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break


