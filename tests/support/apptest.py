"""Driving the GUI in-process through Streamlit's AppTest: open a page, find an editor field, wait for a job."""
from __future__ import annotations

import re
import time
from html.parser import HTMLParser
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


class _TableReader(HTMLParser):
    """The Models table's cells from its HTML: each row as column -> (text, layer class)."""

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[str] = []
        self.rows: list[dict[str, tuple[str, str]]] = []
        self.cell: list[str] | None = None
        self.layer = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "th":
            self.columns.append((found.get("title") or "").removeprefix("column: "))
        elif tag == "tr" and "data-model" in found:
            self.rows.append({})
        elif tag == "td":
            self.cell, self.layer = [], (found.get("class") or "").removeprefix("l-")

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            row = self.rows[-1]
            row[self.columns[len(row)]] = ("".join(self.cell), self.layer)
            self.cell = None


def models_table(at: AppTest) -> list[dict[str, tuple[str, str]]]:
    """The Models page's table as drawn (empty when the page shows none)."""
    reader = _TableReader()
    for element in at.html:
        if 'class="mr-models' in element.proto.body:
            reader.feed(element.proto.body)
    return reader.rows


def layer_background(at: AppTest, layer: str) -> str:
    """The background color the Models table's style gives cells of `layer`."""
    body = next(e.proto.body for e in at.html if 'class="mr-models' in e.proto.body)
    found = re.search(rf"\.mr-models td\.l-{layer}\b[^{{]*\{{background:(#[0-9a-f]{{6}})", body)
    assert found, f"no color for {layer}"
    return found.group(1)
