"""modelreg's GUI: the navigation over the page modules (`modelreg gui`, or `modelreg up` / `make run`)."""
from pathlib import Path

import streamlit as st

from modelreg.gui import services, widgets
from modelreg.gui.text import md

HERE = Path(__file__).parent
st.set_page_config(page_title="modelreg", page_icon=str(HERE / "icon.png"), layout="wide")  # local: no CDN

sections = {
    "Registry": [
        st.Page("models_page.py", title="Models", icon=":material/table:", default=True),
        editor := st.Page("editor_page.py", title="Model editor", icon=":material/edit:"),
        st.Page("diff_page.py", title="Diff & history", icon=":material/difference:"),
        st.Page("fit_page.py", title="Fit", icon=":material/memory:"),
    ],
    "Run": [st.Page("launch_page.py", title="Launch test", icon=":material/rocket_launch:"),
            st.Page("running_page.py", title="Running backends", icon=":material/dns:"),
            st.Page("activity_page.py", title="Activity", icon=":material/monitoring:")],
    "Add models": [st.Page("folders_page.py", title="Model folders", icon=":material/folder_open:"),
                   st.Page("download_page.py", title="Download", icon=":material/download:")],
    "System": [st.Page("settings_page.py", title="Settings & status", icon=":material/settings:"),
               st.Page("hosts_page.py", title="Hosts", icon=":material/lan:")],
}

st.html("<style>" + (HERE / "style.css").read_text() + "</style>")
with st.sidebar:
    st.caption(f"config dir {md(services.config_dir(), code=True)}  \n"
               f"profile {md(services.profile() or 'none', code=True)}")
    unsaved = st.session_state.get("editor_drafts")
    if unsaved:
        st.caption(f"● unsaved editor changes: {md(', '.join(sorted({name for name, _ in unsaved})))}")
page = st.navigation(sections)
if unsaved and page.url_path != editor.url_path:  # the editor sets the flags itself, once its form has been read
    widgets.page_hooks(unsaved=True)
page.run()
