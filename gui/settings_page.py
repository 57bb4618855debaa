"""Settings & status: config dir, profile, model roots and rescan, the proxy's status, validation warnings."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from modelreg.discovery.scan import default_roots
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.jobs import Job
from modelreg.settings import Settings, save_setting
from modelreg.views import editor as editing

st.title("Settings & status")
reg = services.registry()

st.subheader("Registry")
st.markdown(f"Config dir: {md(reg.config_dir, code=True)}")
profiles = editing.profiles_of(reg)
default = services.default_profile()
options = ([None] if default is None else []) + profiles
if options:
    current = services.profile()
    st.selectbox("Active profile (this session)", options, index=options.index(current) if current in options else 0,
                 format_func=lambda p: p or "none", key="profile_choice",
                 on_change=lambda: st.session_state.update({services.PROFILE_KEY: st.session_state.profile_choice}))
    st.caption(f"Default from settings / $MODELREG_PROFILE: {md(default or 'none', code=True)}. Saves write the "
               "merged snapshot for the profile chosen here.")
    if current != default and st.button(f"Make {md(current or 'none', code=True)} the default profile",
                                        key="profile_default"):
        save_setting(reg.config_dir, "active_profile", current)  # the proxy takes it when it is restarted
        st.rerun()

st.subheader("Models on disk")
roots = default_roots(reg.settings)
st.markdown("Roots scanned: " + (", ".join(md(r, code=True) for r in roots) or "none found") +
            f"  \n(settings `model_roots`: {', '.join(md(r, code=True) for r in reg.settings.model_roots) or 'none'})")
scan_job = services.jobs().latest("scan", str(reg.config_dir))
if st.button("Rescan", key="rescan", disabled=scan_job is not None and scan_job.running):
    services.start_rescan()
    st.rerun()


def scanned(job: Job) -> None:
    if job.result is None:
        st.error(f"Scan failed: {md(job.error)}")
    else:
        result = job.result
        st.success(f"Scan found {len(result.models)} model(s); {len(result.stubs)} new stub(s), "
                   f"{len(result.missing)} missing, {len(result.problems)} problem(s).")


if scan_job is not None:
    widgets.job_panel(scan_job.id, scanned)

st.subheader("Proxy")
admin = services.proxy()
st.markdown(f"URL: {md(admin.url, code=True)} · admin token from {md(admin.token_source, code=True)}")
status, problem = services.proxy_status()
if status is None:
    st.warning(md(problem))
else:
    a, b, c = st.columns(3)
    a.metric("serves revision", status.get("revision", "")[:12])
    b.metric("models", status.get("models", "-"))
    c.metric("running backends", len(status.get("backends") or []))
    snap = reg.snapshot()
    if status.get("revision") == snap.revision:
        st.success(f"The proxy serves the snapshot on disk (`{snap.revision[:12]}`), loaded "
                   f"{md(status.get('loaded_at'))}.")
    else:
        st.warning(f"The proxy serves {md(str(status.get('revision'))[:12], code=True)}; the snapshot on disk is "
                   f"`{snap.revision[:12]}`.")
    last = status.get("last_reload") or {}
    if last:
        st.caption(f"last reload: {md(last.get('at'))} by {md(last.get('source'))}, "
                   + ("ok" if last.get("ok") else f"refused: {md(last.get('error'))}"))
    backends = status.get("backends") or []
    if backends:
        st.dataframe(pd.DataFrame([{"name": b["name"], "pid": b.get("pid"), "port": b.get("port"),
                                    "ready": b.get("ready"), "stale": b.get("stale_reason") or "",
                                    "started": b.get("started_at"), "argv": " ".join(b.get("argv") or [])}
                                   for b in backends]), hide_index=True, width="stretch")
    if st.button("Reload the proxy now", key="proxy_reload"):
        widgets.save_then_reload(reg.rebuild)
        st.rerun()
widgets.show_report()

st.subheader("Validation")
report = reg.validate()
if report.ok and not report.warnings:
    st.success("Both layers validate; no warnings.")
for error in report.errors:
    st.error(md(error))
for warning in report.warnings:
    st.warning(md(warning))

with st.expander("All settings (settings.json, profile overrides applied)"):
    st.dataframe(pd.DataFrame([{"setting": key, "value": json.dumps(getattr(reg.settings, key)),
                                "help": info.description} for key, info in Settings.model_fields.items()]),
                 hide_index=True, width="stretch")
