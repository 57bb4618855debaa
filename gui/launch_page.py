"""Launch test: the exact argv first, the backend's log live while it starts, then the answer or a diagnosis."""
from __future__ import annotations

import streamlit as st

from modelreg.errors import InvalidRegistry
from modelreg.gui import services, widgets
from modelreg.views import editor as editing

st.title("Launch test")
st.caption("Starts the model exactly as the merged registry says, waits until it is ready, asks one question, "
           "stops it. It runs in the background: other clicks and pages do not stop it.")
reg = services.registry()
try:
    names = [e["name"] for e in services.merged().entries]
except InvalidRegistry as exc:
    widgets.registry_problem(exc)
    st.stop()
name = widgets.model_picker(names, key="launch_picker")
if name is None:
    st.stop()

plan, problem = editing.launch_preview(reg.entry(name), reg.settings)
st.subheader("Command")
widgets.launch_command(plan, problem)

job = services.jobs().latest("launch-test", name)
running = job is not None and job.running
if st.button("Run launch test", type="primary", key="run_launch", disabled=plan is None or running):
    services.start_launch_test(name)
    st.rerun()

if job is not None:
    st.subheader(f"Run started {job.elapsed:.0f} s ago" if job.running else "Last run")
    widgets.job_panel(job.id, lambda finished: widgets.launch_outcome(name, finished))
