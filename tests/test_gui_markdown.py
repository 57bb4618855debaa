"""Registry strings are text on every GUI page, never markdown: a model named `![b](http://host/x)` made the browser
fetch that URL on the Editor and Settings pages. Debian's Chromium against a real `modelreg gui`; the "host" is a
loopback server that counts what reaches it."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from modelreg.gui.text import WORD_JOINER
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE, dumps
from support import free_port
from support.gui_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    app_env,
    browser_or_skip,
    gui_registry,
    screenshot,
    settle,
    start_gui,
)

pytestmark = pytest.mark.browser


class Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []
    port = 0

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        Counting.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def hostile_registry(folder, host: str):
    """The demo registry plus a model whose name, display name, profile and values are markdown that fetches."""
    gui_registry(folder, free_port())
    name = f"![name]({host}/name)"
    discovered = json.loads((folder / DISCOVERED_FILE).read_text())
    template = next(e for e in discovered if e["name"] == "qwen3-8b_(Q4_K_M)")
    discovered.append({**template, "name": name,
                       "display_name": f"`![code]({host}/display)` <img src='{host}/html'> :red[x] $x$"})
    (folder / DISCOVERED_FILE).write_bytes(dumps(sorted(discovered, key=lambda e: e["name"])))
    curated = json.loads((folder / CURATED_FILE).read_text())
    curated += [{"name": name, "backend": "llama.cpp", "display_name": "mine", "size_bytes": 1,
                 "backend_config": {"port": free_port(), "extra_args": [f"![arg]({host}/arg)"]}},
                {"name": name, "profile": f"![profile]({host}/profile)", "backend_config": {"port": free_port()}}]
    (folder / CURATED_FILE).write_bytes(dumps(curated))
    Registry(folder).rebuild()
    return name


def open_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    settle(page, f'h1:has-text("{title}")', timeout=90_000)


def shown(page) -> str:
    """The page's text as a person reads it (without the invisible joiners that keep URLs from becoming links),
    after checking that no registry string became a link or an image."""
    assert page.locator(f'a[href*="127.0.0.1:{Counting.port}"], img[src*="127.0.0.1:{Counting.port}"]').count() == 0
    return page.inner_text("body").replace(WORD_JOINER, "")


def test_hostile_names_and_values_are_shown_as_text_and_fetch_nothing(tmp_path):
    sync_playwright = browser_or_skip()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Counting.port = server.server_port
    host = f"http://127.0.0.1:{server.server_port}"
    folder = tmp_path / "configs"
    name = hostile_registry(folder, host)
    env = app_env()
    port = free_port()
    gui = start_gui(folder, port, tmp_path, env)
    fetched: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.on("request", lambda request: request.url.startswith(host) and fetched.append(request.url))
            page.goto(f"http://127.0.0.1:{port}")
            settle(page, 'table.mr-models td', timeout=90_000)
            open_page(page, "Model editor")  # the hostile model sorts first: the editor opens on it
            page.get_by_text("base curated entry").wait_for(timeout=30_000)  # widgets draw after the script ends
            text = shown(page)
            assert page.get_by_role("combobox", name="Model").input_value() == name  # the model picker
            assert f"profile ![profile]({host}/profile)" in text  # a radio option
            page.get_by_role("tab", name="Display & metadata").click()
            text = shown(page)
            assert f"discovered value: `![code]({host}/display)` <img src='{host}/html'> :red[x] $x$" in text
            screenshot(page, "markdown-editor")
            open_page(page, "Settings & status")
            page.get_by_text("1 warning(s)").click()
            assert f"entry '{name}': curated value for fact field(s) size_bytes ignored" in shown(page)
            screenshot(page, "markdown-settings")
            open_page(page, "Diff & history")
            open_page(page, "Models")
            page.get_by_text("Selected:").wait_for(timeout=30_000)
            assert f"Selected: {name}" in shown(page)
            browser.close()
    finally:
        gui.stop()
        server.shutdown()
    assert fetched == [] and Counting.hits == []
