"""Real `modelreg proxy` and `modelreg gui` processes on free loopback ports, a GUI registry to serve, and the
Playwright steps the browser tests share."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Mapping

import httpx

from modelreg.proxy.token import TOKEN_FILE
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE, dumps
from support import free_port
from support.layers import discovered_model, write_layers
from support.tiny_gguf import write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs"
STANDIN_VLLM = Path(__file__).parent / "standin_vllm.py"
STORY_MODEL = "qwen2.5-vl-7b-instruct_(AWQ)"  # the demo's vLLM stub with no extra_args: the old system's story
CHROMIUM = Path("/usr/bin/chromium")  # Debian's Chromium (Playwright's own browser download needs the internet)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
SHOTS = REPO / "test-output" / "screenshots"  # every browser test's pictures, for a person to look at
DOCS_SHOTS = REPO / "docs" / "screenshots"  # the README's pictures, refreshed with MODELREG_UPDATE_SCREENSHOTS=1
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


class Served:
    """A command in its own process group, ready once `health_url` answers 200; stopped with its whole group."""

    def __init__(self, argv: list[str], health_url: str, log_path: Path, env: dict[str, str] | None = None,
                 timeout: float = 90.0, ready_line: str | None = None, cwd: Path = REPO):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(health_url, timeout=2).status_code == 200 and (
                        ready_line is None or ready_line in log_path.read_text(errors="replace")):
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[3:]} did not start; log:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self._log.close()


def modelreg(config_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args]


class ProxyProcess(Served):
    """`modelreg proxy` as its own process, as a user runs it, with a client for its routes and admin status.

    `host` is the address it binds; `wrap` runs it through another command (`ip netns exec NS` for a test host in
    a network namespace)."""

    def __init__(self, config_dir: Path, port: int, log_path: Path, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", wrap: tuple[str, ...] = ()):
        self.config_dir, self.port, self.url = config_dir, port, f"http://{host}:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=120)
        super().__init__([*wrap, *modelreg(config_dir, "proxy", "--host", host, "--port", str(port))],
                         f"{self.url}/health", log_path, env)
        self.token = (env or {}).get("MODELREG_ADMIN_TOKEN") or (config_dir / TOKEN_FILE).read_text().strip()

    def status(self) -> dict:
        reply = self.http.get("/admin/status", headers={"Authorization": f"Bearer {self.token}"})
        reply.raise_for_status()
        return reply.json()

    def backend(self, name: str) -> dict | None:
        return next((b for b in self.status()["backends"] if b["name"] == name), None)

    def stop(self) -> None:
        """SIGTERM to the proxy alone (it stops its own backends), then SIGKILL of its group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.http.close()
        self._log.close()


