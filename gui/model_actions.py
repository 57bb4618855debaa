"""What can be done to one model from the Models table and the launch test: open it elsewhere, stop the proxy's
instance, remove it (with a confirmation that names what is deleted)."""
from __future__ import annotations

import streamlit as st

from modelreg.discovery.scan import removal_plan, remove_model
from modelreg.errors import RegistryError
from modelreg.gui import services
from modelreg.gui.text import md
from modelreg.gui.widgets import MODEL_KEY, REPORT_KEY
from modelreg.proxy.client import reload_report
from modelreg.values import human_size

REMOVE_PENDING = "remove_pending"  # the model whose removal dialog is open


def row_actions(name: str, running: bool) -> None:
    """Edit, diff, launch test, stop (when the proxy runs it) and remove, for the selected model."""
    actions = st.container(horizontal=True)  # one block, not five columns: the browser draws it in one go
    if actions.button("Open in editor", key="open_editor", icon=":material/edit:", width="stretch"):
        st.switch_page("editor_page.py")
    if actions.button("Layer diff", key="open_diff", icon=":material/difference:", width="stretch"):
        st.switch_page("diff_page.py")
    if actions.button("Launch test", key="open_launch", icon=":material/rocket_launch:", width="stretch"):
        st.switch_page("launch_page.py")
    if actions.button("Stop", key="row_stop", icon=":material/stop_circle:", disabled=not running, width="stretch",
                      help="stop the backend the proxy runs for this model" if running else "not running in the proxy"):
        stop_backend(name)
    if actions.button("Remove…", key="row_remove", icon=":material/delete:", width="stretch"):
        st.session_state[REMOVE_PENDING] = name
    if st.session_state.get(REMOVE_PENDING) == name:
        remove_dialog(name)


def stop_backend(name: str) -> None:
    """Ask the proxy to unload one backend; the outcome shows as a toast."""
    try:
        services.proxy().unload(name)
        services.proxy_changed()
        st.toast(f"Stopped {md(name)}", icon=":material/stop_circle:")
    except RegistryError as exc:  # unreachable, or the proxy no longer runs it
        st.toast(f"Could not stop {md(name)}: {md(exc)}", icon=":material/error:")


@st.dialog("Remove a model", on_dismiss=lambda: st.session_state.pop(REMOVE_PENDING, None))
def remove_dialog(name: str) -> None:
    reg = services.registry()
    plan = removal_plan(reg, name)
    st.markdown(f"Forget **{md(name)}**'s discovered entry (a later scan of its folder finds it again).")
    delete = st.checkbox(f"Also delete its files: {md(plan['path'], code=True)} ({human_size(plan['size_bytes'] or 0)})"
                         if plan["deletable"] else f"Delete its files (not possible: {md(plan['why_not'])})",
                         key="remove_files", disabled=not plan["deletable"])
    drop = st.checkbox(f"Also remove its curated configuration ({plan['curated_entries']} entr"
                       f"{'y' if plan['curated_entries'] == 1 else 'ies'}; kept in history)",
                       key="remove_curated", disabled=not plan["curated_entries"])
    if delete:
        st.warning(f"This deletes {md(plan['path'], code=True)} ({human_size(plan['size_bytes'] or 0)}) from disk "
                   "for good.")
    if st.button("Remove" + (" and delete files" if delete else ""), type="primary", key="remove_confirm",
                 disabled=not plan["discovered"] and not drop):
        try:
            done = remove_model(reg, name, delete_files=delete, drop_curated=drop)
        except RegistryError as exc:
            st.error(str(exc))
            return
        st.session_state[REPORT_KEY] = reload_report(services.proxy(), reg.snapshot().revision)
        st.session_state.pop(MODEL_KEY, None)
        st.session_state.pop(REMOVE_PENDING, None)
        st.toast(f"Removed {md(name)}" + (f"; deleted {md(done['deleted'])}" if done["deleted"] else ""))
        st.rerun()
