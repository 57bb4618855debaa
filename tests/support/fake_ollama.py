"""A loopback server speaking Ollama's HTTP API (pull, show, tags, version) that writes Ollama's on-disk store.

A pull writes what a real ``ollama pull`` writes under the models dir: ``blobs/sha256-<hex>`` for the config and every
layer (through a ``-partial`` file renamed when complete) and the manifest at
``manifests/registry.ollama.ai/<namespace>/<model>/<tag>``. The stream is Ollama's NDJSON progress: ``pulling
manifest``, ``pulling <digest[7:19]>`` lines with ``digest``/``total``/``completed``, ``verifying sha256 digest``,
``writing manifest``, ``success``; an unknown name streams ``{"error": "pull model manifest: file does not exist"}``
as the daemon does. ``cut_pull_after(n)`` drops the connection after ``n`` progress lines (a daemon crash).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_HOST = "registry.ollama.ai"
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA_TYPES = {
    "model": "application/vnd.ollama.image.model",
    "projector": "application/vnd.ollama.image.projector",
    "template": "application/vnd.ollama.image.template",
    "system": "application/vnd.ollama.image.system",
    "params": "application/vnd.ollama.image.params",
    "license": "application/vnd.ollama.image.license",
}
GGUF_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K"}
PROGRESS_CHUNKS = 4


@dataclass(frozen=True)
class OllamaName:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, name: str) -> "OllamaName":
        """Ollama's name rules: ``[host/][namespace/]model[:tag]`` (default registry.ollama.ai/library, latest)."""
        base, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
        parts = base.split("/")
        host, namespace = DEFAULT_HOST, "library"
        if len(parts) == 3:
            host, namespace, model = parts
        elif len(parts) == 2:
            namespace, model = parts
        else:
            model = parts[0]
        return cls(host, namespace, model, tag or "latest")

    @property
    def short(self) -> str:
        """The name as ``ollama list`` shows it."""
        prefix = "" if (self.host, self.namespace) == (DEFAULT_HOST, "library") else f"{self.namespace}/"
        if self.host != DEFAULT_HOST:
            prefix = f"{self.host}/{prefix}"
        return f"{prefix}{self.model}:{self.tag}"

    def manifest_path(self, models_dir: Path) -> Path:
        return models_dir / "manifests" / self.host / self.namespace / self.model / self.tag


@dataclass
class RemoteModel:
    """A model the fake registry offers: its layers as bytes by kind, plus facts read from the GGUF."""

    name: OllamaName
    layers: dict[str, bytes]
    gguf_info: dict = field(default_factory=dict)


def _blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _gguf_info(data: bytes) -> dict:
    """Scalar GGUF metadata (what ``/api/show`` returns as ``model_info``), read with the gguf library."""
    import gguf

    info: dict = {}
    with tempfile.NamedTemporaryFile(suffix=".gguf") as handle:
        handle.write(data)
        handle.flush()
        reader = gguf.GGUFReader(handle.name)
        for key, value_field in reader.fields.items():
            if key.startswith("GGUF.") or len(value_field.data) != 1:
                continue
            kind = value_field.types[0] if value_field.types else None
            if kind == gguf.GGUFValueType.ARRAY:
                continue
            part = value_field.parts[value_field.data[0]]
            if kind == gguf.GGUFValueType.STRING:
                info[key] = bytes(part).decode("utf-8", "replace")
            else:
                info[key] = part.tolist()[0]
        info["general.parameter_count"] = sum(int(t.n_elements) for t in reader.tensors)
    return info


def _parameter_size(count: int) -> str:
    return f"{count / 1e9:.1f}B" if count >= 1e8 else f"{count / 1e6:.2f}M"


