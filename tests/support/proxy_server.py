"""The proxy in the test's own process on a free loopback port (uvicorn in a thread), and registries for it whose
models the vLLM stand-in serves."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import psutil
import uvicorn

from modelreg.proxy.app import Proxy, create_app
from modelreg.registry import Registry
from modelreg.store import atomic_write
from support import free_port
from support.layers import discovered_model, write_layers


class ProxyServer:
    """A Proxy on 127.0.0.1:<free port>, served by uvicorn in a thread."""

    def __init__(self, config_dir: Path, **options):
        self.registry = Registry(config_dir)
        self.proxy = Proxy(self.registry, **options)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(self.proxy), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def __enter__(self) -> "ProxyServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "proxy did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.http.close()

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.proxy.admin_token}"}
        return self.http.request(method, path, headers=headers, **kwargs)

    def status(self) -> dict:
        reply = self.admin("GET", "/admin/status")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def backend(self, name: str) -> dict | None:
        return next((b for b in self.status()["backends"] if b["name"] == name), None)

    def chat(self, model: str, **extra) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra})

    def on_loop(self, coro):
        """Run a coroutine on the proxy's own event loop (to hold a request in flight without HTTP)."""
        return asyncio.run_coroutine_threadsafe(coro, self.proxy.pool._loop).result(60)


def model(name: str, **config) -> dict:
    """A curated entry served by the vLLM stand-in on its own free port."""
    fields = {k: config.pop(k) for k in ("model_aliases", "roles", "role_priority", "deprecated") if k in config}
    return {"name": name, "backend": "vllm",
            "backend_config": {"port": free_port(), "extra_args": [], **config}, **fields}


def layers(folder: Path, *curated: dict) -> None:
    write_layers(folder, discovered=[discovered_model(e["name"], f"/models/{e['name']}") for e in curated],
                 curated=list(curated))


def recorded(tmp_path: Path) -> list[dict]:
    path = tmp_path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def set_settings(folder: Path, **values) -> None:
    """Merge `values` into the registry folder's settings.json (read by a proxy when it starts)."""
    path = folder / "settings.json"
    atomic_write(path, json.dumps({**json.loads(path.read_text()), **values}).encode())  # a watcher never sees it empty
