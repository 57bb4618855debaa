"""Diff & history: layers side by side per field, the snapshot on disk vs the layers, and curated history."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.errors import RegistryError
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.merge import layer_diff
from modelreg.views import models as view
from modelreg.views.messages import in_gui

ALL = "(all models: changed fields only)"
# Rose: none of the layer legend's colors (the status column says it too); text colors set for light and dark pages.
CHANGED_CSS = {False: "background-color: #f8d7da; color: #1f2328", True: "background-color: #5c2a30; color: #e6edf3"}

st.title("Diff & history")
reg = services.registry()
widgets.show_report()
merged = widgets.merged_or_stop()

st.subheader("Layers per field")
names = [e["name"] for e in merged.entries]
scope = st.radio("Show", ["selected model", ALL], horizontal=True, key="diff_scope")
if scope == ALL:
    rows = layer_diff(reg.discovered_entries(), reg.curated_entries(), merged, reg.profile, changed_only=True)
else:
    name = widgets.model_picker(names, key="diff_picker")
    rows = layer_diff(reg.discovered_entries(), reg.curated_entries(), merged, reg.profile, [name] if name else [])
profile_column = f"profile {reg.profile}" if reg.profile else "profile (none active)"
table = pd.DataFrame([{"model": r.name, "field": r.field, "discovered": view.cell_text(r.discovered),
                       "curated": view.cell_text(r.curated), profile_column: view.cell_text(r.profile),
                       "merged": view.cell_text(r.merged), "from": r.source or "", "status": r.status} for r in rows],
                     columns=["model", "field", "discovered", "curated", profile_column, "merged", "from", "status"])
if scope != ALL:
    table = table.drop(columns="model")
changed = [r.changed for r in rows]
st.caption("Highlighted: fields the curated layer (or the profile) decides differently from disk: "
           "status overridden or curated-only.")
changed_css = CHANGED_CSS[widgets.dark_page()]
st.dataframe(table.style.apply(lambda row: [changed_css if changed[row.name] else ""] * len(row), axis=1),
             hide_index=True, width="stretch", key="diff_table")

st.subheader("Snapshot on disk vs layers")
snapshot = reg.snapshot()
if snapshot.revision == merged.revision:
    st.success(f"The snapshot `{reg.snapshot_path.name}` is up to date (revision `{merged.revision[:12]}`).")
else:
    drift = view.snapshot_drift(snapshot.entries, merged.entries)
    st.warning(f"The snapshot on disk (revision `{snapshot.revision[:12]}`) is stale: a fresh merge of the layers "
               f"gives `{merged.revision[:12]}`; {len(drift)} field(s) differ.")
    st.dataframe(pd.DataFrame([{k: view.cell_text(v) for k, v in d.items()} for d in drift]), hide_index=True,
                 width="stretch", key="drift_table")
    if st.button("Rebuild the snapshot now", key="rebuild"):
        widgets.save_then_reload(reg.rebuild)
        st.rerun()

st.subheader("Curated history")
items = reg.history_items()
if not items:
    st.info("No earlier curated versions yet: every save keeps the version it replaced here.")
    st.stop()
labels = view.history_labels(items)
chosen = st.selectbox("Earlier version", list(labels), format_func=lambda item: labels[item], key="history_item")
if chosen is None:
    st.stop()
try:
    diff = view.history_diff(reg, chosen)
except RegistryError as exc:
    st.error(md(in_gui(exc)))
    st.stop()
st.caption("What restoring this version would change in the curated file (the version it replaces is kept in "
           "history too):")
st.code(diff or "(identical to the current curated file)", language="diff")


PENDING = "restore_pending"  # the item whose confirmation is open (kept across the dialog's own reruns)


@st.dialog("Restore this version?", width="large", on_dismiss=lambda: st.session_state.pop(PENDING, None))
def confirm_restore(item_id: str, change: str) -> None:
    st.markdown(f"**{md(labels[item_id])}**")
    st.code(change, language="diff")
    st.warning("Restoring rewrites the curated file; the proxy reloads it and restarts the backends whose launch "
               "changed.")
    yes, no = st.columns(2)
    if yes.button("Restore", type="primary", key="restore_confirm"):
        st.session_state.pop(PENDING, None)
        widgets.save_then_reload(lambda: reg.restore(item_id))
        st.rerun()
    if no.button("Cancel", key="restore_cancel"):
        st.session_state.pop(PENDING, None)
        st.rerun()


if st.button("Restore this version…", key="restore", disabled=not diff):
    st.session_state[PENDING] = chosen
if st.session_state.get(PENDING) == chosen and diff:
    confirm_restore(chosen, diff)
