"""A loopback HTTP server speaking the Hugging Face Hub protocol of huggingface_hub 2.x, with fault injection.

What the real client requests, and what this server answers (read from huggingface_hub's hf_api.py,
file_download.py and utils/_http.py):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``?blobs=True`` adds sizes and LFS data to
  ``siblings``): the model info JSON (``id``, ``sha``, ``gated``, ``siblings``, ``config`` with ``tokenizer_config``,
  ``gguf``, ``safetensors`` as the Hub fills them).
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: pages of ``{"type", "oid", "size", "path",
  "lfs"}`` entries, paginated with a ``Link: <...>; rel="next"`` header like the Hub's cursor pagination.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: a git-stored file answers 200 with ``ETag`` (its git blob id),
  ``X-Repo-Commit`` and ``Content-Length``; an LFS file answers 302 to the CDN (a second loopback port, so the client
  treats it as another host, as it does for the real CDN) with ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``.
  Range requests answer 206 with ``Content-Range``, which is how the client resumes a cut download.
- Errors carry ``X-Error-Code`` as the Hub sends them: ``RepoNotFound`` (401 without a token, 404 with one),
  ``RevisionNotFound`` and ``EntryNotFound`` (404), ``GatedRepo`` (401 anonymous, 403 with a token not granted).

Faults: ``cut(path, after_bytes)`` closes the connection mid-body, ``hold(path, after_bytes)`` pauses the body until
released, ``fail(path, status)`` answers an error status; each applies to the next ``times`` downloads of the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".model")
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
GGUF_INFO_KEYS = {"general.architecture": "architecture", "tokenizer.chat_template": "chat_template"}


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it in ``oid`` and ``ETag``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return LFS_POINTER.format(sha256=self.sha256, size=len(self.data)).encode()

    @property
    def blob_id(self) -> str:
        return git_blob_id(self.pointer if self.lfs else self.data)

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": len(self.data), "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return entry


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    commit: str
    branches: dict[str, str]
    gated: str | bool = False
    granted_tokens: set[str] = field(default_factory=set)
    extra_info: dict = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return self.commit if revision == self.commit else None


@dataclass
class Fault:
    path: str
    kind: str  # "cut" | "hold" | "fail"
    after_bytes: int = 0
    status: int = 500
    times: int = 1
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    port: int


class FakeHub:
    """Two loopback servers (the Hub and its CDN) sharing one set of repos, faults and a request log."""

    def __init__(self, page_size: int = 1000):
        self.repos: dict[str, HubRepo] = {}
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        self.bytes_served: dict[str, int] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # --- repos -------------------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        gated: str | bool = False,
        granted_tokens: set[str] | None = None,
        lfs_paths: set[str] | None = None,
        extra_info: dict | None = None,
    ) -> HubRepo:
        """Serve ``files`` (repo path -> bytes) as ``repo_id``; weights go to LFS like a Hub ``.gitattributes``."""
        hub_files = {
            path: HubFile(path, data, lfs=(path in lfs_paths) if lfs_paths is not None else path.endswith(LFS_SUFFIXES))
            for path, data in files.items()
        }
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(hub_files):
            digest.update(path.encode() + b"\0" + hub_files[path].blob_id.encode())
        commit = digest.hexdigest()
        repo = HubRepo(
            repo_id, hub_files, commit, {branch: commit}, gated, set(granted_tokens or ()), dict(extra_info or {})
        )
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    # --- faults ------------------------------------------------------------------------------------------------

    def cut(self, path: str, after_bytes: int, times: int = 1) -> Fault:
        """Close the connection after ``after_bytes`` body bytes of the next ``times`` downloads of ``path``."""
        return self._add_fault(Fault(path, "cut", after_bytes=after_bytes, times=times))

    def hold(self, path: str, after_bytes: int, times: int = 1) -> Fault:
        """Pause the next download of ``path`` after ``after_bytes``; ``fault.reached`` is set when it pauses,
        setting ``fault.release`` lets it go on."""
        return self._add_fault(Fault(path, "hold", after_bytes=after_bytes, times=times))

    def fail(self, path: str, status: int = 500, times: int = 1) -> Fault:
        """Answer the next ``times`` downloads (GET) of ``path`` with ``status``."""
        return self._add_fault(Fault(path, "fail", status=status, times=times))

    def _add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path == path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def release_all(self) -> None:
        with self._lock:
            for fault in self._faults:
                fault.release.set()

    # --- log ---------------------------------------------------------------------------------------------------

    def downloads_of(self, path: str) -> list[RecordedRequest]:
        """The GET requests that fetched the body of ``path`` (resolve or CDN)."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.headers.get("x-file-path") == path]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _count_bytes(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_served[path] = self.bytes_served.get(path, 0) + n

    # --- servers -----------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> "FakeHub":
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self, role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), name=f"fake-hub-{role}", daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        self.release_all()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- answers -----------------------------------------------------------------------------------------------

    def model_info(self, repo: HubRepo, commit: str, blobs: bool) -> dict:
        siblings = []
        for hub_file in sorted(repo.files.values(), key=lambda f: f.path):
            sibling: dict = {"rfilename": hub_file.path}
            if blobs:
                sibling.update(size=len(hub_file.data), blobId=hub_file.blob_id)
                if hub_file.lfs:
                    sibling["lfs"] = {
                        "size": len(hub_file.data),
                        "sha256": hub_file.sha256,
                        "pointerSize": len(hub_file.pointer),
                    }
            siblings.append(sibling)
        info = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(f.data) for f in repo.files.values()),
        }
        config = _hub_config(repo)
        if config:
            info["config"] = config
        gguf = _hub_gguf_info(repo)
        if gguf:
            info["gguf"] = gguf
            info["library_name"] = "gguf"
        info.update(repo.extra_info)
        return info


