"""Models: every model in one table, each cell colored (and lettered) by the layer its value came from."""
from __future__ import annotations

import math

import streamlit as st

from modelreg.errors import InvalidRegistry
from modelreg.gui import model_actions, services, widgets
from modelreg.gui.models_table import models_table, summary
from modelreg.views import models as view

st.title("Models")
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

search, filters = st.columns([3, 1], vertical_alignment="bottom")
text = search.text_input("Search", key="f_text", placeholder="name, quantization, argument ...")
chosen = [st.session_state.get(key) for key in ("f_backend", "f_format", "f_status")]
resorted = st.session_state.get("f_sort", "name") != "name" or st.session_state.get("f_desc", False)
active = sum(bool(values) for values in chosen) + resorted
# A popover draws its widgets only when opened: the page's first view stays light.
with filters.popover(f"Filter & sort ({active})" if active else "Filter & sort", width="stretch"):
    backends = st.multiselect("Backend", view.choices(all_rows, "backend"), key="f_backend")
    formats = st.multiselect("Format", view.choices(all_rows, "format"), key="f_format")
    statuses = st.multiselect("Status", list(view.STATUSES), key="f_status")
    sort_by = st.selectbox("Sort by", list(view.COLUMNS), key="f_sort")
    descending = st.toggle("Descending", key="f_desc")
    page_size = st.selectbox("Rows per page", [50, 100, 250, 500], key="f_page_size")
rows = view.sort_rows(view.filter_rows(all_rows, backends, formats, statuses, text), sort_by, descending)
names = [r.name for r in rows]


def turn_to(name: str) -> None:
    """Show the page of the table that holds `name` (the reader picked it)."""
    st.session_state["f_page"] = names.index(name) // page_size + 1


@st.fragment
def table() -> None:
    """Paging and picking a model rerun only this fragment, so the rest of the page does not pay for the table."""
    if not rows:
        st.info("No model matches the filters.")
        return
    pages = max(1, math.ceil(len(rows) / page_size))
    picker, pager = st.columns([3, 1], vertical_alignment="bottom")
    with picker:
        name = widgets.model_picker(names, key="models_picker", on_pick=turn_to)
    page = pager.number_input(f"Page (of {pages})", 1, pages, 1, key="f_page") if pages > 1 else 1
    page_rows = rows[(page - 1) * page_size: page * page_size]
    row = next(r for r in rows if r.name == name)
    model_actions.row_actions(row.name, row.name in running)
    st.html(models_table(page_rows, widgets.dark_page(), sort_by, descending, name,
                         summary(rows, len(all_rows), row)))


table()
