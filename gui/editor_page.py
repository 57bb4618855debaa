"""Model editor: facts read-only with their source; curated fields editable, reset, preview argv, save + reload."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.errors import ConflictError
from modelreg.fields import field_kind
from modelreg.gui import services, widgets
from modelreg.values import format_value, parse_value
from modelreg.views import editor as editing
from modelreg.views import models as view

st.title("Model editor")
reg = services.registry()
name = widgets.model_picker([e["name"] for e in reg.snapshot().entries], key="editor_picker")
if name is None:
    st.stop()
profiles = editing.profiles_of(reg)
edit_profile = st.radio("Edit", [None, *profiles], horizontal=True, key="edit_profile",
                        format_func=lambda p: "base curated entry" if p is None else f"profile {p}")

loaded = st.session_state.get("edit_target")
if loaded is None or (loaded.name, loaded.profile) != (name, edit_profile):
    loaded = st.session_state["edit_target"] = editing.load_target(reg, name, edit_profile)
    st.session_state["edit_gen"] = st.session_state.get("edit_gen", 0) + 1
    st.session_state.pop("conflict", None)
target: editing.EditTarget = loaded
gen = st.session_state["edit_gen"]
resets: dict[str, str] = st.session_state.setdefault(f"resets:{gen}", {})


def reload_form() -> None:
    st.session_state.pop("edit_target", None)
    st.session_state.pop("conflict", None)


if target.curated_revision != reg.curated_revision():
    st.warning("The curated file changed on disk since this form was loaded; saving will show both versions.")
    st.button("Reload from disk (discard my edits)", on_click=reload_form, key="reload_top")

states = editing.field_states(target)
keys = {s.spec.path: f"ed:{gen}:{s.spec.path}" for s in states}
for state in states:
    st.session_state.setdefault(keys[state.spec.path], state.text)
extra_path = st.session_state.get(f"extra_path:{gen}", "").strip()


def pending() -> tuple[dict, dict]:
    """The curated changes the form holds now (read from the session, so a click's own callback sees them too)."""
    texts = {path: st.session_state[key] for path, key in keys.items()}
    path = st.session_state.get(f"extra_path:{gen}", "").strip()
    extra = {path: parse_value(st.session_state.get(f"extra_value:{gen}", ""), field_kind(path), path)} if path else {}
    return editing.form_patch(target, texts, {p for p, t in resets.items() if texts.get(p) == t}, extra,
                              services.registry(edit_profile).settings)


changes, errors = pending()
widgets.show_report(stale=bool(changes))
preview = target.merged(changes)
plan, plan_error = editing.launch_preview(preview.entry, services.registry(edit_profile).settings)
notes = editing.field_notes(target, changes, services.registry(edit_profile).settings)


def reset(path: str, key: str) -> None:
    st.session_state[key] = resets[path] = format_value(target.under_value(path), field_kind(path))


facts_col, form_col = st.columns([2, 3], gap="large")
with facts_col:
    st.subheader("Facts (read-only)")
    st.caption("Read from disk by scans and downloads; the editor never writes them.")
    current = target.merged()
    st.dataframe(pd.DataFrame(view.fact_rows(current.entry, current.sources)),
                 hide_index=True, width="stretch", height=520)
with form_col:
    st.subheader("Configuration" + (f" (profile {edit_profile})" if edit_profile else ""))
    for state in states:
        path, key, spec = state.spec.path, keys[state.spec.path], state.spec
        field_col, reset_col = st.columns([6, 1], vertical_alignment="bottom")
        with field_col:
            widgets.field_input(state, key)
        reset_col.button("↺", key=f"reset:{gen}:{path}", on_click=reset, args=(path, key), disabled=not state.in_layer,
                         help="reset to discovered (remove this override)" if not edit_profile
                         else "reset to the base entry (remove this profile override)")
        note = f"from **{state.source or 'unset'}**"
        if state.discovered is not None and state.source != "discovered":
            note += f" · discovered value: `{format_value(state.discovered, spec.kind) or '[]'}`"
        if state.overrides:
            note += " · overrides discovered"
        st.caption(note)
        if path == "backend_config.extra_args" and (parsed := editing.args_preview(st.session_state[key])):
            st.text(f"parsed: {parsed}")
        if path in errors:
            st.error(errors[path])
        for text in notes.get(path, []):
            st.text(f"note: {text}")
        if path == "backend_config.extra_args":
            widgets.launch_command(plan, plan_error)
    with st.expander("Set another field (dotted path = JSON value)"):
        st.text_input("field path", key=f"extra_path:{gen}", placeholder="metadata.notes")
        st.text_input("value", key=f"extra_value:{gen}", placeholder='"any JSON, or plain text"')
        if extra_path in errors:
            st.error(errors[extra_path])


def save(base_revision: str, edits: dict | None = None) -> None:
    """Button callback (runs before the page, so the page then shows the saved state in the same run)."""
    if edits is None:
        edits, problems = pending()
        if problems or not edits:
            return
    def write():
        return reg.apply_curated(name, edits, base_revision=base_revision, profile=edit_profile)

    try:
        if widgets.save_then_reload(write):
            reload_form()
    except ConflictError:
        st.session_state["conflict"] = edits


conflict = st.session_state.get("conflict")
if conflict is not None:
    fresh = editing.load_target(reg, name, edit_profile)
    st.error("Not saved: the curated file changed on disk since this form was loaded. Both versions:")
    mine, theirs = st.columns(2)
    mine.markdown("**Your version**")
    mine.json(target.edited_layer(conflict))
    theirs.markdown(f"**On disk now** (revision `{fresh.curated_revision[:12]}`)")
    theirs.json(fresh.layer() or {"name": name, "(no curated entry)": True})
    again, drop = st.columns(2)
    again.button("Apply my changes on top of the disk version", key="save_over", on_click=save,
                 args=(fresh.curated_revision, conflict))
    drop.button("Discard my changes", key="discard", on_click=reload_form)

st.divider()
pending_text = ", ".join(f"unset {p}" if v is editing.UNSET else f"set {p}" for p, v in changes.items())
st.caption(f"Pending: {pending_text}" if pending_text else "No changes.")
save_col, test_col = st.columns(2)
save_col.button("Save", type="primary", key="save", disabled=bool(errors) or not changes or conflict is not None,
                on_click=save, args=(target.curated_revision,))
if test_col.button("Launch test", key="editor_launch", disabled=plan is None):
    services.start_launch_test(name)
    st.switch_page("launch_page.py")
