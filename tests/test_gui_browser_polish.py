"""The demo and the editor as a desktop user meets them, in Chromium against a real `modelreg up` (proxy and GUI) on
the demo registry and the real llama.cpp llama-server: a Rescan of the demo changes nothing; the Launch test runs
the unsaved version; leaving with unsaved edits asks first; Ctrl+S saves and Esc discards; every page in light and
dark at 1440x900 (test-output/screenshots/polish-*.png), with dark layer cells and no clipped button."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, dumps
from modelreg.views.models import DARK_LAYER_COLORS, LAYER_COLORS
from support import free_port, wait_for
from support.demo_models import build_demo
from support.gui_servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Served,
    app_env,
    browser_or_skip,
    modelreg,
    navigate,
    screenshot,
    settle,
    vllm_standin,
)
from support.real_backends import LLAMA_SERVER, clean_llama_env, require

pytestmark = pytest.mark.browser
LLAMA = "llama-3.1-8b-instruct_(Q4_K_M)"  # the demo's GGUF model without a projector: llama-server runs it


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`modelreg up` on the demo as `make run` makes it (in a scratch folder, its own ports); yields (registry folder,
    GUI url, browser)."""
    sync_playwright = browser_or_skip()
    llama_server = require(LLAMA_SERVER)
    tmp = tmp_path_factory.mktemp("demo")
    with contextlib.chdir(tmp):  # the demo's paths are relative to the folder `make run` starts in
        folder = build_demo(tmp / ".cache/demo-models", tmp / ".cache/demo-registry").config_dir
    proxy_port, gui_port = free_port(), free_port()
    settings = json.loads((folder / "settings.json").read_text())
    settings.update({"proxy_url": f"http://127.0.0.1:{proxy_port}", "log_dir": str(tmp / "logs"), "stop_grace": 2,
                     "executables": {"llama.cpp": llama_server, "vllm": str(vllm_standin(tmp))}})
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    curated = json.loads((folder / CURATED_FILE).read_text())
    for entry in curated:  # free ports: other test sessions may run the demo beside this one
        if isinstance(entry.get("backend_config"), dict) and "port" in entry["backend_config"]:
            entry["backend_config"]["port"] = free_port()
    (folder / CURATED_FILE).write_bytes(dumps(curated))
    Registry(folder).rebuild()
    env = app_env(clean_llama_env())
    env.update({"HF_HOME": str(tmp / "hf"), "HF_HUB_CACHE": str(tmp / "hf" / "hub"),
                "OLLAMA_MODELS": str(tmp / "ollama")})  # a Rescan's other default roots: empty here
    up = Served(modelreg(folder, "up", "--port", str(gui_port), "--proxy-port", str(proxy_port)),
                f"http://127.0.0.1:{gui_port}/_stcore/health", tmp / "up.log", env, timeout=180, ready_line="GUI:",
                cwd=tmp)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield folder, f"http://127.0.0.1:{gui_port}", browser
        finally:
            browser.close()
            up.stop()


def open_page(browser, url: str, path: str = "", scheme: str = "light", width: int = 1440, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    page.set_default_timeout(90_000)
    page.goto(f"{url}/{path}")
    settle(page, "h1", timeout=120_000)
    return page


def drawn(page) -> None:
    """Wait until the page's elements are drawn, not only its script run (the first view of an element type loads
    its code: until then it is a grey placeholder)."""
    settle(page)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1000)
    page.mouse.move(0, 0)


def pick_model(page, name: str) -> None:
    page.locator('.st-key-editor_picker [data-testid="stSelectbox"]').click()
    page.get_by_role("option", name=name, exact=True).click()
    settle(page)


def type_into(page, label: str, text: str) -> None:
    """Click the field and type at its end, as a person does (real key events: the page counts as used)."""
    field = page.get_by_label(label, exact=True)
    field.click()
    page.keyboard.press("End")
    page.keyboard.type(text)


