"""The seed's story end to end against the real vLLM (CPU build, `make backends`), in Debian's Chromium.

1. A scan of the tiny Llama folder gives a curated stub with backend vllm.
2. In the GUI editor, extra_args refused where vLLM would fail (a misspelled flag with its correction, a flag the
   launcher owns: Save stays disabled), then `--max-model-len 256 --enforce-eager` typed as shell text and saved,
   then the story's arguments pasted as a JSON list and saved.
3. The launch test in the GUI answers and shows the ready time and the context size vLLM reports: 256.
4. The proxy autostarts the real vLLM: its /proc/PID/cmdline has the arguments, its /v1/models says 256.
5. A rescan keeps the arguments and restarts nothing.
6. The value changed to 384 restarts that backend only (a llama-server model beside it keeps running): vLLM says 384.

Each real vLLM start takes about a minute on 2 cores, so the story starts it three times in one test; the other
test reads vLLM's own error for an unknown flag (about 20 s).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from modelreg.launch.advice.diagnose import diagnose
from modelreg.launch.backends import VLLM as VLLM_BACKEND
from modelreg.launch.catalogue import catalogue_for
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE
from support import free_port, wait_for
from support.gui_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_or_skip,
    modelreg,
    navigate,
    screenshot,
    settle,
    start_gui,
    start_proxy,
)
from support.real_backends import LLAMA_SERVER, VLLM, VLLM_CPU_ARGS, require, vllm_env
from support.tiny_gguf import write_tiny_gguf
from support.tiny_hf import write_tiny_hf

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

SHELL_ARGS = "--max-model-len 256 --enforce-eager"
STORY_ARGS = ["--max-model-len", "256", "--enforce-eager", "--trust-remote-code"]
START_TIMEOUT = 900  # seconds a real vLLM start may take on a busy 2-core machine (one minute when idle)


def env() -> dict[str, str]:
    return {k: v for k, v in vllm_env().items() if not k.startswith(("LLAMA_ARG_", "MODELREG_ADMIN_TOKEN"))}


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(modelreg(folder, *args), capture_output=True, text=True, timeout=300, env=env())


def ask(proxy_url: str, model: str) -> httpx.Response:
    return httpx.post(proxy_url + "/v1/chat/completions", timeout=START_TIMEOUT, json={
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})


def served_context(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["data"][0]["max_model_len"]


def curated_args(folder: Path, name: str) -> list[str]:
    curated = {e["name"]: e for e in json.loads((folder / CURATED_FILE).read_text()) if "profile" not in e}
    return curated[name]["backend_config"]["extra_args"]


def fill_args(page, text: str) -> None:
    box = page.get_by_role("textbox", name="extra_args")
    box.fill(text)
    box.press("Enter")
    settle(page)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A registry whose vllm and llama.cpp are the real programs, with the tiny HF model and the tiny GGUF scanned."""
    vllm, llama_server = require(VLLM), require(LLAMA_SERVER)
    catalogue_for(VLLM_BACKEND, vllm)  # vLLM's flags, read once per install (20-80 s) before the GUI needs them
    tmp = tmp_path_factory.mktemp("real-vllm")
    folder, models = tmp / "configs", tmp / "models"
    folder.mkdir()
    proxy_port = free_port()
    (folder / "settings.json").write_text(json.dumps({
        "proxy_url": f"http://127.0.0.1:{proxy_port}", "log_dir": str(tmp / "logs"), "stop_grace": 5,
        "ready_timeout": START_TIMEOUT, "model_roots": [],
        "executables": {"vllm": vllm, "llama.cpp": llama_server, "llama-cpp-python": sys.executable}}))
    write_tiny_hf(models / "tiny-llama-hf")
    (models / "tiny-gguf").mkdir(parents=True)
    write_tiny_gguf(models / "tiny-gguf" / "tiny-llama-F32.gguf")
    scanned = cli(folder, "scan", str(models), "--json")
    assert scanned.returncode == 0, scanned.stderr
    registry = Registry(folder)
    names = {registry.entry(n)["backend"]: n for n in json.loads(scanned.stdout)["stubs"]}
    assert set(names) == {"vllm", "llama.cpp"}
    for name in names.values():  # a port free on this machine (the stubs' ports are free in the registry only)
        registry.set_value(name, "backend_config.port", free_port())
    return folder, models, tmp, proxy_port, names["vllm"], names["llama.cpp"]


