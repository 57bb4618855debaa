"""Models: every model in one table, each cell colored by the layer its value came from."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from modelreg.errors import InvalidRegistry
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.views import models as view

st.title("Models")
widgets.legend()
st.caption("Cell colors say which layer a value came from. The darker green marks a curated value that replaces a "
           "different discovered value; the *overrides* column lists those fields.")
status, _ = services.proxy_status()
try:
    all_rows = services.rows(services.running_names(status))
except InvalidRegistry as exc:
    widgets.registry_problem(exc)
    st.stop()

left, mid, right, search = st.columns([1, 1, 1, 2])
backends = left.multiselect("Backend", view.choices(all_rows, "backend"), key="f_backend")
formats = mid.multiselect("Format", view.choices(all_rows, "format"), key="f_format")
statuses = right.multiselect("Status", list(view.STATUSES), key="f_status")
text = search.text_input("Search", key="f_text", placeholder="name, quantization, argument ...")
sort_col, order, size_col = st.columns([2, 1, 1])
sort_by = sort_col.selectbox("Sort by", list(view.COLUMNS), key="f_sort")
descending = order.toggle("Descending", key="f_desc")
page_size = size_col.selectbox("Rows per page", [50, 100, 250, 500], index=1, key="f_page_size")
rows = view.sort_rows(view.filter_rows(all_rows, backends, formats, statuses, text), sort_by, descending)

NUMERIC = {"size GB": "Float64", "native ctx": "Int64", "effective ctx": "Int64", "port": "Int64"}


def frame(page_rows: list[view.ModelRow]) -> pd.io.formats.style.Styler:
    values = pd.DataFrame([r.values for r in page_rows], columns=list(view.COLUMNS))
    for column in values.columns:
        if column in NUMERIC:
            values[column] = pd.to_numeric(values[column], errors="coerce").astype(NUMERIC[column])
        else:
            values[column] = values[column].astype(object).where(values[column].notna(), "")
    css = pd.DataFrame([[view.cell_css(r.classes[c]) for c in view.COLUMNS] for r in page_rows],
                       columns=list(view.COLUMNS))
    return values.style.apply(lambda _: css, axis=None).format(na_rep="", precision=2)


@st.fragment
def table() -> None:
    """Paging and row selection rerun only this fragment, so the rest of the page does not pay for the table."""
    pages = max(1, math.ceil(len(rows) / page_size))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="f_page") if pages > 1 else 1
    page_rows = rows[(page - 1) * page_size: page * page_size]
    st.caption(f"{len(rows)} of {len(all_rows)} models")
    if not page_rows:
        st.info("No model matches the filters.")
        return
    event = st.dataframe(frame(page_rows), key="models_table", hide_index=True, on_select="rerun",
                         selection_mode="single-row", height=min(38 + 35 * len(page_rows), 720),
                         )
    chosen = event.selection.rows if event else []
    if chosen and chosen[0] < len(page_rows):
        st.session_state[widgets.MODEL_KEY] = page_rows[chosen[0]].name
    name = st.session_state.get(widgets.MODEL_KEY)
    row = next((r for r in all_rows if r.name == name), None)
    if row is not None:
        st.markdown(f"**Selected:** {md(name, code=True)} · status **{md(row.status)}**"
                    + (f": {md(row.problem)}" if row.problem else ""))
        edit, diff, launch = st.columns(3)
        if edit.button("Open in editor", key="open_editor"):
            st.switch_page("editor_page.py")
        if diff.button("Layer diff", key="open_diff"):
            st.switch_page("diff_page.py")
        if launch.button("Launch test", key="open_launch"):
            st.switch_page("launch_page.py")


table()