def test_a_rescan_of_the_demo_changes_nothing(demo):
    folder, url, browser = demo
    before = Registry(folder).snapshot().entries
    page = open_page(browser, url, "folders_page")
    page.get_by_role("button", name="Rescan", exact=True).click()
    settle(page, "text=Scan done:")
    assert page.get_by_text("Scan done: 0 added, 0 updated, 0 marked missing, 0 new stub(s)").is_visible()
    assert Registry(folder).snapshot().entries == before
    page.close()


def test_the_launch_test_runs_the_unsaved_version_and_saves_nothing(demo):
    folder, url, browser = demo
    curated_before = (folder / CURATED_FILE).read_bytes()
    page = open_page(browser, url, "editor_page")
    pick_model(page, LLAMA)
    type_into(page, "extra_args", " --threads 2")
    page.keyboard.press("Enter")
    settle(page, 'text=Pending:')
    page.get_by_role("button", name="Launch test (unsaved)").click()
    settle(page, 'h1:has-text("Launch test")')
    assert page.get_by_text("This run tests the editor's unsaved version").is_visible()
    settle(page, f'text={LLAMA} answered', timeout=180_000)
    screenshot(page, "polish-launch-unsaved")
    command, *_, used = page.locator('[data-testid="stCode"]').all_inner_texts()[:2]
    assert "--threads 2" in used and "--threads 2" not in command, (command, used)  # the saved one above
    assert (folder / CURATED_FILE).read_bytes() == curated_before  # a launch plan needs no save
    page.close()


def test_leaving_with_unsaved_edits_asks_first(demo):
    folder, url, browser = demo
    for edit in (False, True):
        asked: list[str] = []
        page = open_page(browser, url, "editor_page")
        page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))
        page.get_by_label("extra_args", exact=True).click()  # the page has been used either way
        if edit:
            page.keyboard.press("End")
            page.keyboard.type(" --threads 2")
            page.keyboard.press("Enter")
            settle(page, 'text=Pending:')
        with contextlib.suppress(Exception):  # a dismissed prompt leaves the navigation hanging
            page.goto("about:blank", timeout=5_000)
        assert asked == (["beforeunload"] if edit else []), (edit, asked)
        assert (page.url == "about:blank") != edit  # dismissed: the page and its edits stay
        page.close()


def test_ctrl_s_saves_and_escape_discards(demo):
    folder, url, browser = demo
    page = open_page(browser, url, "editor_page")
    pick_model(page, LLAMA)
    page.get_by_role("tab", name="Display & metadata").click()
    type_into(page, "display name", " by keyboard")  # no Enter: Ctrl+S must commit what is typed
    page.keyboard.press("Control+s")
    settle(page, 'text=No changes.')  # it may show already before the save's run: the file is what counts
    saved = wait_for(lambda: (name := Registry(folder).entry(LLAMA)["display_name"]).endswith(" by keyboard") and name,
                     what="saved by Ctrl+S")
    type_into(page, "display name", " and more")
    page.keyboard.press("Enter")
    settle(page, 'text=Pending:')
    page.keyboard.press("Escape")
    settle(page, 'text=No changes.')
    assert page.get_by_label("display name", exact=True).input_value() == saved
    assert Registry(folder).entry(LLAMA)["display_name"] == saved
    page.close()


def color_pixels(png: bytes, colors: dict[str, str]) -> dict[str, int]:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    wanted = {tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)): cls for cls, color in colors.items()}
    counts = dict.fromkeys(colors, 0)
    for count, rgb in image.getcolors(maxcolors=1 << 20):
        if rgb in wanted:
            counts[wanted[rgb]] += count
    return counts


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_in_light_and_dark_with_dark_layer_cells(demo, scheme):
    folder, url, browser = demo
    page = open_page(browser, url, scheme=scheme)
    settle(page, 'table.mr-models td')
    page.mouse.move(0, 0)
    table = page.locator(".mr-models-frame").screenshot()
    dark = color_pixels(table, {cls: DARK_LAYER_COLORS[cls] for cls in ("discovered", "curated")})
    light = color_pixels(table, {cls: LAYER_COLORS[cls][1] for cls in ("discovered", "curated")})
    shown, hidden = (dark, light) if scheme == "dark" else (light, dark)
    assert min(shown.values()) > 300 and max(hidden.values()) == 0, (scheme, shown, hidden)
    titles = page.locator('[data-testid="stSidebarNavLink"] [data-testid="stMarkdownContainer"]').all_inner_texts()
    assert len(titles) >= 10 and titles[0] == "Models", titles  # every page the sidebar lists
    for title in titles:
        if title != "Models":
            navigate(page, title)
        drawn(page)
        name = title.lower().replace(" & ", "-").replace(" ", "-")
        screenshot(page, f"polish-{name}-{scheme}")
    page.close()


