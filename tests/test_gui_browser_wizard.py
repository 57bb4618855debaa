"""The download wizard end to end in Debian's Chromium: from a repo id to a passing launch test.

A real `modelreg gui` (and `modelreg proxy`) on loopback, whose huggingface_hub talks to the loopback Hub
(HF_ENDPOINT) serving the tiny GGUF; the launch test runs the real llama-cpp-python server. A screenshot of each
step goes to test-output/screenshots/wizard-*.png; the review step is also docs/screenshots/wizard.png with
MODELREG_UPDATE_SCREENSHOTS=1.
"""
from __future__ import annotations

import os
import re

import httpx
import pytest

from modelreg.registry import Registry
from support import free_port
from support.fake_hub import FakeHub
from support.gui_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_or_skip,
    gui_registry,
    navigate,
    screenshot,
    settle,
    start_gui,
    start_proxy,
)

pytestmark = [pytest.mark.browser, pytest.mark.server]

REPO_ID = "tiny-org/tiny-llama-GGUF"
F32, Q8 = "tiny-llama-F32.gguf", "tiny-llama-Q8_0.gguf"
HF_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MODELREG_ADMIN_TOKEN", "MODELREG_PROFILE")


@pytest.fixture(scope="module")
def wizard_stack(tmp_path_factory, tiny_model):
    """The loopback Hub, a registry whose models root is empty, proxy and GUI processes, a browser page."""
    sync_playwright = browser_or_skip()
    tmp = tmp_path_factory.mktemp("gui-wizard")
    proxy_port, gui_port = free_port(), free_port()
    folder = gui_registry(tmp / "configs", proxy_port)
    settings = folder / "settings.json"
    settings.write_text(settings.read_text().replace('"model_roots": []', f'"model_roots": ["{tmp / "models"}"]'))
    with FakeHub() as hub:
        hub.add_repo(REPO_ID, {F32: tiny_model.read_bytes(), Q8: tiny_model.read_bytes() + b"\0" * 32,
                               "README.md": b"# tiny"})
        env = {k: v for k, v in os.environ.items() if k not in HF_VARIABLES}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
        proxy = start_proxy(folder, proxy_port, tmp, env)
        gui = start_gui(folder, gui_port, tmp, env)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1600, "height": 1300})
                try:
                    yield hub, folder, f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{gui_port}", page
                finally:
                    browser.close()
        finally:
            gui.stop()
            proxy.stop()


def test_from_repo_id_to_a_passing_launch_test(wizard_stack):
    hub, folder, proxy_url, gui_url, page = wizard_stack
    page.goto(gui_url)
    settle(page)
    navigate(page, "Download")
    repo = page.get_by_role("textbox", name="Repo id (ORG/NAME)")
    repo.fill(REPO_ID)
    repo.press("Enter")
    settle(page)
    page.get_by_role("button", name="Analyse").click()
    settle(page, '[data-testid="stRadio"]:has-text("recommended")')
    page.get_by_text("F32 · gguf").click()  # the recommended choice is Q8_0
    settle(page, '[data-testid="stAlertContentInfo"]:has-text("2 file(s)")')
    screenshot(page, "wizard-1-source")

    pause = hub.hold(F32, after_bytes=64 * 1024)  # keeps the download running while the page is away
    page.get_by_role("button", name=f"Download {REPO_ID}").click()
    settle(page, '[data-testid="stProgress"]')
    assert pause.reached.wait(30)
    navigate(page, "Models")
    navigate(page, "Download")  # back: the same job, still running, still polled
    page.wait_for_selector('[data-testid="stProgress"]', timeout=10_000)
    page.wait_for_selector('[data-testid="stProgress"]:has-text("1/2 files")', timeout=10_000)
    screenshot(page, "wizard-2-download")
    pause.release.set()
    settle(page, 'h3:has-text("is registered")', timeout=60_000)
    name = re.match(r"(.+) is registered", page.locator('h3:has-text("is registered")').inner_text()).group(1)
    assert "_config_needed" in page.locator('[data-testid="stJson"]').inner_text()  # the pre-filled stub
    screenshot(page, "wizard-3-review", docs_name="wizard")

    page.get_by_role("button", name="Configure").click()
    settle(page, f'h3:has-text("Configure {name}")')
    page.locator('[data-testid="stSelectbox"]').filter(has_text="backend").click()
    page.get_by_role("option", name="llama-cpp-python", exact=True).click()
    settle(page, 'code:has-text("llama_cpp.server")')
    args = page.get_by_role("textbox", name="extra_args")
    args.fill("--n_ctx 256")
    args.press("Enter")
    settle(page, 'code:has-text("--n_ctx 256")')
    screenshot(page, "wizard-4-configure")
    page.get_by_role("button", name="Save", exact=True).click()
    settle(page, '[data-testid="stAlertContentSuccess"]:has-text("serves revision")')
    registry = Registry(folder)
    entry, revision = registry.entry(name), registry.snapshot().revision
    assert entry["backend"] == "llama-cpp-python" and entry["backend_config"]["extra_args"] == ["--n_ctx", "256"]
    assert "_config_needed" not in entry["metadata"]
    token = (folder / ".admin-token").read_text().strip()
    status = httpx.get(proxy_url + "/admin/status", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert status["revision"] == revision and page.get_by_text(f"serves revision {revision[:12]}").count()
    screenshot(page, "wizard-5-save")

    page.get_by_role("button", name="Run launch test").click()
    settle(page, '[data-testid="stAlertContentSuccess"]:has-text("answered")', timeout=120_000)
    assert page.get_by_text("is downloaded, configured, saved and answers").count()
    assert any(t.strip().endswith("--n_ctx 256") for t in page.locator("code").all_inner_texts())
    screenshot(page, "wizard-6-launch-test")
    page.get_by_role("link", name="Open it in the model editor").click()
    settle(page, 'h1:has-text("Model editor")')
    assert page.get_by_role("textbox", name="extra_args").input_value() == "--n_ctx 256"  # opened on this model
