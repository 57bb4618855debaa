"""Model editor: tabs of curated fields over read-only facts; an action bar on top; edits kept per model until saved
or discarded (switching model or page loses nothing)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from modelreg.errors import ConflictError
from modelreg.fields import field_kind
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.registry import Snapshot
from modelreg.values import format_value, parse_value
from modelreg.views import editor as editing
from modelreg.views import models as view
from modelreg.views.messages import in_gui

DRAFTS = "editor_drafts"  # (model, profile) -> {"target", "texts", "resets"}: unsaved edits, kept across pages
ss = st.session_state
drafts: dict = ss.setdefault(DRAFTS, {})

st.title("Model editor")
reg = services.registry()
names = [e["name"] for e in reg.snapshot().entries]
unsaved = {name for name, _ in drafts}
pick_col, profile_col = st.columns([3, 2], vertical_alignment="bottom")
with pick_col:
    picked = widgets.model_picker(names, key="editor_picker", marked=unsaved)
if picked is None:
    st.stop()
name: str = picked
profiles = editing.profiles_of(reg)
edit_profile = profile_col.radio(
    "Edit", [None, *profiles], horizontal=True, key="edit_profile",
    format_func=lambda p: "base curated entry" if p is None else f"profile {md(p, code=True)}")
draft = drafts.get((name, edit_profile))

loaded = ss.get("edit_target")
if loaded is None or (loaded.name, loaded.profile) != (name, edit_profile):
    loaded = ss["edit_target"] = draft["target"] if draft else editing.load_target(reg, name, edit_profile)
    ss["edit_gen"] = ss.get("edit_gen", 0) + 1
    ss.pop("conflict", None)
target: editing.EditTarget = loaded
gen = ss["edit_gen"]
resets: dict[str, str] = ss.setdefault(f"resets:{gen}", dict(draft["resets"]) if draft else {})
states = editing.field_states(target)
by_path = {s.spec.path: s for s in states}
keys = {path: f"ed:{gen}:{path}" for path in by_path}
seed = draft["texts"] if draft else {}
for path, key in keys.items():
    text = seed.get(path, by_path[path].text)
    ss.setdefault(key, parse_value(text, "list", "roles") or [] if path == "roles" else text)
priority_keys: dict[str, str] = {}


def form_texts() -> dict[str, str]:
    """The form's text per field (the roles multiselect and the priority numbers as the fields' own text)."""
    texts = {path: ss[key] for path, key in keys.items() if key in ss}
    texts["roles"] = ", ".join(ss.get(keys["roles"]) or [])
    if priority_keys:
        texts["role_priority"] = editing.priority_text({r: ss.get(k) for r, k in priority_keys.items()})
    return texts


def pending() -> tuple[dict, dict, editing.EditCheck]:
    """The curated changes the form holds now (read from the session, so a click's own callback sees them too), their
    errors, and the edited entry's check and plan (each made once)."""
    texts = form_texts()
    path = ss.get(f"extra_path:{gen}", "").strip()
    extra = {path: parse_value(ss.get(f"extra_value:{gen}", ""), field_kind(path), path)} if path else {}
    changes, errors = editing.form_patch(target, texts, {p for p, t in resets.items() if texts.get(p) == t}, extra)
    check = editing.check_edit(target, changes, services.registry(edit_profile).settings)
    return changes, {**check.errors, **errors}, check


def reload_form() -> None:
    drafts.pop((name, edit_profile), None)
    ss.pop("edit_target", None)
    ss.pop("conflict", None)


def reset(path: str, key: str) -> None:
    ss[key] = resets[path] = format_value(target.under_value(path), field_kind(path))


def save(base_revision: str, edits: dict | None = None) -> None:
    """Button callback (runs before the page, so the page then shows the saved state in the same run)."""
    if edits is None:
        edits, problems, _ = pending()
        if problems or not edits:
            return

    def write() -> Snapshot:
        return reg.apply_curated(name, edits, base_revision=base_revision, profile=edit_profile)

    try:
        if widgets.save_then_reload(write):
            reload_form()
    except ConflictError:
        ss["conflict"] = edits


bar = st.container(border=True)  # the action bar: filled once the form below has been read
if target.curated_revision != services.curated_revision(reg) and ss.get("conflict") is None:  # else the bar says it
    st.warning("The curated file changed on disk since this form was loaded; saving will list the fields that "
               "differ, each with your value and the file's.")
tabs = dict(zip((*editing.GROUPS, "Facts"), st.tabs([*editing.GROUPS, "Facts (read-only)"])))


def draw_field(state: editing.FieldState) -> None:
    path, key = state.spec.path, keys[state.spec.path]
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small")  # the reset button keeps its width
    with row, st.container(width="stretch"):
        if path == "roles":
            options = sorted(set(editing.known_roles(services.merged().entries)) | set(ss.get(key) or []))
            st.multiselect(state.spec.label, options, key=key, help=state.spec.help, accept_new_options=True,
                           placeholder="choose roles or type a new one")
        elif path == "role_priority":
            st.caption("role priority (the highest number wins a role)" if priority_keys else
                       "role priority: choose roles first")
            for (role, pkey), column in zip(priority_keys.items(), st.columns(max(1, len(priority_keys)))):
                column.number_input(f"priority: {md(role)}", step=1, key=pkey, placeholder="none")
        else:
            widgets.field_input(state, key)
    row.button("↺", key=f"reset:{gen}:{path}", on_click=reset, args=(path, key), width="content",
               disabled=not state.in_layer or path in ("roles", "role_priority"),
               help="reset to discovered (remove this override)" if not edit_profile
               else "reset to the base entry (remove this profile override)")
    note = md(state.provenance)
    if state.discovered is not None and state.discovered != state.value:
        note += f" · discovered value: {md(format_value(state.discovered, state.spec.kind) or '[]', code=True)}"
    if state.overrides:
        note += " · overrides discovered"
    st.caption(note)
    if path == "backend_config.extra_args" and (parsed := editing.args_preview(ss[key])):
        st.text(f"parsed: {parsed}")
    if path in errors:
        st.error(md(in_gui(errors[path])))
    for text in notes.get(path, []):
        st.text(f"note: {text}")


current_priority = parse_value(seed.get("role_priority", by_path["role_priority"].text), "json", "priority") or {}
for role in dict.fromkeys([*(ss.get(keys["roles"]) or []), *current_priority]):
    priority_keys[role] = f"ed:{gen}:priority:{role}"
    ss.setdefault(priority_keys[role], current_priority.get(role))
changes, errors, check = pending()
edited = editing.edited_paths(target, form_texts())
dirty = bool(changes or edited)  # a value that does not parse yet is an unsaved edit too
notes = check.notes
WIDE = ("json", "args")  # full-width fields; the others sit two to a row
for group in editing.GROUPS:
    with tabs[group]:
        narrow: list = []
        for state in [s for s in states if s.spec.group == group] + [None]:
            if state is not None and state.spec.kind not in WIDE and state.spec.path != "role_priority":
                narrow.append(state)
                if len(narrow) < 2:
                    continue
            for column, pending_state in zip(st.columns(2), narrow):
                with column:
                    draw_field(pending_state)
            narrow = []
            if state is not None and (state.spec.kind in WIDE or state.spec.path == "role_priority"):
                draw_field(state)
                if state.spec.path == "backend_config.extra_args":
                    command = st.empty()  # the argv preview, filled once every field has been read
        if group == editing.DISPLAY:
            with st.expander("Set another field (dotted path = JSON value)"):
                st.text_input("field path", key=f"extra_path:{gen}", placeholder="metadata.notes")
                st.text_input("value", key=f"extra_value:{gen}", placeholder='"any JSON, or plain text"')
plan, plan_error = check.plan, check.plan_error
with command.container():
    st.caption("The exact command the launcher will run:")
    if plan is None and any(plan_error and plan_error in error for error in errors.values()):
        st.caption("No command while a field above has an error.")  # the error shows once, at its field
    else:
        widgets.launch_command(plan, plan_error)
extra_path = ss.get(f"extra_path:{gen}", "").strip()
with tabs[editing.DISPLAY]:
    if extra_path in errors:
        st.error(md(in_gui(errors[extra_path])))
with tabs["Facts"]:
    st.caption("Read from disk by scans and downloads; the editor never writes them.")
    current = target.current
    st.dataframe(pd.DataFrame(view.fact_rows(current.entry, current.sources)), hide_index=True, width="stretch")

if dirty:
    drafts[(name, edit_profile)] = {"target": target, "texts": form_texts(), "resets": dict(resets)}
else:
    drafts.pop((name, edit_profile), None)

conflict = ss.get("conflict")


def test_unsaved() -> None:
    services.start_launch_test(name, check.edited.entry, edit_profile)


def save_resolved(base_revision: str, edits: dict, clashes: list[editing.FieldConflict]) -> None:
    """Save the form's changes over the disk version, less the fields where the user kept the file's value."""
    keep = {c.path for c in clashes if ss.get(f"conflict:{gen}:{c.path}") == "theirs"}
    save(base_revision, editing.resolve(edits, keep))


with bar:
    widgets.show_report(stale=dirty)
    summary = editing.unsaved_summary(changes, edited)
    line = st.container(horizontal=True, vertical_alignment="center")  # the buttons keep their widths
    with line, st.container(width="stretch"):
        st.markdown(f"**Pending:** {md(summary)}" if summary else "No changes.")
    line.button("Save", type="primary", key="save", disabled=bool(errors) or not changes or conflict is not None,
                on_click=save, args=(target.curated_revision,), help="Ctrl+S")
    line.button("Discard", key="discard_edits", disabled=not dirty, on_click=reload_form, help="Esc")
    if changes:  # a launch plan needs no save: the test runs the form as it is now
        launched = line.button("Launch test (unsaved)", key="editor_launch", disabled=plan is None or bool(errors),
                               on_click=test_unsaved,
                               help="tests the form as it is now, unsaved edits included; Save keeps them")
    else:
        launched = line.button("Launch test", key="editor_launch", disabled=plan is None,
                               on_click=services.start_launch_test, args=(name, None, edit_profile))
    if launched:
        st.switch_page("launch_page.py")
    if errors:
        st.caption(f"Save is disabled while {len(errors)} field(s) have an error: {md(', '.join(errors))}")
    others = sorted(f"{n}" + (f" (profile {p})" if p else "") for n, p in drafts if (n, p) != (name, edit_profile))
    if others:
        st.caption("Unsaved edits kept for: " + md(", ".join(others)))
    if conflict is not None:
        fresh = editing.load_target(reg, name, edit_profile)
        clashes = editing.conflicts(target, fresh, conflict)
        if clashes:
            st.error("Not saved: the curated file changed on disk since this form was loaded. These fields differ; "
                     "choose the value to keep for each:")
        else:
            st.warning("Not saved: the curated file changed on disk since this form was loaded, in fields you did "
                       "not edit. Your changes can be saved over it.")
        for clash in clashes:
            label_col, choice_col = st.columns([1, 3], vertical_alignment="center")
            label_col.markdown(md(clash.path, code=True))
            sides = {"mine": f"mine: {md(editing.conflict_text(clash.mine, clash.path), code=True)}",
                     "theirs": f"on disk: {md(editing.conflict_text(clash.theirs, clash.path), code=True)}"}
            choice_col.radio(clash.path, list(sides), key=f"conflict:{gen}:{clash.path}", horizontal=True,
                             label_visibility="collapsed", format_func=sides.__getitem__)
        again, drop = st.columns(2)
        again.button("Save with these choices" if clashes else "Save my changes over the disk version",
                     key="save_over", type="primary", on_click=save_resolved,
                     args=(fresh.curated_revision, conflict, clashes))
        drop.button("Discard my changes", key="discard", on_click=reload_form)
widgets.page_hooks(unsaved=bool(drafts), shortcuts=True)
