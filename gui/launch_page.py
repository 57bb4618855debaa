"""Launch test: the exact argv first, the backend's log live while it starts, then the verdict above the log."""
from __future__ import annotations

import streamlit as st

from modelreg.gui import model_actions, services, widgets
from modelreg.gui.text import md
from modelreg.launch.running.launch_test import UNSAVED
from modelreg.views import editor as editing

st.title("Launch test")
st.caption("Starts the model exactly as the merged registry says, waits until it is ready, asks one question, "
           "stops it. It runs in the background: other clicks and pages do not stop it.")
reg = services.registry()
name = widgets.picked_model("launch_picker")

plan, problem = editing.launch_preview(reg.entry(name), reg.settings)
st.subheader("Command")
widgets.launch_command(plan, problem)

job = services.jobs().latest("launch-test", name)
running = job is not None and job.running
status, _ = services.proxy_status()
in_proxy = name in services.running_names(status)
if in_proxy:
    st.warning(f"{md(name, code=True)} is running in the proxy: its port is taken, so a launch test would fail "
               "with \"already running\". Stop it first (the proxy starts it again on the next request).")


def stop_then_test() -> None:
    model_actions.stop_backend(name)
    services.start_launch_test(name)


run_col, stop_col = st.columns(2)
if in_proxy:
    stop_col.button("Stop it in the proxy, then run the test", type="primary", key="stop_then_launch",
                    disabled=plan is None or running, on_click=stop_then_test)
run_col.button("Run launch test", type="secondary" if in_proxy else "primary", key="run_launch",
               disabled=plan is None or running, on_click=lambda: services.start_launch_test(name))

if job is not None:
    st.subheader(f"Run started {job.elapsed:.0f} s ago" if job.running else "Last run")
    if job.title.endswith(UNSAVED):
        st.info("This run tests the editor's unsaved version (its argv is below); the command above is the saved "
                "one. Save in the editor to keep the edits.", icon=":material/edit_note:")
    widgets.job_panel(job.id, lambda finished: widgets.launch_outcome(name, finished))
