"""One place for the context, in Chromium against real `modelreg gui` and `modelreg proxy` processes and the real
llama.cpp llama-server: two differing context places are an error naming both in the editor; an edit of the context
field makes them agree; /v1/models, the running server and the launch test all report that one value."""
from __future__ import annotations

import json

import httpx
import pytest

from modelreg.store import CURATED_FILE
from support import chat_body, free_port, wait_for
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
SLOW = 90_000
BOTH = "generation_defaults.context_window is 1024 and backend_config.extra_args --ctx-size is 512"


def curated_tiny(folder) -> dict:
    return next(e for e in json.loads((folder / CURATED_FILE).read_text()) if e["name"] == TINY)


def test_two_context_places_in_the_editor_then_one_value_everywhere(tmp_path):
    sync_playwright = browser_or_skip()
    llama_server = require(LLAMA_SERVER)
    proxy_port, gui_port = free_port(), free_port()
    folder = gui_registry(tmp_path / "configs", proxy_port)
    with_tiny_llama(folder, tmp_path, TINY, {  # written by hand
        "backend": "llama.cpp", "generation_defaults": {"context_window": 1024},
        "backend_config": {"port": free_port(), "extra_args": ["-c", "512"]}}, llama_server)
    env = app_env(clean_llama_env())
    proxy = start_proxy(folder, proxy_port, tmp_path, env)
    gui = start_gui(folder, gui_port, tmp_path, env, cwd=tmp_path)
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    try:
        refused = httpx.post(proxy_url + "/v1/chat/completions", json=chat_body(TINY), timeout=60)
        assert refused.status_code >= 400 and BOTH in refused.text  # neither place silently wins
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(SLOW)
            page.goto(f"http://127.0.0.1:{gui_port}/editor_page")
            settle(page, 'h1:has-text("Model editor")', timeout=SLOW)
            page.locator('[data-testid="stSelectbox"]').first.click()
            page.get_by_role("option", name=TINY).first.click()
            settle(page, timeout=SLOW)
            page.get_by_role("tab", name="Generation").click()
            context = page.get_by_role("textbox", name="context window", exact=True)
            wait_for(lambda: context.input_value() == "512", what="what llama-server would take")
            alert = page.locator('[data-testid="stAlertContentError"]', has_text=BOTH)
            shown = [alert.nth(index).is_visible() for index in range(alert.count())]
            assert shown.count(True) == 1, shown  # by the field, on this tab (the Launch tab's preview says it too)
            screenshot(page, "context-two-places")
            context.fill("768")
            context.press("Enter")
            settle(page, timeout=SLOW)
            wait_for(lambda: page.locator('[data-testid="stAlertContentError"]',
                                          has_text="places set the context").count() == 0, what="the warning gone")
            page.get_by_role("button", name="Save", exact=True).click()
            settle(page, "text=the proxy serves revision", timeout=SLOW)
            entry = curated_tiny(folder)
            assert entry["generation_defaults"]["context_window"] == 768
            assert entry["backend_config"]["extra_args"] == ["-c", "768"]  # both places, in place: they agree

            models = httpx.get(proxy_url + "/v1/models", timeout=10).json()["data"]
            assert next(m for m in models if m["id"] == TINY)["context_length"] == 768
            answered = httpx.post(proxy_url + "/v1/chat/completions", json=chat_body(TINY), timeout=120)
            assert answered.status_code == 200, answered.text
            props = httpx.get(f"{proxy_url}/upstream/{TINY}/props", timeout=30).json()
            assert (props.get("n_ctx") or props["default_generation_settings"]["n_ctx"]) == 768  # the real server
            running = next(b for b in proxy.status()["backends"] if b["name"] == TINY)
            assert running["argv"].count("-c") == 1 and running["argv"][running["argv"].index("-c") + 1] == "768"

            proxy.stop()  # frees the model's port for the launch test
            page.get_by_role("button", name="Launch test", exact=True).click()
            settle(page, '[data-testid="stAlertContentSuccess"]:has-text("answered")', timeout=SLOW)
            metric = page.locator('[data-testid="stMetric"]:has-text("context size") [data-testid="stMetricValue"]')
            assert wait_for(lambda: metric.count() and metric.inner_text() == "768", timeout=20,
                            what="the launch test's context size")
            screenshot(page, "context-launch-test")
            browser.close()
    finally:
        gui.stop()
        proxy.stop()
