"""Models: every model in one table, each cell colored (and lettered) by the layer its value came from."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from modelreg.errors import InvalidRegistry
from modelreg.gui import model_actions, services, widgets
from modelreg.gui.text import md
from modelreg.views import models as view

st.title("Models")
widgets.legend()
st.caption("Each cell's color and letter say which layer its value came from; *overrides* lists the fields where "
           "your curated value replaces a different discovered one.")
status, _ = services.proxy_status()
running = services.running_names(status)
try:
    all_rows = services.rows(running)
except InvalidRegistry as exc:
    widgets.registry_problem(exc)
    st.stop()
if not all_rows:
    st.subheader("No models yet: what to do next")
    st.page_link("folders_page.py", label="Add a folder that holds models, and scan it", icon=":material/folder_open:")
    st.page_link("download_page.py", label="Download a model from Hugging Face or Ollama",
                 icon=":material/download:")
    st.markdown("Or bring the models of a llama-swap setup, from a terminal: `modelreg import llama-swap CONFIG.yaml`")
    st.stop()

left, mid, right, search = st.columns([1, 1, 1, 2])
backends = left.multiselect("Backend", view.choices(all_rows, "backend"), key="f_backend")
formats = mid.multiselect("Format", view.choices(all_rows, "format"), key="f_format")
statuses = right.multiselect("Status", list(view.STATUSES), key="f_status")
text = search.text_input("Search", key="f_text", placeholder="name, quantization, argument ...")
sort_col, order, size_col = st.columns([2, 1, 1])
sort_by = sort_col.selectbox("Sort by", list(view.COLUMNS), key="f_sort")
descending = order.toggle("Descending", key="f_desc")
page_size = size_col.selectbox("Rows per page", [50, 100, 250, 500], key="f_page_size")  # each row costs a rerun
rows = view.sort_rows(view.filter_rows(all_rows, backends, formats, statuses, text), sort_by, descending)

# Widths (px) that fit the table in a 1,600 px window beside the sidebar; long cells show in full on hover.
WIDTHS = {"name": 190, "status": 80, "display name": 100, "backend": 75, "format": 75, "quantization": 70,
          "size GB": 60, "native ctx": 60, "effective ctx": 60, "port": 60, "extra_args": 130, "roles": 70,
          "vision": 45, "tools": 45, "overrides": 65}
LABELS = {"native ctx": "native", "effective ctx": "context", "quantization": "quant", "size GB": "GB"}
COLUMN_CONFIG = {column: st.column_config.TextColumn(LABELS.get(column, column), width=width, pinned=column == "name",
                                                     help=f"column: {column}")
                 for column, width in WIDTHS.items()}


def frame(page_rows: list[view.ModelRow]) -> pd.io.formats.style.Styler:
    values = pd.DataFrame([[r.name, *(view.cell_label(r.values[c], r.classes[c]) for c in list(view.COLUMNS)[1:])]
                           for r in page_rows], columns=list(view.COLUMNS))  # names stay copyable: no letter
    dark = widgets.dark_page()
    css = pd.DataFrame([[view.cell_css(r.classes[c], dark) for c in view.COLUMNS] for r in page_rows],
                       columns=list(view.COLUMNS))
    return values.style.apply(lambda _: css, axis=None)


@st.fragment
def table() -> None:
    """Paging and row selection rerun only this fragment, so the rest of the page does not pay for the table."""
    pages = max(1, math.ceil(len(rows) / page_size))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="f_page") if pages > 1 else 1
    page_rows = rows[(page - 1) * page_size: page * page_size]
    st.caption(f"{len(rows)} of {len(all_rows)} models · {view.total_size_gb(rows):,.2f} GB on disk for those listed")
    if not page_rows:
        st.info("No model matches the filters.")
        return
    event = st.dataframe(frame(page_rows), key="models_table", hide_index=True, on_select="rerun",
                         selection_mode="single-row", height=min(38 + 35 * len(page_rows), 720),
                         column_config=COLUMN_CONFIG)
    chosen = event.selection.rows if event else []
    if chosen and chosen[0] < len(page_rows):
        st.session_state[widgets.MODEL_KEY] = page_rows[chosen[0]].name
    name = st.session_state.get(widgets.MODEL_KEY)
    row = next((r for r in all_rows if r.name == name), None)
    if row is not None:
        st.markdown(f"**Selected:** {md(name, code=True)} · status **{md(row.status)}**"
                    + (f": {md(row.problem)}" if row.problem else ""))
        model_actions.row_actions(row.name, row.name in running)


table()
