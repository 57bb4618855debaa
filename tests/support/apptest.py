"""Driving the GUI in-process through Streamlit's AppTest: open a page, find an editor field, wait for a job."""
from __future__ import annotations

import time
from typing import Callable

from streamlit.testing.v1 import AppTest

from support.gui_servers import REPO

APP = str(REPO / "gui" / "app.py")


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def field(at: AppTest, path: str):
    """The editor's widget for one field path."""
    for widgets in (at.text_input, at.selectbox, at.text_area, at.multiselect):
        for widget in widgets:
            if widget.key and widget.key.startswith("ed:") and widget.key.endswith(":" + path):
                return widget
    raise KeyError(path)


def run_until(at: AppTest, done: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Rerun the page until `done()` (a background job finished), then once more to draw what `done` saw."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; errors: {[e.value for e in at.error]}"
        time.sleep(0.2)
        at.run()
    at.run()
