"""The management app in Debian's Chromium against real `modelreg gui` and `modelreg proxy` processes: no request
leaves loopback, the editor's tabs and unsaved-changes guard, Save disabled on an error, the settings writer, scan
with a dry run, migrate, fit apply, remove a model, restore with confirmation, stop a running backend.
Every page's screenshot goes to test-output/screenshots/ (and to docs/screenshots/ with MODELREG_UPDATE_SCREENSHOTS=1).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from support import chat_body, free_port, wait_for
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
from support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.browser
LLAMA = "llama-3.1-8b-instruct_(Q4_K_M)"
MISTRAL = "mistral-7b-instruct-v0.3_(BF16)"
PHI = "phi-3.5-mini-instruct_(Q4_K_M)"
GEMMA = "gemma-3-4b-it_(Q8_0)"
SLOW = 90_000  # ms: 2 cores shared with other test runs make a rerun slow, not stuck
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Registry copy, proxy and GUI processes, and one browser page that records every request it makes."""
    sync_playwright = browser_or_skip()
    tmp = tmp_path_factory.mktemp("gui-manage")
    proxy_port, gui_port = free_port(), free_port()
    folder = gui_registry(tmp / "configs", proxy_port)
    settings = json.loads((folder / "settings.json").read_text())  # the Hosts page: this machine as the one host
    settings["hosts"] = {"this-machine": {"url": f"http://127.0.0.1:{proxy_port}"}}
    (folder / "settings.json").write_text(json.dumps(settings))
    env = app_env()
    env.update(HF_HUB_CACHE=str(tmp / "no-hf"), OLLAMA_MODELS=str(tmp / "no-ollama"))
    proxy = start_proxy(folder, proxy_port, tmp, env)
    gui = start_gui(folder, gui_port, tmp, env, cwd=tmp)  # outside the repo: no .streamlit/config.toml there
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)  # 2 cores shared with other test runs: slow, not stuck
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        try:
            yield folder, tmp, f"http://127.0.0.1:{gui_port}", proxy, page
        finally:
            browser.close()
            gui.stop()
            proxy.stop()


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the select box labelled `label`."""
    page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True)).first.click()
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
    settle(page, timeout=SLOW)


def fill(page, label: str, text: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    box.press("Enter")
    settle(page, timeout=SLOW)


def click(page, name: str, wait_for: str | None = None) -> None:
    page.get_by_role("button", name=name, exact=True).click()
    settle(page, wait_for, timeout=SLOW)


def curated(folder: Path, name: str) -> dict:
    return next(e for e in json.loads((folder / CURATED_FILE).read_text()) if e["name"] == name and "profile" not in e)


def test_every_page_without_chrome_or_a_request_off_loopback(stack):
    folder, _, gui_url, _, page = stack
    page.goto(gui_url)
    settle(page, 'table.mr-models td', timeout=SLOW)
    screenshot(page, "manage-models")
    for title, shot in (("Model editor", None), ("Diff & history", None), ("Fit", "fit"), ("Launch test", None),
                        ("Running backends", None), ("Activity", None), ("Model folders", None),
                        ("Settings & status", None), ("Download", None), ("Hosts", "hosts")):
        navigate(page, title)
        page.wait_for_timeout(300)
        screenshot(page, f"manage-{title.split()[0].lower()}", docs_name=shot)
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0  # minimal toolbar: no Deploy
    icon = page.locator('link[rel="shortcut icon"], link[rel="icon"]').first.get_attribute("href")
    assert urlsplit(icon).hostname in LOOPBACK and "/media/" in icon  # the local icon file, served by the app
    hosts = {urlsplit(url).hostname for url in page.requests if urlsplit(url).scheme in ("http", "https", "ws", "wss")}
    assert page.requests and hosts <= set(LOOPBACK), hosts


def test_editor_tabs_guard_and_save_disabled_on_an_error(stack):
    folder, _, gui_url, _, page = stack
    before = (folder / CURATED_FILE).read_bytes()
    page.goto(gui_url + "/editor_page")
    settle(page, 'h1:has-text("Model editor")', timeout=SLOW)
    choose(page, "Model", MISTRAL)
    fill(page, "port", "0")
    assert page.get_by_text("use a whole number from 1 to 65535").first.is_visible()  # the launch's check
    assert page.get_by_role("button", name="Save", exact=True).is_disabled()
    fill(page, "port", "24100")
    assert page.get_by_role("button", name="Save", exact=True).is_enabled()
    page.get_by_role("tab", name="Generation").click()
    assert page.get_by_role("textbox", name="temperature", exact=True).input_value() == "0.3"
    page.get_by_role("tab", name="Routing").click()
    assert page.get_by_text("priority: chat").is_visible()  # a number per chosen role
    screenshot(page, "manage-editor-tabs", docs_name="editor")
    choose(page, "Model", LLAMA)                                  # another model: the edit is kept, not lost
    page.get_by_role("tab", name="Launch").click()
    assert page.get_by_role("textbox", name="port", exact=True).input_value() == "24002"
    assert page.get_by_text(f"Unsaved edits kept for: {MISTRAL}").is_visible()
    navigate(page, "Models")                                       # another page and back
    navigate(page, "Model editor")
    choose(page, "Model", MISTRAL)
    page.get_by_role("tab", name="Launch").click()
    assert page.get_by_role("textbox", name="port", exact=True).input_value() == "24100"
    assert page.get_by_text("Pending: set backend_config.port").is_visible()
    click(page, "Discard")
    assert page.get_by_role("textbox", name="port", exact=True).input_value() == "24003"
    assert (folder / CURATED_FILE).read_bytes() == before


def test_settings_writer_scan_dry_run_and_migrate(stack):
    folder, tmp, gui_url, _, page = stack
    root = tmp / "more-models"
    root.mkdir()
    write_tiny_gguf(root / "tiny-F32.gguf")
    page.goto(gui_url + "/folders_page")
    settle(page, 'h1:has-text("Model folders")', timeout=SLOW)
    assert page.get_by_text("No model roots: add a folder").is_visible()
    fill(page, "Folder", str(root))
    names_before = set(Registry(folder).snapshot().by_name)
    click(page, "Scan this folder (dry run)", "text=Dry run, nothing written")
    assert page.get_by_text("1 to add, 0 to update").is_visible()  # (demo paths are relative: missing from here)
    assert set(Registry(folder).snapshot().by_name) == names_before
    screenshot(page, "manage-folders-dry-run", docs_name="folders")
    click(page, "Apply this scan", "text=Scan done: 1 added")
    assert len(set(Registry(folder).snapshot().by_name) - names_before) == 1
    click(page, "Add as a model root", f'code:has-text("{root}")')
    assert json.loads((folder / "settings.json").read_text())["model_roots"] == [str(root)]

    discovered = json.loads((folder / DISCOVERED_FILE).read_text())
    next(e for e in discovered if e["name"] == PHI)["backend_config"]["extra_args"] = ["-c", "4096"]
    (folder / DISCOVERED_FILE).write_text(json.dumps(discovered))
    navigate(page, "Settings & status")
    fill(page, "proxy_url", "not a url")
    click(page, "Save URL", "text=Not saved")
    assert json.loads((folder / "settings.json").read_text())["proxy_url"].startswith("http://127.0.0.1:")
    page.get_by_text("Preview of the migration").wait_for()
    screenshot(page, "manage-settings", docs_name="settings")
    click(page, "Migrate", "text=the proxy serves revision")
    assert curated(folder, PHI)["backend_config"]["extra_args"] == ["-c", "4096"]
    assert "extra_args" not in next(e for e in json.loads((folder / DISCOVERED_FILE).read_text())
                                    if e["name"] == PHI)["backend_config"]


def test_fit_applies_a_context_in_one_click(stack):
    folder, _, gui_url, proxy, page = stack
    page.goto(gui_url + "/fit_page")
    settle(page, 'h1:has-text("Fit")', timeout=SLOW)
    choose(page, "Model", MISTRAL)
    page.get_by_role("button", name=re.compile(r"^Apply --max-model-len \d+ to curated$")).click()
    settle(page, 'text=the proxy serves revision', timeout=SLOW)
    args = curated(folder, MISTRAL)["backend_config"]["extra_args"]
    assert args[0] == "--max-model-len" and args.count("--max-model-len") == 1  # set in place
    assert proxy.status()["revision"] == Registry(folder).snapshot().revision


def test_remove_a_model_and_restore_it_after_a_confirmation(stack):
    folder, _, gui_url, _, page = stack
    page.goto(gui_url)
    settle(page, 'table.mr-models td', timeout=SLOW)
    fill(page, "Search", "gemma")
    settle(page, f'tr.selected[data-model="{GEMMA}"]', timeout=SLOW)  # the one match, picked
    click(page, "Remove…", '[role="dialog"]')
    dialog = page.locator('[role="dialog"]')
    assert "Forget" in dialog.inner_text() and GEMMA in dialog.inner_text()
    dialog.get_by_role("button", name="Remove", exact=True).click()
    wait_for(lambda: GEMMA not in {e["name"] for e in Registry(folder).discovered_entries()}, what="removed")
    settle(page, timeout=SLOW)
    Registry(folder).set_value(GEMMA, "roles", ["vision", "restored"])
    before = (folder / CURATED_FILE).read_bytes()
    navigate(page, "Diff & history")
    click(page, "Restore this version…", '[role="dialog"]')
    dialog = page.locator('[role="dialog"]')
    assert "restored" in dialog.locator("code").inner_text()              # the change it would make, first
    dialog.get_by_role("button", name="Cancel").click()
    settle(page, timeout=SLOW)
    assert (folder / CURATED_FILE).read_bytes() == before
    click(page, "Restore this version…", '[role="dialog"]')
    screenshot(page, "manage-restore", docs_name="diff")
    page.locator('[role="dialog"]').get_by_role("button", name="Restore", exact=True).click()
    settle(page, 'text=the proxy serves revision', timeout=SLOW)
    assert "restored" not in json.dumps(curated(folder, GEMMA))


def test_stop_a_running_backend(stack):
    folder, _, gui_url, proxy, page = stack
    reply = httpx.post(proxy.url + "/v1/chat/completions", json=chat_body(STORY_MODEL), timeout=60)
    assert reply.status_code == 200, reply.text
    page.goto(gui_url + "/running_page")
    page.wait_for_selector(f'td[id^="glide-cell"]:has-text("{STORY_MODEL}")', state="attached", timeout=SLOW)
    settle(page, timeout=SLOW)
    screenshot(page, "manage-running", docs_name="running")
    click(page, f"Stop {STORY_MODEL}")
    wait_for(lambda: proxy.backend(STORY_MODEL) is None, what="the backend stopped", timeout=30, interval=0.2)
    settle(page, "text=The proxy runs no backend right now", timeout=SLOW)

    reply = httpx.post(proxy.url + "/v1/chat/completions", json=chat_body(STORY_MODEL), timeout=60)
    assert reply.status_code == 200, reply.text                    # running again: its port is taken
    navigate(page, "Launch test")
    choose(page, "Model", STORY_MODEL)
    assert page.get_by_text(f"{STORY_MODEL} is running in the proxy").is_visible()
    click(page, "Stop it in the proxy, then run the test")
    settle(page, '[data-testid="stAlertContentSuccess"]:has-text("answered")', timeout=SLOW)
    assert proxy.backend(STORY_MODEL) is None