def app_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (this process's environment) for a proxy or GUI under test: without the admin token and the profile a
    developer's shell may set for their own modelreg, which would override the registry folder's."""
    return {k: v for k, v in (os.environ if base is None else base).items()
            if k not in ("MODELREG_ADMIN_TOKEN", "MODELREG_PROFILE")}


def start_proxy(config_dir: Path, port: int, log_dir: Path, env: dict[str, str] | None = None) -> ProxyProcess:
    return ProxyProcess(config_dir, port, log_dir / "proxy.log", env)


def start_gui(config_dir: Path, port: int, log_dir: Path, env: dict[str, str] | None = None,
              cwd: Path = REPO) -> Served:
    """`modelreg gui` started in `cwd`, ready once it says so (after its warm-up run of the app)."""
    return Served(modelreg(config_dir, "gui", "--port", str(port)), f"http://127.0.0.1:{port}/_stcore/health",
                  log_dir / "gui.log", env, ready_line="modelreg GUI ready", cwd=cwd)


def vllm_standin(folder: Path) -> Path:
    """A `vllm` executable that runs the vLLM stand-in (vLLM itself needs a GPU)."""
    exe = folder / "vllm"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_VLLM}" "$@"\n')
    exe.chmod(0o755)
    return exe


def gui_registry(folder: Path, proxy_port: int, extra_models: int = 0) -> Path:
    """A copy of the demo registry whose vLLM is the stand-in, with the proxy on `proxy_port`.

    The story model gets a free port; `extra_models` adds that many discovered+curated models (for the 2,000-model
    benchmark).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in (DISCOVERED_FILE, CURATED_FILE):
        shutil.copyfile(DEMO / name, folder / name)
    settings = json.loads((DEMO / "settings.json").read_text())
    settings.update({"proxy_url": f"http://127.0.0.1:{proxy_port}", "log_dir": str(folder / "logs"),
                     "stop_grace": 2, "model_roots": [],
                     "executables": {"vllm": str(vllm_standin(folder)), "llama.cpp": "llama-server",
                                     "llama-cpp-python": sys.executable}})
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    curated = json.loads((folder / CURATED_FILE).read_text())
    story = next(e for e in curated if e["name"] == STORY_MODEL)
    story["backend_config"]["port"] = free_port()
    if extra_models:
        discovered = json.loads((folder / DISCOVERED_FILE).read_text())
        template = next(e for e in discovered if e["name"] == STORY_MODEL)
        for index in range(extra_models):
            name = f"bench-model-{index:04d}_(AWQ)"
            discovered.append({**template, "name": name, "display_name": f"Bench model {index}"})
            curated.append({"name": name, "backend": "vllm",
                            "backend_config": {"port": 30000 + index, "extra_args": ["--max-model-len", "4096"]}})
        (folder / DISCOVERED_FILE).write_bytes(dumps(sorted(discovered, key=lambda e: e["name"])))
    (folder / CURATED_FILE).write_bytes(dumps(curated))
    Registry(folder).rebuild()
    return folder


# ---- Playwright steps ---------------------------------------------------------------------------------------------

def with_tiny_llama(folder: Path, model_dir: Path, name: str, curated: dict, llama_server: str) -> None:
    """Add the tiny GGUF (written to `model_dir`) to `folder`'s discovered layer as `name`, with `curated` as its
    curated entry and `llama_server` as llama.cpp's executable, and rebuild."""
    model_path = write_tiny_gguf(model_dir / "tiny-llama-F32.gguf")
    discovered = json.loads((folder / DISCOVERED_FILE).read_text())
    (folder / DISCOVERED_FILE).write_bytes(dumps(sorted(
        [*discovered, discovered_model(name, str(model_path), metadata={"format": "gguf"})], key=lambda e: e["name"])))
    (folder / CURATED_FILE).write_bytes(dumps([*json.loads((folder / CURATED_FILE).read_text()),
                                               {"name": name, **curated}]))
    settings = json.loads((folder / "settings.json").read_text())
    settings["executables"]["llama.cpp"] = llama_server
    (folder / "settings.json").write_text(json.dumps(settings))
    Registry(folder).rebuild()


def shown(markdown: str) -> str:
    """The text a reader sees in markdown a page wrote through `modelreg.gui.text.md` (escapes and the invisible
    joiners that keep URLs from becoming links removed), for tests that read the markdown source (AppTest)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


def browser_or_skip():
    """Playwright's sync API, or a loud skip when Debian's Chromium is not installed."""
    if not CHROMIUM.exists():
        import pytest

        message = ("NO BROWSER: /usr/bin/chromium is missing (make browser installs Debian's chromium); "
                   "the GUI browser tests were SKIPPED")
        warnings.warn(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright
    return sync_playwright


def settle(page, wait_for: str | None = None, timeout: float = 60_000) -> None:
    """Wait until the app's script run is over (and `wait_for`, a selector, is on the page)."""
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)
    if wait_for:
        page.wait_for_selector(wait_for, timeout=timeout)


def navigate(page, title: str) -> None:
    """Open a page from the sidebar by its title and wait for its heading."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    settle(page, f'h1:has-text("{title}")')


def screenshot(page, name: str, docs_name: str | None = None) -> Path:
    """test-output/screenshots/<name>.png; also docs/screenshots/<docs_name>.png with MODELREG_UPDATE_SCREENSHOTS=1."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs_name and os.environ.get("MODELREG_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / f"{docs_name}.png")
    return path


def proxy_over_one_standin(tmp_path, standin_vllm) -> tuple[Path, ProxyProcess]:
    """A registry with one vLLM model `m` (alias org/m) run by the stand-in, and a proxy started on it."""
    config_dir = tmp_path / "configs"
    write_layers(config_dir, curated=[{"name": "m", "backend": "vllm", "model_aliases": ["org/m"],
                                       "backend_config": {"port": free_port(), "model_path": "/models/m"}}])
    port = free_port()
    (config_dir / "settings.json").write_text(json.dumps({
        "executables": {"vllm": str(standin_vllm)}, "log_dir": str(tmp_path / "logs"), "stop_grace": 2,
        "proxy_url": f"http://127.0.0.1:{port}"}))
    return config_dir, ProxyProcess(config_dir, port, tmp_path / "proxy.log")