def _json_file(repo: HubRepo, path: str) -> dict | None:
    hub_file = repo.files.get(path)
    if hub_file is None:
        return None
    try:
        value = json.loads(hub_file.data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _hub_config(repo: HubRepo) -> dict:
    """The ``config`` block of model info: a few config.json keys plus the tokenizer config, as the Hub builds it."""
    config: dict = {}
    model_config = _json_file(repo, "config.json")
    if model_config:
        for key in ("architectures", "model_type", "quantization_config"):
            if key in model_config:
                config[key] = model_config[key]
    tokenizer_config = _json_file(repo, "tokenizer_config.json")
    if tokenizer_config:
        config["tokenizer_config"] = {
            key: tokenizer_config[key]
            for key in ("bos_token", "eos_token", "pad_token", "unk_token", "chat_template")
            if key in tokenizer_config
        }
    return config


def _hub_gguf_info(repo: HubRepo) -> dict:
    """The ``gguf`` block of model info (architecture, chat template, total size) read from the first GGUF file."""
    gguf_files = sorted(path for path in repo.files if path.endswith(".gguf") and "mmproj" not in path.lower())
    if not gguf_files:
        return {}
    import tempfile

    import gguf

    info: dict = {"total": sum(len(repo.files[p].data) for p in gguf_files)}
    with tempfile.NamedTemporaryFile(suffix=".gguf") as handle:
        handle.write(repo.files[gguf_files[0]].data)
        handle.flush()
        try:
            reader = gguf.GGUFReader(handle.name)
        except Exception:  # a deliberately broken GGUF in a test repo: the Hub then omits the block too
            return {}
        for key, name in GGUF_INFO_KEYS.items():
            field_ = reader.fields.get(key)
            if field_ is not None:
                info[name] = bytes(field_.parts[field_.data[0]]).decode("utf-8", "replace")
        for key, field_ in reader.fields.items():
            if key.endswith(".context_length"):
                info["context_length"] = int(field_.parts[field_.data[0]][0])
    return info


def _handler_class(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        pass

    Handler.hub = hub
    Handler.role = role
    return Handler


RESOLVE_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
INFO_PATH = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
TREE_PATH = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$")
CDN_PATH = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<sha256>[0-9a-f]{64})$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub
    role: str

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        file_path = None
        if self.role == "cdn":
            match = CDN_PATH.match(path)
            if match:
                repo = self.hub.repos.get(unquote(match["repo"]))
                file_path = next(
                    (f.path for f in (repo.files.values() if repo else ()) if f.lfs and f.sha256 == match["sha256"]),
                    None,
                )
        else:
            match = RESOLVE_PATH.match(path)
            if match:
                file_path = unquote(match["path"])
        if file_path is not None:
            headers["x-file-path"] = file_path
        self.hub._record(RecordedRequest(method, path, query, headers, self.server.server_address[1]))
        try:
            if self.role == "cdn":
                self._cdn(method, path)
            elif path.startswith("/api/"):
                self._api(method, path, query)
            else:
                self._resolve(method, path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- helpers ---------------------------------------------------------------------------------------------

    def _token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, method: str = "GET") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value, headers: dict | None = None, method: str = "GET") -> None:
        body = json.dumps(value).encode()
        self._send(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, method)

    def _error(self, status: int, code: str | None, message: str, method: str, headers: dict | None = None) -> None:
        error_headers = {"X-Error-Message": message, **(headers or {})}
        if code:
            error_headers["X-Error-Code"] = code
        self._json(status, {"error": message}, error_headers, method)

    def _repo_or_error(self, repo_id: str, method: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            # Without a token the Hub answers 401 for a missing repo (it cannot tell it from a private one).
            status = 404 if self._token() else 401
            self._error(status, "RepoNotFound", "Repository not found", method)
        return repo

    def _commit_or_error(self, repo: HubRepo, rev: str, method: str) -> str | None:
        commit = repo.resolve(unquote(rev))
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}", method)
        return commit

    def _repo_commit_or_error(self, match: re.Match, method: str, default_rev: str | None = None
                              ) -> tuple[HubRepo, str] | None:
        """The repo and commit a matched path names, or None after answering the Hub's error."""
        repo = self._repo_or_error(unquote(match["repo"]), method)
        if repo is None:
            return None
        commit = self._commit_or_error(repo, match["rev"] or default_rev, method)
        return None if commit is None else (repo, commit)

    def _gate_or_error(self, repo: HubRepo, commit: str, method: str) -> bool:
        if not repo.gated or self._token() in repo.granted_tokens:
            return True
        if self._token() is None:
            message = (
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in."
            )
            self._error(401, "GatedRepo", message, method, {"X-Repo-Commit": commit})
        else:
            message = (
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo.repo_id} to ask for access."
            )
            self._error(403, "GatedRepo", message, method, {"X-Repo-Commit": commit})
        return False

    # --- API -------------------------------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: dict) -> None:
        match = TREE_PATH.match(path)
        if match:
            return self._tree(method, match, query)
        match = INFO_PATH.match(path)
        if match:
            found = self._repo_commit_or_error(match, method, default_rev="main")
            if found is None:
                return
            repo, commit = found
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            return self._json(200, self.hub.model_info(repo, commit, blobs), method=method)
        self._error(404, None, "Sorry, we can't find the page you are looking for.", method)

    def _tree(self, method: str, match: re.Match, query: dict) -> None:
        found = self._repo_commit_or_error(match, method)
        if found is None:
            return
        repo, commit = found
        base = unquote(match["path"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = _tree_entries(repo, base, recursive)
        if base and not entries:
            return self._error(404, "EntryNotFound", f"{base} does not exist on {commit}", method)
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor : cursor + self.hub.page_size]
        headers = {}
        if cursor + self.hub.page_size < len(entries):
            next_query = f"recursive={str(recursive).lower()}&expand=false&cursor={cursor + self.hub.page_size}"
            headers["Link"] = f'<{self.hub.endpoint}{urlsplit(self.path).path}?{next_query}>; rel="next"'
        self._json(200, page, headers, method)

    # --- files -----------------------------------------------------------------------------------------------

    def _resolve(self, method: str, path: str) -> None:
        match = RESOLVE_PATH.match(path)
        if not match:
            return self._error(404, None, "Sorry, we can't find the page you are looking for.", method)
        found = self._repo_commit_or_error(match, method)
        if found is None:
            return
        repo, commit = found
        file_path = unquote(match["path"])
        hub_file = repo.files.get(file_path)
        if hub_file is None:
            return self._error(404, "EntryNotFound", "Entry not found", method, {"X-Repo-Commit": commit})
        if not self._gate_or_error(repo, commit, method):
            return
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if hub_file.lfs:
            location = f"{self.hub.cdn}/cdn/{quote(repo.repo_id)}/{hub_file.sha256}"
            headers.update(
                {
                    "ETag": f'"{hub_file.blob_id}"',
                    "X-Linked-Etag": f'"{hub_file.sha256}"',
                    "X-Linked-Size": len(hub_file.data),
                    "Location": location,
                }
            )
            return self._send(302, b"", headers, method)
        headers["ETag"] = f'"{hub_file.blob_id}"'
        self._body(method, hub_file, headers)

    def _cdn(self, method: str, path: str) -> None:
        match = CDN_PATH.match(path)
        repo = self.hub.repos.get(unquote(match["repo"])) if match else None
        hub_file = None
        if repo is not None:
            hub_file = next((f for f in repo.files.values() if f.lfs and f.sha256 == match["sha256"]), None)
        if hub_file is None:
            return self._send(404, b"NoSuchKey", {"Content-Type": "text/plain"}, method)
        self._body(method, hub_file, {"ETag": f'"{hub_file.sha256}"', "Accept-Ranges": "bytes"})

    def _body(self, method: str, hub_file: HubFile, headers: dict) -> None:
        data = hub_file.data
        start, end, status = 0, len(data) - 1, 200
        range_header = self.headers.get("Range")
        if range_header:
            match = RANGE.match(range_header.strip())
            if match and (match[1] or match[2]):
                if match[1]:
                    start = int(match[1])
                    end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
                else:
                    start = max(len(data) - int(match[2]), 0)
                if start >= len(data):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, method)
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
        body = data[start : end + 1]
        fault = self.hub._take_fault(hub_file.path) if method == "GET" else None
        if fault is not None and fault.kind == "fail":
            return self._error(fault.status, None, "Internal Error", method)
        self.send_response(status)
        for key, value in {"Content-Type": "application/octet-stream", **headers}.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "HEAD":
            return
        if fault is None:
            self.wfile.write(body)
            self.hub._count_bytes(hub_file.path, len(body))
            return
        head = body[: fault.after_bytes]
        self.wfile.write(head)
        self.wfile.flush()
        self.hub._count_bytes(hub_file.path, len(head))
        if fault.kind == "cut":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        fault.reached.set()
        while not fault.release.wait(0.05):
            pass
        try:
            self.wfile.write(body[fault.after_bytes :])
            self.hub._count_bytes(hub_file.path, len(body) - len(head))
        except OSError:
            self.close_connection = True


