"""Hosts: every GPU host's proxy (reachable, revision, models, running backends) and the LiteLLM config over them."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.errors import RegistryError
from modelreg.gui import services
from modelreg.hosts.litellm import litellm_yaml
from modelreg.hosts.status import hosts_status, require_reachable

st.title("Hosts")
reg = services.registry()
hosts = reg.settings.hosts
if not hosts:
    st.info('No hosts yet: add them to the `hosts` setting in `settings.json`, e.g. `{"hosts": {"gpu-b": {"url": '
            '"http://gpu-b:8100", "profile": "a6000"}}}`; each host runs its own `modelreg proxy`.')
    st.stop()

st.button("Refresh", key="hosts_refresh")  # a click reruns the page, which asks every host again
statuses = hosts_status(reg.settings, reg.config_dir)
st.dataframe(pd.DataFrame([s.row() for s in statuses]), hide_index=True, width="stretch")

st.subheader("LiteLLM gateway config")
st.caption("`modelreg export litellm --out litellm.yaml` writes the same; start LiteLLM with "
           "`litellm --config litellm.yaml` and restart it after a new export (it reads the file when it starts).")
try:
    st.code(litellm_yaml(require_reachable(statuses), hosts), language="yaml")  # the code block has a copy button
except RegistryError as exc:
    st.warning(f"No config while a host is down or the hosts disagree: {exc}")
