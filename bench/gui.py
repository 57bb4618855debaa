"""The GUI in Chromium with 2,000 models: Models page load to interactive beside an empty Streamlit page served the
same way (measured in turns in one run), and a save round trip (click to the proxy confirming the new revision),
against real `modelreg gui` and `modelreg proxy` processes."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import console, side_by_side

MODELS = 2000
VISITS = 9
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# The save's own report: the proxy confirmed a revision, and the reloaded form holds the saved value.
CONFIRMED = """value => {
  const alert = document.querySelector('[data-testid="stAlertContentSuccess"]');
  const field = document.querySelector('input[aria-label="extra_args"]');
  return alert && alert.innerText.includes('the proxy serves revision') && field && field.value === value
    && !document.body.innerText.includes('Pending: set');
}"""


EMPTY_APP = 'import streamlit as st\n\nst.title("Empty")\n'
TABLE_READY = "table.mr-models td"  # the Models table's first cell


def _interactive(page, url: str, ready: str) -> tuple[float, float]:
    """Seconds from navigation until `ready` exists and the script has finished, and the seconds of that the
    browser's main thread worked (its own CPU: steadier than wall time when other work shares the cores)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    began = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, state="attached", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    elapsed = time.perf_counter() - began
    metrics = {metric["name"]: metric["value"] for metric in cdp.send("Performance.getMetrics")["metrics"]}
    return elapsed, metrics["TaskDuration"]


def _empty_streamlit(folder: Path, port: int) -> subprocess.Popen:
    """An empty Streamlit app served with the flags `modelreg gui` uses: the floor any Streamlit page pays."""
    import httpx

    from modelreg.cli.gui import streamlit_argv

    app = folder / "empty_app.py"
    app.write_text(EMPTY_APP)
    argv = streamlit_argv(port)
    argv[4] = str(app)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/script-health-check", timeout=30).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    sys.exit("the empty Streamlit app did not start")


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
    empty_port = free_port()
    empty = _empty_streamlit(folder, empty_port)
    url, empty_url = f"http://127.0.0.1:{gui_port}", f"http://127.0.0.1:{empty_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

            def visit(address: str, ready: str) -> tuple[float, float]:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                try:
                    return _interactive(page, address, ready)
                finally:
                    page.close()

            (cold, _), (empty_cold, _) = visit(url, TABLE_READY), visit(empty_url, "h1")
            warm, empty_warm = [], []
            for _ in range(VISITS):  # in turns, so both see the same load on a shared machine
                warm.append(visit(url, TABLE_READY))
                empty_warm.append(visit(empty_url, "h1"))
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url + "/editor_page")
            page.wait_for_selector(IDLE, timeout=60_000)
            saves = [_save_round_trip(page, f"--max-model-len {5000 + step}") for step in range(5)]
            browser.close()
    finally:
        empty.terminate()
        empty.wait(15)
        gui.stop()
        proxy.stop()
    def median(visits: list[tuple[float, float]], figure: int) -> float:
        return statistics.median(visit[figure] for visit in visits)

    side_by_side(f"gui: {MODELS:,} models in Chromium (real modelreg gui + modelreg proxy)", [
        ("Models page: load to interactive, first visit", cold, "empty Streamlit page, first visit", empty_cold, "s"),
        (f"Models page: load to interactive, later visits (median of {VISITS})", median(warm, 0),
         f"empty Streamlit page, median of {VISITS}", median(empty_warm, 0), "s"),
        ("Models page: the browser's main thread busy, later visits (median)", median(warm, 1),
         "empty Streamlit page, median", median(empty_warm, 1), "s"),
        ("save round trip: click to proxy-confirmed (median of 5)", statistics.median(saves), "goal", 1.0, "s"),
    ], note=f"goals: Models page within 1.5x of the empty page; save under 1 s. Save round trips: "
            f"{', '.join(f'{s:.3f}' for s in saves)} s; Models page visits: "
            f"{', '.join(f'{w:.2f}' for w, _ in warm)} s; empty page visits: "
            f"{', '.join(f'{w:.2f}' for w, _ in empty_warm)} s")


if __name__ == "__main__":
    main()
