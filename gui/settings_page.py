"""Settings & status: profile, proxy URL and status, GPU profiles, executables, ports (all through the core's one
settings writer), validation warnings and the migration of legacy files."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.launch.backends import SPECS
from modelreg.settings import DEFAULT, Settings
from modelreg.settings_view import load_settings
from modelreg.views import editor as editing
from modelreg.views.messages import in_gui
from modelreg.views.settings import changed_settings

ss = st.session_state
st.title("Settings & status")
reg = services.registry()
widgets.show_setting_outcome()
write = widgets.write_setting

st.subheader("Registry and profile")
st.markdown(f"Config dir: {md(reg.config_dir, code=True)}")
profiles = editing.profiles_of(reg)
default = services.default_profile()
options = ([None] if default is None else []) + profiles
if options:
    current = services.profile()
    st.selectbox("Active profile (this session)", options, index=options.index(current) if current in options else 0,
                 format_func=lambda p: p or "none", key="profile_choice",
                 on_change=lambda: ss.update({services.PROFILE_KEY: ss.profile_choice}))
    st.caption(f"Default from settings / $MODELREG_PROFILE: {md(default or 'none', code=True)}. Saves write the "
               "merged snapshot for the profile chosen here.")
    if current != default:
        st.button(f"Make {md(current or 'none', code=True)} the default profile", key="profile_default",
                  on_click=write, args=("active_profile", current))

st.subheader("Proxy")
actual = services.proxy_url_mismatch()
if actual:
    st.warning(f"The proxy `modelreg up` started runs at {md(actual, code=True)}, but the `proxy_url` setting says "
               f"{md(reg.settings.proxy_url, code=True)} (a `modelreg proxy` started alone would listen there).")
    st.button(f"Set proxy_url to {md(actual, code=True)}", key="proxy_url_fix", on_click=write,
              args=("proxy_url", actual))
url_col, save_col = st.columns([5, 1], vertical_alignment="bottom")
url_col.text_input("proxy_url", value=reg.settings.proxy_url, key="proxy_url_text",
                   help=Settings.model_fields["proxy_url"].description)
save_col.button("Save URL", key="proxy_url_save", on_click=lambda: write("proxy_url", ss.proxy_url_text.strip()))
admin = services.proxy()
status, problem = services.proxy_status()
if status is None:
    st.warning(f"{md(problem)}. `modelreg up` starts the proxy and the GUI together.")
else:
    snap = reg.snapshot()
    a, b, c = st.columns(3)
    a.metric("serves revision", status.get("revision", "")[:12])
    b.metric("models", status.get("models", "-"))
    c.metric("running backends", len(status.get("backends") or []))
    if status.get("revision") == snap.revision:
        st.success(f"The proxy at {md(admin.url, code=True)} serves the snapshot on disk (`{snap.revision[:12]}`), "
                   f"loaded {md(status.get('loaded_at'))}. Admin token from {md(admin.token_source, code=True)}.")
    else:
        st.warning(f"The proxy serves {md(str(status.get('revision'))[:12], code=True)}; the snapshot on disk is "
                   f"`{snap.revision[:12]}`.")
    if st.button("Reload the proxy now", key="proxy_reload"):
        widgets.save_then_reload(reg.rebuild)
        st.rerun()
widgets.show_report()

st.subheader("Machine")
st.caption("Base settings, or one profile's overrides (empty: the base value applies).")
BASE = "base"
choice = st.segmented_control("Settings for", [BASE, *profiles], default=BASE, key="settings_scope",
                              format_func=lambda p: p if p == BASE else f"profile {md(p)}")
scope = None if choice in (BASE, None) else choice
base = reg.settings if scope is None else services.registry(scope).settings
overrides = load_settings(reg.config_dir).profiles.get(scope or "", {})
tag = scope or "base"
gpu_col, util_col, low_col, high_col = st.columns(4)
gpu_col.text_input("GPU memory", value=base.gpu_memory, key=f"set_gpu:{tag}", help="such as 16GiB or 24GB")
util_col.number_input("GPU utilization", 0.05, 1.0, float(base.gpu_memory_utilization), 0.05,
                      key=f"set_util:{tag}")
low_col.number_input("port range from", 1, 65535, int(base.port_range[0]), key=f"set_low:{tag}")
high_col.number_input("port range to", 1, 65535, int(base.port_range[1]), key=f"set_high:{tag}")
exe_cols = st.columns(len(SPECS) - 1)
backends = [b for b in SPECS if b != "ollama"]
for backend, column in zip(backends, exe_cols):
    column.text_input(f"executable: {backend}", value=base.executables.get(backend, ""), key=f"set_exe:{backend}:{tag}")


def save_machine() -> None:
    values = {"gpu_memory": ss[f"set_gpu:{tag}"].strip(), "gpu_memory_utilization": ss[f"set_util:{tag}"],
              "port_range": [ss[f"set_low:{tag}"], ss[f"set_high:{tag}"]],
              "executables": {b: ss[f"set_exe:{b}:{tag}"].strip() for b in backends}}
    for name, value in changed_settings(base, values).items():
        write(name, value, scope)
        if ss[widgets.SETTING_KEY][0] == "error":
            return


def remove_overrides() -> None:
    for name in list(overrides):
        write(name, DEFAULT, scope)


save_col, reset_col = st.columns(2)
save_col.button("Save machine settings", key="machine_save", type="primary", on_click=save_machine)
if scope and overrides:
    reset_col.button(f"Remove profile {scope}'s overrides ({', '.join(overrides)})", key="machine_reset",
                     on_click=remove_overrides)

st.subheader("Validation")
report = reg.validate()
for error in report.errors:
    st.error(md(in_gui(error)))
if report.ok and not report.warnings:
    st.success("Both layers validate; no warnings.")
if report.warnings:
    with st.expander(f"{len(report.warnings)} warning(s)"):
        st.markdown("\n".join(f"- {md(in_gui(w))}" for w in report.warnings))
migration = reg.migrate(dry_run=True) if report.ok else None
if migration and migration.moves:
    st.info(f"The discovered file holds configuration from the old registry ({len(migration.moves)} value(s)). "
            "Migrating moves it into curated (backups of both files first); the merged snapshot stays the same.")
    with st.expander("Preview of the migration", expanded=True):
        st.dataframe(pd.DataFrame([{"model": m["name"], "field": m["field"], "value": json.dumps(m["value"]),
                                    "action": m["action"]} for m in migration.moves]),
                     hide_index=True, width="stretch", key="migrate_preview")
    if st.button("Migrate", key="migrate", type="primary"):
        widgets.save_then_reload(lambda: (reg.migrate(), reg.snapshot())[1])
        st.rerun()

with st.expander("All settings (settings.json, profile overrides applied)"):
    st.dataframe(pd.DataFrame([{"setting": key, "value": json.dumps(getattr(reg.settings, key)),
                                "help": info.description} for key, info in Settings.model_fields.items()]),
                 hide_index=True, width="stretch")
