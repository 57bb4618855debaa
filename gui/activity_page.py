"""Activity: what each request through the proxy did (tokens, speed, time to first token, cancelled), refreshed every
few seconds, with each model's tokens per second over time."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.views.activity import activity_rows, activity_summary, speed_points

st.title("Activity")
admin = services.proxy()
st.caption(f"Requests through the proxy at {md(admin.url, code=True)}, newest first (the proxy keeps the last "
           "`activity_limit`; all of them are in `activity.jsonl` beside the backend logs).")


@st.fragment(run_every=3)
def panel() -> None:
    records = widgets.from_proxy(admin.activity, "No request has gone through the proxy yet.")
    if records is None:
        return
    summary = activity_summary(records)
    for column, (label, value) in zip(st.columns(len(summary)), summary.items()):
        column.metric(label, "-" if value is None else value)
    points = speed_points(records)
    if points:
        st.line_chart(pd.DataFrame(points), x="time", y="tokens/s", color="model", height=260)
    st.dataframe(pd.DataFrame(activity_rows(records)), hide_index=True, width="stretch", key="activity_table")


panel()
