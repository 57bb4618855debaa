"""The old system's story end to end in Debian's Chromium: real `modelreg gui`, real `modelreg proxy` on loopback.

A model discovered with no arguments; the user adds `--max-model-len 4096 --enforce-eager` in the editor and saves;
the proxy serves the new revision and restarts the stale backend; the launch test runs the argv with the new flags.
vLLM itself needs a GPU: its executable here is the stand-in from tests/support (it records its argv).
Screenshots of every page go to test-output/screenshots/; with MODELREG_UPDATE_SCREENSHOTS=1 they are also copied
to docs/screenshots/, the manual's pictures.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from modelreg.views.models import LAYER_COLORS
from support import free_port, wait_for
from support.gui_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    STORY_MODEL,
    app_env,
    browser_or_skip,
    gui_registry,
    navigate,
    screenshot,
    settle,
    start_gui,
    start_proxy,
)

pytestmark = pytest.mark.browser

NEW_ARGS = ["--max-model-len", "4096", "--enforce-eager"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Registry copy, proxy and GUI processes; yields (folder, proxy url, gui url, proxy process)."""
    sync_playwright = browser_or_skip()
    tmp = tmp_path_factory.mktemp("gui-browser")
    proxy_port, gui_port = free_port(), free_port()
    folder = gui_registry(tmp / "configs", proxy_port)
    env = app_env()
    proxy = start_proxy(folder, proxy_port, tmp, env)
    gui = start_gui(folder, gui_port, tmp, env)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        try:
            yield folder, f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{gui_port}", proxy, page
        finally:
            browser.close()
            gui.stop()
            proxy.stop()


def admin(url: str, folder: Path, path: str) -> dict:
    token = (folder / ".admin-token").read_text().strip()
    return httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10).json()


def color_pixels(png: bytes) -> dict[str, int]:
    """How many pixels of each layer color the image holds."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    wanted = {tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)): cls for cls, (_, color) in LAYER_COLORS.items()}
    counts = {cls: 0 for cls in LAYER_COLORS}
    for count, rgb in image.getcolors(maxcolors=1 << 20):
        if rgb in wanted:
            counts[wanted[rgb]] += count
    return counts


def test_the_old_story_in_a_browser(stack):
    folder, proxy_url, gui_url, proxy, page = stack
    discovered_before = (folder / DISCOVERED_FILE).read_bytes()
    reply = httpx.post(proxy_url + "/v1/chat/completions", timeout=60, json={
        "model": STORY_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text           # the proxy started the backend with the old (empty) args
    first = next(b for b in admin(proxy_url, folder, "/admin/status")["backends"] if b["name"] == STORY_MODEL)
    assert "--enforce-eager" not in first["argv"]

    page.goto(gui_url)
    settle(page, 'table.mr-models td')
    screenshot(page, "models", docs_name="models")
    search = page.get_by_role("textbox", name="Search")
    search.fill("qwen2.5-vl")
    search.press("Enter")
    settle(page, 'text=1 of 7 models ·')
    table = page.locator(".mr-models-frame")
    page.mouse.move(0, 0)
    counts = color_pixels(table.screenshot())
    assert counts["curated"] > 300 and counts["discovered"] > 300, counts  # backend/port vs name/format cells
    # the search left one model: the picker chose it, and the table marks its row
    settle(page, f'tr.selected[data-model="{STORY_MODEL}"]')
    assert page.get_by_role("combobox", name="Model").input_value() == STORY_MODEL
    page.get_by_role("button", name="Open in editor").click()
    settle(page, 'h1:has-text("Model editor")')
    args = page.get_by_role("textbox", name="extra_args")
    assert args.input_value() == ""
    args.fill(" ".join(NEW_ARGS))
    args.press("Enter")
    settle(page, 'code:has-text("--enforce-eager")')
    page.get_by_role("button", name="Save", exact=True).click()
    settle(page, '[data-testid="stAlertContentSuccess"]')
    message = page.locator('[data-testid="stAlertContentSuccess"]').first.inner_text()
    screenshot(page, "editor")

    curated = {e["name"]: e for e in json.loads((folder / CURATED_FILE).read_text()) if "profile" not in e}
    assert curated[STORY_MODEL]["backend_config"]["extra_args"] == NEW_ARGS
    assert (folder / DISCOVERED_FILE).read_bytes() == discovered_before
    revision = Registry(folder).snapshot().revision
    status = admin(proxy_url, folder, "/admin/status")
    assert status["revision"] == revision and f"serves revision {revision[:12]}" in message
    assert f"restarted: {STORY_MODEL}" in message or f"stale (restart when idle): {STORY_MODEL}" in message
    restarted = wait_for(lambda: next((b for b in admin(proxy_url, folder, "/admin/status")["backends"]
                                       if b["name"] == STORY_MODEL and b["ready"] and b["argv"][-3:] == NEW_ARGS),
                                      None), what="the backend restarted with the new argv", timeout=30, interval=0.1)
    assert restarted["pid"] != first["pid"] and not restarted["stale"]

    navigate(page, "Diff & history")
    screenshot(page, "diff")
    navigate(page, "Settings & status")
    settle(page, "text=serves the snapshot on disk")
    running = page.locator('[data-testid="stMetric"]:has-text("running backends") [data-testid="stMetricValue"]')
    assert running.inner_text() == "1"
    screenshot(page, "settings")

    proxy.stop()  # frees the model's port for the launch test (the proxy's shutdown stops its backends)
    navigate(page, "Launch test")
    assert page.locator("code", has_text=" ".join(NEW_ARGS)).count() >= 1   # the exact argv, shown first
    page.get_by_role("button", name="Run launch test").click()
    settle(page, '[data-testid="stAlertContentSuccess"]:has-text("answered")', timeout=90_000)

    def argvs_shown() -> int:  # the result renders below the success line a moment later
        argvs = [t.strip() for t in page.locator("code").all_inner_texts() if "--served-model-name" in t]
        return sum(t.endswith(" ".join(NEW_ARGS)) for t in argvs)

    assert wait_for(lambda: argvs_shown() >= 2, what="the command shown first, and the argv used", timeout=20)
    screenshot(page, "launch", docs_name="launch")