class FakeOllama:
    """An Ollama daemon on a loopback port whose pulls land in ``models_dir``."""

    def __init__(self, models_dir: Path, version: str = "0.6.2"):
        self.models_dir = Path(models_dir)
        self.version = version
        self.remote: dict[OllamaName, RemoteModel] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.cut_after_lines: int | None = None
        self.reply = "hello from ollama"
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add_model(
        self,
        name: str,
        gguf_data: bytes,
        *,
        template: str | None = None,
        params: dict | None = None,
        license_text: str | None = None,
        system: str | None = None,
        projector: bytes | None = None,
    ) -> RemoteModel:
        """Offer ``name`` for pulling, built like an Ollama library model from a GGUF file and its extras."""
        layers = {"model": gguf_data}
        if projector is not None:
            layers["projector"] = projector
        if template is not None:
            layers["template"] = template.encode()
        if system is not None:
            layers["system"] = system.encode()
        if params is not None:
            layers["params"] = json.dumps(params).encode()
        if license_text is not None:
            layers["license"] = license_text.encode()
        model = RemoteModel(OllamaName.parse(name), layers, _gguf_info(gguf_data))
        with self._lock:
            self.remote[model.name] = model
        return model

    def cut_pull_after(self, lines: int | None) -> None:
        """Drop the connection of the next pulls after ``lines`` progress lines (None: never)."""
        self.cut_after_lines = lines

    # --- store -------------------------------------------------------------------------------------------------

    def _config_blob(self, model: RemoteModel) -> bytes:
        info = model.gguf_info
        architecture = info.get("general.architecture", "")
        config = {
            "model_format": "gguf",
            "model_family": architecture,
            "model_families": [architecture],
            "model_type": _parameter_size(info.get("general.parameter_count", 0)),
            "file_type": GGUF_FILE_TYPES.get(info.get("general.file_type"), "unknown"),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_blob_digest(data) for data in model.layers.values()]},
        }
        return json.dumps(config, separators=(",", ":")).encode()

    def _manifest(self, model: RemoteModel) -> bytes:
        config = self._config_blob(model)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": _blob_digest(config), "size": len(config)},
            "layers": [
                {"mediaType": LAYER_MEDIA_TYPES[kind], "digest": _blob_digest(data), "size": len(data)}
                for kind, data in model.layers.items()
            ],
        }
        return json.dumps(manifest, separators=(",", ":")).encode()

    def blob_path(self, digest: str) -> Path:
        return self.models_dir / "blobs" / digest.replace(":", "-")

    def installed(self) -> dict[OllamaName, dict]:
        """Manifests present in the store, read from disk as the daemon does."""
        found = {}
        root = self.models_dir / "manifests"
        for path in sorted(root.glob("*/*/*/*")) if root.is_dir() else ():
            if path.is_file():
                host, namespace, model, tag = path.relative_to(root).parts
                found[OllamaName(host, namespace, model, tag)] = json.loads(path.read_bytes())
        return found

    def _local_model(self, name: OllamaName) -> RemoteModel | None:
        manifest = self.installed().get(name)
        if manifest is None:
            return None
        kinds = {media: kind for kind, media in LAYER_MEDIA_TYPES.items()}
        layers = {kinds[layer["mediaType"]]: self.blob_path(layer["digest"]).read_bytes()
                  for layer in manifest["layers"]}
        remote = self.remote.get(name)
        return RemoteModel(name, layers, remote.gguf_info if remote else _gguf_info(layers["model"]))

    # --- answers -----------------------------------------------------------------------------------------------

    def details(self, model: RemoteModel) -> dict:
        info = model.gguf_info
        architecture = info.get("general.architecture", "")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": architecture,
            "families": [architecture],
            "parameter_size": _parameter_size(info.get("general.parameter_count", 0)),
            "quantization_level": GGUF_FILE_TYPES.get(info.get("general.file_type"), "unknown"),
        }

    def show(self, model: RemoteModel) -> dict:
        template = model.layers.get("template", b"").decode()
        params = json.loads(model.layers["params"]) if "params" in model.layers else {}
        parameter_lines = []
        for key, value in params.items():
            for item in value if isinstance(value, list) else [value]:
                parameter_lines.append(f"{key:<30} {json.dumps(item) if isinstance(item, str) else item}")
        capabilities = ["completion"]
        if ".Tools" in template:
            capabilities.append("tools")
        if "projector" in model.layers:
            capabilities.append("vision")
        model_blob = self.blob_path(_blob_digest(model.layers["model"]))
        modelfile = f'# Modelfile generated by "ollama show"\nFROM {model_blob}\n'
        if template:
            modelfile += f'TEMPLATE """{template}"""\n'
        result = {
            "license": model.layers.get("license", b"").decode(),
            "modelfile": modelfile,
            "parameters": "\n".join(parameter_lines),
            "template": template,
            "details": self.details(model),
            "model_info": model.gguf_info,
            "capabilities": capabilities,
            "modified_at": datetime.now(timezone.utc).isoformat(),
        }
        if "system" in model.layers:
            result["system"] = model.layers["system"].decode()
        return result

    def answer(self, path: str, body: dict) -> dict:
        """A non-streamed /api/generate (an empty prompt loads or, with keep_alive 0, unloads) or /api/chat answer."""
        common = {"model": body["model"], "created_at": "2025-01-01T00:00:00Z", "done": True}
        if path == "/api/generate":
            return {**common, "response": "" if not body.get("prompt") else self.reply,
                    "done_reason": "unload" if body.get("keep_alive") == 0 else "load"}
        return {**common, "message": {"role": "assistant", "content": self.reply}, "done_reason": "stop"}

    def install(self, name: str, gguf_data: bytes) -> None:
        """Offer a model and pull it into the store at once (as `ollama pull` would have)."""
        model = self.add_model(name, gguf_data)
        for event in self.pull_events(model.name):
            assert "error" not in event, event

    def tags(self) -> dict:
        models = []
        for name, manifest in self.installed().items():
            model = self._local_model(name)
            manifest_bytes = name.manifest_path(self.models_dir).read_bytes()
            models.append(
                {
                    "name": name.short,
                    "model": name.short,
                    "modified_at": datetime.fromtimestamp(
                        name.manifest_path(self.models_dir).stat().st_mtime, timezone.utc
                    ).isoformat(),
                    "size": sum(layer["size"] for layer in manifest["layers"]),
                    "digest": hashlib.sha256(manifest_bytes).hexdigest(),
                    "details": self.details(model),
                }
            )
        return {"models": models}

    def pull_events(self, name: OllamaName):
        """Yield the progress lines of a pull while writing blobs and the manifest, as the daemon does."""
        yield {"status": "pulling manifest"}
        model = self.remote.get(name)
        if model is None:
            yield {"error": "pull model manifest: file does not exist"}
            return
        blobs = [*model.layers.values(), self._config_blob(model)]
        (self.models_dir / "blobs").mkdir(parents=True, exist_ok=True)
        for data in blobs:
            digest = _blob_digest(data)
            final = self.blob_path(digest)
            status = f"pulling {digest[7:19]}"
            if final.exists():
                yield {"status": status, "digest": digest, "total": len(data), "completed": len(data)}
                continue
            partial = final.with_name(final.name + "-partial")
            step = max(1, -(-len(data) // PROGRESS_CHUNKS))
            with partial.open("wb") as handle:
                for start in range(0, len(data), step):
                    handle.write(data[start : start + step])
                    handle.flush()
                    done = min(len(data), start + step)
                    yield {"status": status, "digest": digest, "total": len(data), "completed": done}
            partial.rename(final)
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        manifest_path = name.manifest_path(self.models_dir)
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = manifest_path.with_name(manifest_path.name + ".tmp")
        tmp.write_bytes(self._manifest(model))
        tmp.rename(manifest_path)
        yield {"status": "success"}

    # --- server ------------------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeOllama":
        handler = type("Handler", (_OllamaHandler,), {"daemon": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-ollama", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOllama":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


MODEL_NOT_FOUND = "model '{name}' not found"
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")


class _OllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    daemon: FakeOllama

    def log_message(self, format, *args):
        pass

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _json(self, status: int, value) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.daemon.requests.append(("GET", self.path, None))
        if self.path == "/api/version":
            return self._json(200, {"version": self.daemon.version})
        if self.path == "/api/tags":
            return self._json(200, self.daemon.tags())
        if self.path == "/":
            body = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        self._json(404, {"error": "404 page not found"})

    def do_HEAD(self):
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self._body() or {}
        self.daemon.requests.append(("POST", self.path, body))
        name = body.get("model") or body.get("name") or ""
        if self.path == "/api/show":
            model = self.daemon._local_model(OllamaName.parse(name)) if NAME_RULE.match(name) else None
            if model is None:
                return self._json(404, {"error": MODEL_NOT_FOUND.format(name=name)})
            return self._json(200, self.daemon.show(model))
        if self.path == "/api/pull":
            if not NAME_RULE.match(name):
                return self._json(400, {"error": "invalid model name"})
            return self._pull(OllamaName.parse(name), body.get("stream", True))
        if self.path in ("/api/generate", "/api/chat"):
            if not NAME_RULE.match(name) or self.daemon._local_model(OllamaName.parse(name)) is None:
                return self._json(404, {"error": MODEL_NOT_FOUND.format(name=name)})
            return self._json(200, self.daemon.answer(self.path, body))
        self._json(404, {"error": "404 page not found"})

    def _pull(self, name: OllamaName, stream: bool) -> None:
        events = self.daemon.pull_events(name)
        if not stream:
            last = {}
            for last in events:
                if "error" in last:
                    return self._json(500, last)
            return self._json(200, last)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        cut_after = self.daemon.cut_after_lines
        try:
            for count, event in enumerate(events):
                if cut_after is not None and count >= cut_after:
                    events.close()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            events.close()
            self.close_connection = True
