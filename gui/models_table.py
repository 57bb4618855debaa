"""The Models table as one HTML element: a summary line, the layer legend and the page's rows, colored by layer."""
from __future__ import annotations

import html

from modelreg.views import models as view

# Widths (px) at least: a wider window widens every column in proportion; long cells show in full on hover.
WIDTHS = {"name": 200, "status": 85, "display name": 110, "backend": 90, "format": 80, "quantization": 80,
          "size GB": 60, "native ctx": 75, "effective ctx": 75, "port": 65, "extra_args": 140, "roles": 80,
          "vision": 50, "tools": 50, "overrides": 80}
CHAR_PX = 7.5  # a generous average width of a character of the table's 14 px font
LABELS = {"native ctx": "native", "effective ctx": "context", "quantization": "quant", "size GB": "GB"}
SELECTED = ' class="selected" aria-selected="true"'


def _colors(dark: bool) -> str:
    rules = []
    for cls in view.LAYER_COLORS:
        background, text = view.layer_color(cls, dark)
        rules.append(f".mr-models td.l-{cls},.mr-chip.l-{cls}{{background:{background};color:{text}}}")
    return "".join(rules)


def _cell(row: view.ModelRow, column: str) -> str:
    cls = row.classes[column]
    text = row.name if column == "name" else view.cell_label(row.values[column], cls)  # names stay copyable: no letter
    # the full value on hover where the column may cut it (every attribute costs the browser's sanitizer time)
    tip = f' title="{html.escape(text)}"' if len(text) * CHAR_PX > WIDTHS[column] - 16 else ""
    return f'<td class="l-{cls}"{tip}>{html.escape(text)}</td>'


def legend() -> str:
    """The layer colors, each with the letter cells carry beside their value (so color is not the only cue)."""
    return "".join(f'<span class="mr-chip l-{cls}">{view.LAYER_CUES.get(cls, "")} {html.escape(text)}</span>'
                   for cls, (text, _) in view.LAYER_COLORS.items() if cls != "derived")


def summary(rows: list[view.ModelRow], total: int, selected: view.ModelRow) -> str:
    """The line above the table: how many models the filters list, their size on disk, and the selected model."""
    return (f"{len(rows)} of {total} models · {view.total_size_gb(rows):,.2f} GB on disk for those listed"
            f" · <b>Selected:</b> <code>{html.escape(selected.name)}</code>,"
            f" status <b>{html.escape(selected.status)}</b>"
            + (f": {html.escape(selected.problem)}" if selected.problem else ""))


# A plain table draws in a fraction of Streamlit's data grid's time (~0.6 s a visit with 2,000 models), and one
# element instead of three saves the browser two renders of the page.
def models_table(rows: list[view.ModelRow], dark: bool, sort_by: str, descending: bool, selected: str | None,
                 summary_html: str) -> str:
    """`summary_html` (from `summary()`), the legend and the page's rows as a table (every value escaped: registry
    strings are text, never markup)."""
    arrow = " ▼" if descending else " ▲"
    columns = "".join(f'<col style="width:{width}px">' for width in WIDTHS.values())
    head = "".join(f'<th title="column: {html.escape(column)}">'
                   f"{html.escape(LABELS.get(column, column))}{arrow if column == sort_by else ''}</th>"
                   for column in WIDTHS)
    body = "".join(
        f'<tr data-model="{html.escape(row.name)}"{SELECTED if row.name == selected else ""}>'
        + "".join(_cell(row, column) for column in WIDTHS) + "</tr>"
        for row in rows)
    return (f"<style>{_colors(dark)}</style><p class=\"mr-summary\">{summary_html}</p>"
            f'<p class="mr-legend{" mr-dark" if dark else ""}">{legend()}</p>'
            "<p class=\"mr-note\">Each cell's color and letter say which layer its value came from; <em>overrides</em> "
            "lists the fields where your curated value replaces a different discovered one.</p>"
            f'<div class="mr-models-frame"><table class="mr-models{" mr-dark" if dark else ""}" '
            f'style="width:max(100%, {sum(WIDTHS.values())}px)"><colgroup>{columns}</colgroup>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
