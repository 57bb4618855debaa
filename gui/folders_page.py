"""Model folders: the roots scans search (add with a folder picker, remove), Rescan, and "scan this folder" with a
dry run that shows what would be added, updated or marked missing before anything is written."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from modelreg.discovery.scan import ScanResult, default_roots
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.jobs import Job
from modelreg.views.messages import in_gui

ss = st.session_state
st.title("Model folders")
reg = services.registry()
widgets.show_setting_outcome()

st.subheader("Model roots")
roots = list(reg.settings.model_roots)
if not roots:
    st.info("No model roots: add a folder below (the Hugging Face cache and Ollama's store are scanned anyway).",
            icon=":material/folder_open:")
for index, root in enumerate(roots):
    path_col, remove_col = st.columns([8, 1], vertical_alignment="center")
    path_col.markdown(md(root, code=True) + ("" if Path(root).expanduser().is_dir() else " · **folder not found**"))
    remove_col.button("Remove", key=f"root_remove:{index}", on_click=widgets.write_setting,
                      args=("model_roots", [r for r in roots if r != root]))

with st.expander("Add a folder", expanded=not roots):
    ss.setdefault("picker_path", str(Path.home()))
    st.text_input("Folder", key="picker_path", help="type a path, or walk there with the list below")
    here = Path(ss.picker_path).expanduser()
    children = sorted(p.name for p in here.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if here.is_dir() else []
    into_col, up_col = st.columns([4, 1], vertical_alignment="bottom")
    into = into_col.selectbox("Subfolders", children, index=None, key=f"picker_into:{here}",
                              placeholder=f"{len(children)} subfolder(s): open one" if here.is_dir()
                              else "not an existing folder")
    if into:
        ss.picker_path = str(here / into)
        st.rerun()
    up_col.button("Up", key="picker_up", on_click=lambda: ss.update(picker_path=str(here.parent)))
    add_col, scan_col = st.columns(2)
    add_col.button("Add as a model root", key="root_add", type="primary",
                   on_click=widgets.write_setting, args=("model_roots", [*roots, ss.picker_path]))
    scan_col.button("Scan this folder (dry run)", key="scan_folder",
                    on_click=lambda: services.start_rescan([ss.picker_path], dry_run=True))

st.subheader("Scan")
scan_roots = default_roots(reg.settings)
st.caption("A scan reads the roots " + (", ".join(md(r, code=True) for r in scan_roots) or "(none exist)") +
           " and writes facts only: curated configuration is never touched.")
scan_job = services.jobs().latest("scan", str(reg.config_dir))
busy = scan_job is not None and scan_job.running
preview_col, rescan_col = st.columns(2)
preview_col.button("Preview a rescan (dry run)", key="rescan_dry", disabled=busy or not scan_roots,
                   on_click=lambda: services.start_rescan(None, dry_run=True))
rescan_col.button("Rescan", key="rescan", type="primary", disabled=busy or not scan_roots,
                  on_click=lambda: services.start_rescan(None))
request = ss.get(services.SCAN_REQUEST_KEY) or {}


def scanned(job: Job) -> None:
    result: ScanResult | None = job.result
    if result is None:
        st.error(f"Scan failed: {md(in_gui(job.error))}")
        return
    dry = request.get("job") == job.id and request.get("dry_run")
    counts = {status: sum(m["status"] == status for m in result.models)
              for status in ("new", "updated", "returned", "unchanged")}
    changed = counts["updated"] + counts["returned"]
    what = (f"{counts['new']} to add, {changed} to update, {len(result.missing)} to mark missing" if dry else
            f"{counts['new']} added, {changed} updated, {len(result.missing)} marked missing, "
            f"{len(result.stubs)} new stub(s)")
    if not result.models and not result.missing:
        st.warning(f"No model found in {md(', '.join(result.roots)) or 'the roots'}"
                   + (f"; {len(result.problems)} problem(s)" if result.problems else ""))
    else:
        (st.info if dry else st.success)(("Dry run, nothing written: " if dry else "Scan done: ") + what)
    rows = [{"change": m["status"], "model": m["name"], "format": m["format"], "path": m["path"]}
            for m in result.models] + [{"change": "missing", "model": n, "format": "", "path": ""}
                                       for n in result.missing]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key=f"scan_rows:{job.id}")
    for problem in result.problems:
        st.warning(md(in_gui(problem)))
    if dry and st.button("Apply this scan", key="scan_apply", type="primary"):
        services.start_rescan(request.get("paths"))
        st.rerun(scope="app")  # this runs inside the job panel's fragment: the whole page shows the new job


if scan_job is not None:
    widgets.job_panel(scan_job.id, scanned)
