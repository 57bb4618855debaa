"""The GUI in Chromium with 2,000 models: Models page load to interactive, and a save round trip (click to the
proxy confirming the new revision), against real `modelreg gui` and `modelreg proxy` processes."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import console, side_by_side

MODELS = 2000
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# The save's own report: the proxy confirmed a revision, and the reloaded form holds the saved value.
CONFIRMED = """value => {
  const alert = document.querySelector('[data-testid="stAlertContentSuccess"]');
  const field = document.querySelector('input[aria-label="extra_args"]');
  return alert && alert.innerText.includes('the proxy serves revision') && field && field.value === value
    && !document.body.innerText.includes('Pending: set');
}"""


def _interactive(page, url: str) -> float:
    """Seconds from navigation until the table's cells exist and the script has finished."""
    began = time.perf_counter()
    page.goto(url)
    page.wait_for_selector('td[id="glide-cell-1-0"]', state="attached", timeout=60_000)  # column 0: row selection
    page.wait_for_selector(IDLE, timeout=60_000)
    return time.perf_counter() - began


def _save_round_trip(page, value: str) -> float:
    """Seconds from the Save click until the page shows the proxy serving the saved revision."""
    args = page.get_by_role("textbox", name="extra_args")
    args.fill(value)
    args.press("Enter")
    page.wait_for_selector(f'code:has-text("{value}")', timeout=30_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    began = time.perf_counter()
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_function(CONFIRMED, arg=value, timeout=30_000)
    elapsed = time.perf_counter() - began
    page.wait_for_selector(IDLE, timeout=30_000)
    return elapsed


def main() -> None:
    from playwright.sync_api import sync_playwright

    from support import free_port
    from support.gui_servers import CHROMIUM, CHROMIUM_ARGS, gui_registry, start_gui, start_proxy

    if not CHROMIUM.exists():
        console.print(f"gui: SKIPPED, no browser at {CHROMIUM} (make browser installs Debian's chromium)")
        return
    folder = Path(tempfile.mkdtemp(prefix="modelreg-bench-gui-"))
    proxy_port, gui_port = free_port(), free_port()
    config_dir = gui_registry(folder / "configs", proxy_port, extra_models=MODELS - 7)
    proxy = start_proxy(config_dir, proxy_port, folder)
    gui = start_gui(config_dir, gui_port, folder)
    url = f"http://127.0.0.1:{gui_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            cold = _interactive(browser.new_page(viewport={"width": 1600, "height": 1000}), url)
            warm = [_interactive(browser.new_page(viewport={"width": 1600, "height": 1000}), url) for _ in range(3)]
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url + "/editor_page")
            page.wait_for_selector(IDLE, timeout=60_000)
            saves = [_save_round_trip(page, f"--max-model-len {5000 + step}") for step in range(5)]
            browser.close()
    finally:
        gui.stop()
        proxy.stop()
    side_by_side(f"gui: {MODELS:,} models in Chromium (real modelreg gui + modelreg proxy)", [
        ("Models page: load to interactive, first visit", cold, "goal", 3.0, "s"),
        ("Models page: load to interactive, later visits (median of 3)", statistics.median(warm), "goal", 3.0, "s"),
        ("save round trip: click to proxy-confirmed (median of 5)", statistics.median(saves), "goal", 1.0, "s"),
    ], note=f"save round trips: {', '.join(f'{s:.3f}' for s in saves)} s")


if __name__ == "__main__":
    main()
