"""Running backends: what the proxy runs (pid, port, argv, uptime, in-flight requests), stop/unload, restart and a
log tail; refreshed every few seconds."""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import streamlit as st

from modelreg.errors import RegistryError
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.views.running import running_rows

st.title("Running backends")
admin = services.proxy()
st.caption(f"The backends the proxy at {md(admin.url, code=True)} runs. Stopping one frees its GPU memory; the next "
           "request for that model starts it again.")


def act(action: Callable[..., object], *args: Any, done: str) -> None:
    try:
        action(*args)
        services.proxy_changed()
        st.toast(done)
    except RegistryError as exc:
        st.toast(f"Failed: {md(exc)}", icon=":material/error:")


@st.fragment(run_every=3)
def panel() -> None:
    backends = widgets.from_proxy(
        admin.running, "The proxy runs no backend right now: it starts one on the first request for a model.")
    if backends is None:
        return
    rows = running_rows(backends)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="running_table",
                 column_config={"argv": st.column_config.TextColumn(width="large")})
    names = [r["name"] for r in rows]
    chosen = st.selectbox("Backend", names, key="running_choice")
    stop_col, restart_col, all_col = st.columns(3)
    stop_col.button(f"Stop {md(chosen)}", key="running_stop", icon=":material/stop_circle:", on_click=act,
                    args=(admin.unload, chosen), kwargs={"done": f"Stopped {chosen}"})
    restart_col.button(f"Restart {md(chosen)}", key="running_restart", icon=":material/restart_alt:", on_click=act,
                       args=(admin.restart, chosen), kwargs={"done": f"Restarting {chosen}"})
    all_col.button("Stop all", key="running_stop_all", on_click=act, args=(admin.unload,),
                   kwargs={"done": "Stopped every backend"})
    try:
        tail = list(admin.logs(chosen))[-40:]
    except RegistryError as exc:
        tail = [f"(no log: {exc})"]
    st.caption(f"Log tail of {md(chosen, code=True)}")
    st.code("\n".join(tail) or "(empty)", language="log", wrap_lines=True)


panel()
widgets.show_report()