def _tree_entries(repo: HubRepo, base: str, recursive: bool) -> list[dict]:
    """Files and folders under ``base`` (direct children unless recursive), folders before files, as the Hub."""
    prefix = f"{base}/" if base else ""
    folders: dict[str, None] = {}
    files = []
    for path in sorted(repo.files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            if depth > 1 and not recursive:
                break
            folders[prefix + "/".join(parts[:depth])] = None
        if recursive or len(parts) == 1:
            files.append(repo.files[path].tree_entry())
    folder_entries = [
        {"type": "directory", "oid": git_blob_id(folder.encode()), "size": 0, "path": folder} for folder in folders
    ]
    return folder_entries + files


def point_client_at(hub: FakeHub, monkeypatch, home) -> None:
    """Point the real huggingface_hub client at ``hub`` with an empty HF home (no token, no cache) under ``home``.

    ``HF_ENDPOINT`` reaches child processes; huggingface_hub reads it into ``constants.ENDPOINT`` (and the URL
    template) at import time, so this process's constants are patched too, as are the import-time token and cache
    paths. Every library call reads these constants when it runs.
    """
    from huggingface_hub import constants

    home = str(home)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", home)
    monkeypatch.setenv("HF_HUB_CACHE", f"{home}/hub")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", f"{home}/hub")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", f"{home}/token")
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", f"{home}/stored_tokens")


TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "vocab_size": 259,
    "torch_dtype": "float16",
    "bos_token_id": 1,
    "eos_token_id": 2,
}
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if tools %}{{ tools | tojson }}{% endif %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def tiny_safetensors_files(shards: int = 1) -> dict[str, bytes]:
    """A tiny Llama repo as the Hub holds it: configs, tokenizer config with a chat template, real safetensors."""
    import numpy as np
    from safetensors.numpy import save

    config = TINY_LLAMA_CONFIG
    rng = np.random.default_rng(0)
    hidden, ff, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    tensors = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden)}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}"
        tensors.update(
            {
                f"{prefix}.self_attn.q_proj.weight": (hidden, hidden),
                f"{prefix}.self_attn.k_proj.weight": (kv, hidden),
                f"{prefix}.self_attn.v_proj.weight": (kv, hidden),
                f"{prefix}.self_attn.o_proj.weight": (hidden, hidden),
                f"{prefix}.mlp.gate_proj.weight": (ff, hidden),
                f"{prefix}.mlp.up_proj.weight": (ff, hidden),
                f"{prefix}.mlp.down_proj.weight": (hidden, ff),
            }
        )
    names = sorted(tensors)
    files: dict[str, bytes] = {
        "config.json": json.dumps(config, indent=2).encode(),
        "generation_config.json": json.dumps({"bos_token_id": 1, "eos_token_id": 2}).encode(),
        "tokenizer_config.json": json.dumps(
            {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": TINY_CHAT_TEMPLATE}
        ).encode(),
        "special_tokens_map.json": json.dumps({"bos_token": "<s>", "eos_token": "</s>"}).encode(),
        "README.md": b"---\nlicense: apache-2.0\n---\n# tiny llama\n",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }

    def arrays(subset):
        return {name: rng.standard_normal(tensors[name]).astype(np.float16) for name in subset}

    if shards == 1:
        files["model.safetensors"] = save(arrays(names), metadata={"format": "pt"})
        return files
    weight_map = {}
    for index in range(shards):
        subset = names[index::shards]
        shard = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        files[shard] = save(arrays(subset), metadata={"format": "pt"})
        weight_map.update({name: shard for name in subset})
    total = sum(len(files[f"model-{i + 1:05d}-of-{shards:05d}.safetensors"]) for i in range(shards))
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2
    ).encode()
    return files
