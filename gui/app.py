"""modelreg's GUI: the navigation over the page modules (`modelreg gui`, or `make run` on the demo registry)."""
from pathlib import Path

import streamlit as st

from modelreg.gui import services

st.set_page_config(page_title="modelreg", page_icon=":material/dataset:", layout="wide")

HERE = Path(__file__).parent
sections = {
    "Registry": [
        st.Page("models_page.py", title="Models", icon=":material/table:", default=True),
        st.Page("editor_page.py", title="Model editor", icon=":material/edit:"),
        st.Page("diff_page.py", title="Diff & history", icon=":material/difference:"),
    ],
    "Run": [st.Page("launch_page.py", title="Launch test", icon=":material/rocket_launch:")],
}
if (HERE / "download_page.py").exists():  # the download wizard (issue 7) plugs in here
    sections["Add models"] = [st.Page("download_page.py", title="Download", icon=":material/download:")]
sections["System"] = [st.Page("settings_page.py", title="Settings & status", icon=":material/settings:")]
sections["System"].append(st.Page("hosts_page.py", title="Hosts", icon=":material/dns:"))

with st.sidebar:
    st.caption(f"config dir `{services.config_dir()}`  \nprofile `{services.profile() or 'none'}`")
st.navigation(sections).run()