@pytest.mark.browser
def test_the_seed_story_against_real_vllm(story):
    folder, models, tmp, proxy_port, name, gguf_name = story
    sync_playwright = browser_or_skip()
    gui_port = free_port()
    gui = start_gui(folder, gui_port, tmp, env())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(f"http://127.0.0.1:{gui_port}")
            settle(page)
            navigate(page, "Model editor")
            page.get_by_role("combobox").first.click()
            page.get_by_role("option", name=name).click()
            settle(page)
            save = page.get_by_role("button", name="Save", exact=True)

            fill_args(page, "--max-model-length 256 --enforce-eager")
            assert page.get_by_text("did you mean `--max-model-len`?").count() or page.get_by_text(
                "did you mean --max-model-len?").count()
            assert save.is_disabled()
            fill_args(page, "--max-model-len 256 --por 9000")
            assert page.get_by_text("is set by the launcher from backend_config.port").count()
            assert save.is_disabled()

            fill_args(page, SHELL_ARGS)                                    # typed as shell text
            assert page.get_by_text('parsed: ["--max-model-len", "256", "--enforce-eager"]').count()
            save.click()
            settle(page)
            assert curated_args(folder, name) == SHELL_ARGS.split()

            fill_args(page, json.dumps(STORY_ARGS))                        # pasted as a JSON list
            assert page.get_by_text("parsed: " + json.dumps(STORY_ARGS)).count()
            save.click()
            settle(page)
            assert curated_args(folder, name) == STORY_ARGS
            screenshot(page, "real-vllm-editor")

            navigate(page, "Launch test")
            page.get_by_role("button", name="Run launch test").click()
            settle(page, '[data-testid="stAlertContentSuccess"]:has-text("answered")', timeout=START_TIMEOUT * 1000)
            screenshot(page, "real-vllm-launch-test")
            shown = page.inner_text("body")
            assert re.search(r"context size\s+256\b", shown) and re.search(r"ready after\s+[\d.]+ s", shown), shown
            browser.close()
    finally:
        gui.stop()

    proxy = start_proxy(folder, proxy_port, tmp, env())
    try:
        url = f"http://127.0.0.1:{proxy_port}"
        assert ask(url, gguf_name).status_code == 200
        reply = ask(url, name)
        assert reply.status_code == 200, reply.text
        first, gguf = proxy.backend(name), proxy.backend(gguf_name)
        port = Registry(folder).entry(name)["backend_config"]["port"]
        assert psutil.Process(first["pid"]).cmdline()[-len(STORY_ARGS):] == STORY_ARGS
        assert served_context(port) == 256

        assert cli(folder, "scan", str(models)).returncode == 0
        assert wait_for(lambda: proxy.status()["revision"] == Registry(folder).snapshot().revision, timeout=10)
        assert curated_args(folder, name) == STORY_ARGS
        again = proxy.backend(name)
        assert (again["pid"], again["stale"]) == (first["pid"], False)

        changed = ["--max-model-len", "384", *STORY_ARGS[2:]]
        done = cli(folder, "set", name, "backend_config.extra_args", json.dumps(changed))
        assert done.returncode == 0, done.stderr
        assert ask(url, name).status_code == 200
        restarted = wait_for(lambda: (b := proxy.backend(name)) and b["ready"] and b["pid"] != first["pid"] and b,
                             timeout=START_TIMEOUT, what="vLLM restarted with 384")
        assert psutil.Process(restarted["pid"]).cmdline()[-len(changed):] == changed
        assert served_context(port) == 384
        assert proxy.backend(gguf_name)["pid"] == gguf["pid"]       # the other model kept running
    finally:
        proxy.stop()


def test_vllms_own_unknown_flag_error_is_diagnosed(story):
    """The launcher refuses an unknown flag before a start; here it reaches vLLM to prove the diagnosis matches what
    vLLM prints (its other errors need an engine start each: tests/test_diagnose.py holds their measured texts)."""
    folder, models, tmp, _port, name, _gguf = story
    entry = Registry(folder).entry(name)
    args = ["--max-model-length", "4096"]
    argv = [require(VLLM), "serve", entry["backend_config"]["model_path"], "--port", str(free_port()),
            *VLLM_CPU_ARGS, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, env=env())
    assert done.returncode == 2
    entry = {**entry, "backend_config": {**entry["backend_config"], "extra_args": args}}
    finding = next(f for f in diagnose(done.stdout + done.stderr, entry, argv=argv) if f.rule == "unknown_flag")
    assert "vllm: error: unrecognized arguments: --max-model-length 4096" in finding.evidence
    assert "did you mean --max-model-len?" in finding.suggestion
