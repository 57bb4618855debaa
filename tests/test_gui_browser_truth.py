"""What you see is what runs, in Chromium against real `modelreg gui` and `modelreg proxy` processes and the real
llama.cpp llama-server: a settings change made on the Settings page reaches the running proxy with no restart."""
from __future__ import annotations

import httpx
import pytest

from support import chat_body, free_port
from support.gui_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    app_env,
    browser_or_skip,
    gui_registry,
    screenshot,
    settle,
    start_gui,
    start_proxy,
    with_tiny_llama,
)
from support.real_backends import LLAMA_SERVER, clean_llama_env, require

pytestmark = pytest.mark.browser
TINY = "tiny-llama_(F32)"


def test_an_executable_set_in_settings_serves_a_chat_without_a_restart(tmp_path):
    sync_playwright = browser_or_skip()
    llama_server = require(LLAMA_SERVER)
    proxy_port, gui_port = free_port(), free_port()
    folder = gui_registry(tmp_path / "configs", proxy_port)
    with_tiny_llama(folder, tmp_path, TINY, {
        "backend": "llama.cpp", "backend_config": {"port": free_port(), "extra_args": ["-c", "512"]}},
        str(tmp_path / "no-such-llama-server"))  # what a new user starts with
    env = app_env(clean_llama_env())
    proxy = start_proxy(folder, proxy_port, tmp_path, env)
    gui = start_gui(folder, gui_port, tmp_path, env, cwd=tmp_path)
    chat = chat_body(TINY)
    url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    try:
        refused = httpx.post(url, json=chat, timeout=60)
        assert refused.status_code >= 400 and "no-such-llama-server" in refused.text
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(90_000)
            page.goto(f"http://127.0.0.1:{gui_port}/settings_page")
            settle(page, 'h1:has-text("Settings & status")', timeout=90_000)
            field = page.get_by_label("executable: llama.cpp", exact=True)
            field.fill(llama_server)
            field.press("Enter")
            settle(page)
            page.get_by_role("button", name="Save machine settings").click()
            settle(page, "text=the proxy applied it", timeout=90_000)
            screenshot(page, "truth-settings-live")
            browser.close()
        answered = httpx.post(url, json=chat, timeout=120)  # the same proxy process: no restart
        assert answered.status_code == 200, answered.text
        assert answered.json()["choices"][0]["message"]["content"] is not None
        assert proxy.process.poll() is None
    finally:
        gui.stop()
        proxy.stop()
