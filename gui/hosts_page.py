"""Hosts: every GPU host's proxy (reachable, revision, models, running backends), the hosts themselves (editable),
and the LiteLLM config over them."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.errors import RegistryError
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.hosts.litellm import litellm_yaml
from modelreg.hosts.status import hosts_status, require_reachable
from modelreg.views.messages import in_gui
from modelreg.views.settings import HOST_COLUMNS, host_rows, hosts_from_rows

st.title("Hosts")
reg = services.registry()
hosts = reg.settings.hosts
widgets.show_setting_outcome()

st.caption("Each host runs its own `modelreg proxy`. One row per host: its name, its proxy's URL without /v1, the "
           "profile it runs, and the names of the variables that hold its API key and admin token. Fill the last "
           "row to add a host; clear a row to remove it.")
rows = [*host_rows(reg.settings), {}]
revision = services.settings_revision()  # the inputs start again from the file after each save
for number, row in enumerate(rows):
    for column, cell in zip(HOST_COLUMNS, st.columns([1, 2, 1, 1, 1])):
        cell.text_input(column, value=row.get(column) or "", key=f"host:{revision}:{number}:{column}",
                        label_visibility="visible" if number == 0 else "collapsed",
                        placeholder="new host" if column == "name" and not row else None)


def save_hosts() -> None:
    table = [{column: st.session_state.get(f"host:{revision}:{number}:{column}") for column in HOST_COLUMNS}
             for number in range(len(rows))]
    try:
        value = hosts_from_rows(table)
    except RegistryError as exc:
        st.session_state[widgets.SETTING_KEY] = ("error", f"Not saved: {in_gui(exc)}")
        return
    widgets.write_setting("hosts", value)


st.button("Save hosts", key="hosts_save", type="primary", on_click=save_hosts)
if not hosts:
    st.stop()

st.subheader("Status")
st.button("Refresh", key="hosts_refresh")  # a click reruns the page, which asks every host again
statuses = hosts_status(reg.settings, reg.config_dir)
st.dataframe(pd.DataFrame([s.row() for s in statuses]), hide_index=True, width="stretch")

st.subheader("LiteLLM gateway config")
st.caption("`modelreg export litellm --out litellm.yaml` writes the same; start LiteLLM with "
           "`litellm --config litellm.yaml` and restart it after a new export (it reads the file when it starts).")
try:
    st.code(litellm_yaml(require_reachable(statuses), hosts), language="yaml")  # the code block has a copy button
except RegistryError as exc:
    st.warning(f"No config while a host is down or the hosts disagree: {md(exc)}")
