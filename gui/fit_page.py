"""Fit: per model and profile, weights plus the KV cache of a chosen context against the GPU budget, and the
context applied to curated in one click, where it lives."""
from __future__ import annotations

import streamlit as st

from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.values import human_size
from modelreg.views import editor as editing
from modelreg.views import fit as fitting

st.title("Fit")
st.caption("Estimated from the discovered facts, without a GPU: weights + overhead + KV cache for one sequence of "
           "the chosen context, against GPU memory × utilization (docs/discovery.md, Fit estimate).")
name = widgets.picked_model("fit_picker")
profiles = editing.profiles_of(services.registry())
profile = st.radio("Profile", [None, *profiles], horizontal=True, key="fit_profile",
                   index=([None, *profiles].index(services.profile()) if services.profile() in profiles else 0),
                   format_func=lambda p: "no profile (base settings)" if p is None else f"profile {p}")
reg = services.registry(profile)
entry = reg.entry(name)
base = fitting.fit_at(entry, reg.settings, 1)
st.markdown(f"GPU memory **{reg.settings.gpu_memory}** × utilization **{base['utilization']}** = budget "
            f"**{human_size(base['budget_bytes'])}** · engine {md(base['engine'])}")
if not base.get("known"):
    st.warning(f"No estimate for {md(name, code=True)}: {md(base['reason'])}")
    st.stop()

native = base.get("native_context") or base["max_context"] or 4096
top = base.get("context_cap") or max(native, base["max_context"], 1024)  # the model's (rope-scaled) context
slider_key = f"fit_context:{name}:{profile}"
st.session_state.setdefault(slider_key, min(base.get("configured_context") or native, top))
context = st.slider("Context (tokens)", 256, top, key=slider_key, step=256)
fit = fitting.fit_at(entry, reg.settings, context)
a, b, c, d = st.columns(4)
a.metric("weights", human_size(fit["weights_bytes"]))
b.metric("overhead", human_size(fit["overhead_bytes"]))
c.metric(f"KV cache at {context:,}", human_size(fit["context_kv_bytes"]))
d.metric("total / budget", f"{human_size(fit['used_bytes'])} / {human_size(fit['budget_bytes'])}")
st.progress(min(1.0, fit["used_bytes"] / fit["budget_bytes"]),
            text=f"{fit['used_bytes'] / fit['budget_bytes']:.0%} of the budget")
if fit["fits_context"]:
    st.success(f"Fits: {context:,} tokens leave {human_size(fit['free_bytes'])} free.", icon=":material/check:")
else:
    st.error(f"Does not fit: {human_size(-fit['free_bytes'])} over the budget.", icon=":material/close:")
st.markdown(f"Largest context: **{fit['max_context']:,}** tokens (capped by the {md(base['max_context_cap'])}) · "
            "native context "
            f"**{fit['native_context'] or 'unknown'}** · configured **{fit['configured_context'] or 'none'}**")
flag = fitting.context_flag(entry)
suggested = fit.get("suggested_max_model_len")
if flag and suggested:
    st.info(f"The native context does not fit: suggested `{flag[1]} {suggested}`.")


def apply(value: int) -> None:
    change = fitting.context_change(entry, value)
    widgets.save_then_reload(lambda: reg.apply_curated(name, change, profile=profile))


if flag:
    home = fitting.context_home(entry)  # the one place the context lives, where Apply writes it
    apply_col, suggest_col = st.columns(2)
    apply_col.button(f"Apply {home} {context} to curated" + (f" (profile {md(profile)})" if profile else ""),
                     key="fit_apply", type="primary", on_click=apply, args=(context,))
    if suggested:
        suggest_col.button(f"Apply the suggested {home} {suggested}", key="fit_apply_suggested",
                           on_click=apply, args=(suggested,))
widgets.show_report()