@pytest.mark.parametrize("width", [1280, 1920])
def test_no_button_is_clipped(demo, width):
    folder, url, browser = demo
    page = open_page(browser, url, "editor_page", width=width)
    drawn(page)
    clipped = page.evaluate("""() => [...document.querySelectorAll(
            '[data-testid="stMain"] button[data-testid^="stBaseButton"]')]
        .filter(b => b.offsetParent !== null && !b.closest('[data-testid="stCode"]'))  // the copy icon shows on hover
        .filter(b => {  // clipped: its text overflows, or a column cuts it (its edges are not on top there)
            b.scrollIntoView({block: "center", inline: "center"});
            const r = b.getBoundingClientRect(), y = r.top + r.height / 2;
            const seen = [r.left + 2, r.right - 2].every(x => b.contains(document.elementFromPoint(x, y)));
            return !seen || b.scrollWidth > b.clientWidth + 1 || r.width < 28;
        })
        .map(b => b.innerText || b.getAttribute('aria-label') || b.outerHTML.slice(0, 80))""")
    assert clipped == [], clipped
    page.close()


def test_a_conflict_lists_the_field_that_differs_with_a_choice(demo):
    folder, url, browser = demo
    page = open_page(browser, url, "editor_page")
    pick_model(page, LLAMA)
    page.get_by_role("tab", name="Generation").click()
    field = page.get_by_label("temperature", exact=True)
    field.fill("0.2")
    field.press("Enter")
    settle(page, 'text=Pending:')
    Registry(folder).set_value(LLAMA, "generation_defaults.temperature", 0.9)  # another window saves first
    page.get_by_role("button", name="Save", exact=True).click()
    settle(page, "text=These fields differ")
    choices = page.locator('[data-testid="stRadio"]').filter(has_text="on disk:")
    assert choices.count() == 1 and "mine: 0.2" in choices.inner_text() and "on disk: 0.9" in choices.inner_text()
    drawn(page)
    screenshot(page, "polish-editor-conflict")
    choices.get_by_text("on disk: 0.9").click()
    settle(page)
    page.get_by_role("button", name="Save with these choices").click()
    settle(page, "text=No changes.")
    assert Registry(folder).entry(LLAMA)["generation_defaults"]["temperature"] == 0.9
    page.close()


def test_the_models_table_scrolls_sideways_under_a_frozen_name_column(demo):
    from PIL import Image, ImageChops

    folder, url, browser = demo
    page = open_page(browser, url)
    settle(page, 'table.mr-models td')
    drawn(page)
    table = page.locator(".mr-models-frame")
    box = table.bounding_box()
    before = Image.open(io.BytesIO(table.screenshot())).convert("RGB")
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + 60)
    page.mouse.wheel(600, 0)
    page.wait_for_timeout(800)
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)
    after = Image.open(io.BytesIO(table.screenshot())).convert("RGB")
    name_column = (0, 0, 185, before.height - 20)  # the pinned names
    rest = (400, 0, before.width - 20, before.height - 20)
    assert ImageChops.difference(before.crop(name_column), after.crop(name_column)).getbbox() is None
    assert ImageChops.difference(before.crop(rest), after.crop(rest)).getbbox() is not None  # it did scroll
    page.close()
