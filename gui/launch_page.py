"""Launch test: the exact argv first, the backend's log live while it starts, then the answer or a diagnosis."""
from __future__ import annotations

import shlex

import streamlit as st

from core import editing
from core.errors import InvalidRegistry
from core.jobs import Job
from gui import services, widgets

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
if plan is None:
    st.error(problem)
elif plan.argv:
    st.code(shlex.join(plan.argv), language="bash", wrap_lines=True)
else:
    st.code(f"# Ollama daemon at {plan.base_url}: model {plan.ollama_model}, options {plan.ollama_options}", wrap_lines=True)

job = services.jobs().latest("launch-test", name)
running = job is not None and job.running
if st.button("Run launch test", type="primary", key="run_launch", disabled=plan is None or running):
    services.start_launch_test(name)
    st.rerun()


def describe(finished: Job) -> None:
    result = finished.result
    if result is None:
        st.error(f"Launch test did not run: {finished.error}")
        return
    if result.ok:
        st.success(f"{name} answered: {result.reply!r}", icon=":material/check_circle:")
    else:
        st.error(f"{name} failed: {result.error}", icon=":material/error:")
    a, b, c = st.columns(3)
    a.metric("ready after", f"{result.seconds_to_ready:.2f} s" if result.seconds_to_ready is not None else "-")
    b.metric("first response after",
             f"{result.seconds_to_first_response:.2f} s" if result.seconds_to_first_response is not None else "-")
    c.metric("context size", result.context_size or "-")
    if result.argv:
        st.caption("argv used")
        st.code(shlex.join(result.argv), language="bash", wrap_lines=True)
    for finding in result.diagnosis:
        st.warning(f"**{finding['summary']}**  \nchange: {finding['suggestion']}  \nlog: `{finding['evidence']}`")
    if result.log_path:
        st.caption(f"log: `{result.log_path}`")
    if not result.ok and result.log_tail:
        st.code(result.log_tail, language="log", wrap_lines=True)


if job is not None:
    st.subheader(f"Run started {job.elapsed:.0f} s ago" if job.running else "Last run")
    widgets.job_panel(job.id, describe)
