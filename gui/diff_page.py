"""Diff & history: layers side by side per field, the snapshot on disk vs the layers, and curated history."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.errors import InvalidRegistry, RegistryError
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.merge import layer_diff
from modelreg.views import models as view

ALL = "(all models: changed fields only)"
CHANGED_CSS = "background-color: #fff3cd"

st.title("Diff & history")
reg = services.registry()
widgets.show_report()
try:
    merged = services.merged()
except InvalidRegistry as exc:
    widgets.registry_problem(exc)
    st.stop()

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
st.dataframe(table.style.apply(lambda row: [CHANGED_CSS if changed[row.name] else ""] * len(row), axis=1),
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
labels = {i.id: f"{i.saved_at} · {i.reason}" for i in items}
chosen = st.selectbox("Earlier version", list(labels), format_func=labels.get, key="history_item")
try:
    diff = view.history_diff(reg, chosen)
except RegistryError as exc:
    st.error(md(exc))
    st.stop()
st.caption("Restoring makes this version current; the version it replaces is kept in history too.")
st.code(diff or "(identical to the current curated file)", language="diff")
if st.button("Restore this version", key="restore", disabled=not diff):
    widgets.save_then_reload(lambda: reg.restore(chosen))
    st.rerun()
