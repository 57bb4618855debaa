"""Download wizard: a Hugging Face repo or an Ollama name to a saved, launch-tested model (steps: views.wizard)."""
from __future__ import annotations

import shlex
from typing import Any, Callable

import pandas as pd
import streamlit as st

from modelreg.errors import RegistryError
from modelreg.gui import services, widgets
from modelreg.gui.text import md
from modelreg.values import human_size
from modelreg.views import editor as editing
from modelreg.views import models as view
from modelreg.views import wizard as wz
from modelreg.views.messages import in_gui

WIZARD_KEY, PROBLEM_KEY = "wizard", "wizard_problem"
STEP_NAMES = dict(zip(wz.STEPS, ("Source", "Download", "Review", "Configure", "Launch test", "Done")))
ss = st.session_state


def start_over() -> None:
    # No endpoint or token: huggingface_hub's own (HF_ENDPOINT or huggingface.co; HF_TOKEN or `hf auth login`).
    ss[WIZARD_KEY], ss[PROBLEM_KEY] = wz.Wizard(services.registry(), services.jobs()), None


def act(action: Callable[..., object], *args: Any) -> None:
    """Button callback (runs before the page is drawn): one wizard action; a refusal is shown at the top."""
    ss[PROBLEM_KEY] = None
    try:
        action(*args)
    except RegistryError as exc:
        ss[PROBLEM_KEY] = str(exc)


def save() -> None:
    act(wizard.save)
    if wizard.report is not None:
        ss[widgets.REPORT_KEY] = wizard.report  # shown as the editor shows its saves


if WIZARD_KEY not in ss:
    start_over()
wizard: wz.Wizard = ss[WIZARD_KEY]
if wizard.step == wz.DOWNLOAD:
    wizard.poll()  # a finished download moves on to the review
elif wizard.step == wz.LAUNCH_TEST:
    wizard.poll_launch_test()  # a passing launch test finishes the wizard

st.title("Download a model")
st.markdown(" → ".join(f"**{name}**" if step == wizard.step else name for step, name in STEP_NAMES.items()))
for message in dict.fromkeys(m for m in (ss.get(PROBLEM_KEY), wizard.step in (wz.SOURCE, wz.DOWNLOAD)
                                          and wizard.error) if m):
    st.error(md(in_gui(message)))

if wizard.step == wz.SOURCE:
    for key, value in (("wz_source", wizard.source or "hf"), ("wz_ref", wizard.ref or ""), ("wz_rev", wizard.revision)):
        ss.setdefault(key, value)  # coming back to this step shows what the wizard holds
    hf = st.radio("Source", wz.SOURCES, key="wz_source", horizontal=True,
                  format_func={"hf": "Hugging Face repo", "ollama": "Ollama model"}.get) == "hf"
    ref_col, rev_col = st.columns([3, 1])
    ref_col.text_input("Repo id (ORG/NAME)" if hf else "Model name (NAME[:TAG])", key="wz_ref",
                       placeholder="Qwen/Qwen2.5-0.5B-Instruct-GGUF" if hf else "llama3.2:1b")
    if hf:
        rev_col.text_input("Revision", key="wz_rev", placeholder="main")
    st.button("Analyse" if hf else "Check name", key="wz_analyse", on_click=lambda: act(
        wizard.analyse, ss.wz_source, ss.wz_ref, ss.get("wz_rev") if ss.wz_source == "hf" else None))
    analysis = wizard.analysis if hf else None
    if analysis is not None:
        st.markdown(f"{md(analysis.repo_id, code=True)} at commit {md(analysis.commit[:12], code=True)}: "
                    f"{len(analysis.files)} files, {human_size(analysis.total_size)}; "
                    f"formats: {md(', '.join(analysis.formats) or 'none')}; "
                    f"config.json: {'yes' if analysis.has_config else 'no'}; "
                    f"tokenizer: {'yes' if analysis.has_tokenizer else 'no'}; "
                    f"chat template: {md(', '.join(analysis.chat_template_sources) or 'none')}")
        if analysis.login_hint():
            st.warning(md(analysis.login_hint()), icon=":material/lock:")
        labels = {v.key: f"{md(v.key)} · {md(v.format)} · {human_size(v.size_bytes)} · "
                         f"{len(v.weight_files)} weight file(s)"
                  + (" · recommended" if v.recommended else "") for v in analysis.variants}
        variant_key = f"wz_variant:{analysis.repo_id}:{analysis.commit}"
        if labels:
            st.radio("Variant", list(labels), index=list(labels).index(wizard.variant or ""), key=variant_key,
                     format_func=lambda key: labels[key], on_change=lambda: act(wizard.choose, ss[variant_key]))
    if wizard.source == ss.wz_source and wizard.ref and (analysis is not None or not hf):
        root = st.text_input("Download into (a models root)", key="wz_root",
                             value=str((wizard.registry.settings.model_roots or [""])[0])) if hf else None
        plan = None
        try:
            plan = wizard.plan(root or None)
        except RegistryError as exc:
            st.error(md(in_gui(exc)))
        if plan:
            st.info(f"{len(plan['files'])} file(s), {plan['size']} into {md(plan['folder'], code=True)}; "
                    f"{plan['free']} free there" if hf else
                    f"Pulls {md(plan['name'], code=True)} through the Ollama daemon at {md(plan['host'])}")
        if plan and not plan.get("fits", True):
            st.error(f"Not enough disk space: {plan['size']} needed, {plan['free']} free; free space or choose "
                     "another models root.")
        st.button(f"Download {md(wizard.ref)}", type="primary", key="wz_download", on_click=act,
                  args=(wizard.start_download, root or None),
                  disabled=not (plan and plan.get("fits", True)) or bool(analysis and analysis.unsafe_files))

elif wizard.step == wz.DOWNLOAD:
    st.subheader(f"Downloading {md(wizard.ref)}" + (f" ({md(wizard.variant)})" if wizard.variant else ""))
    st.caption("It runs in the background: other clicks and pages do not stop it. A cancelled or broken download "
               "keeps its finished files, and Retry resumes.")
    widgets.job_panel(wizard.job_id, lambda job: st.caption(f"{job.state} after {job.elapsed:.0f} s"))
    if wizard.job is None or not wizard.job.running:
        retry_col, back_col = st.columns(2)
        retry_col.button("Retry (resumes)", key="wz_retry", on_click=act, args=(wizard.retry_download,))
        back_col.button("Back to the source", key="wz_back_source", on_click=act, args=(wizard.back,))

elif wizard.name is None:
    st.error("The download registered no model:\n\n"
             + "\n".join(f"- {md(in_gui(p))}" for p in wizard.downloaded.problems))

elif wizard.step == wz.REVIEW:
    if len(wizard.downloaded.names) > 1:
        names = wizard.downloaded.names
        st.selectbox("Model", names, index=names.index(wizard.name), key="wz_model",
                     on_change=lambda: act(wizard.select_model, ss.wz_model))
    info = wizard.review()
    st.subheader(f"{md(info['name'])} is registered")
    for note in info["notes"] + info["problems"]:
        st.warning(md(in_gui(note)))
    facts_col, stub_col = st.columns([3, 2], gap="large")
    facts_col.markdown("**Discovered facts** (read from disk; never edited)")
    facts_col.dataframe(pd.DataFrame(view.fact_rows(info["discovered"] or {}, {})), hide_index=True,
                        width="stretch", height=380)
    stub_col.markdown("**Curated stub** (pre-filled suggestions to confirm)")
    stub_col.json(info["curated"] or {})
    fit = info["fit"]
    st.markdown(f"**Fit on {wizard.registry.settings.gpu_memory}**: " + (
        f"native context {fit['native_context'] or 'unknown'}; largest that fits {fit['max_context']:,} tokens"
        + (f"; suggested {shlex.join(fit['suggested_args'])}" if fit.get("suggested_args") else "")
        if fit.get("known") else f"unknown ({md(fit.get('reason'))})"))
    st.markdown("**Still to decide**\n\n" + "\n".join(f"- {md(item)}" for item in info["to_decide"]))
    st.button("Configure", type="primary", key="wz_configure", on_click=act, args=(wizard.configure_step,))

elif wizard.step == wz.CONFIGURE:
    states = wizard.fields()
    keys = {state.spec.path: f"wz_field:{wizard.name}:{state.spec.path}" for state in states}
    for path, text in wizard.form_texts().items():
        ss.setdefault(keys[path], text)
    errors = wizard.edit({path: ss[key] for path, key in keys.items()})
    preview = wizard.preview()
    form_col, side_col = st.columns([3, 2], gap="large")
    with form_col:
        st.subheader(f"Configure {md(wizard.name)}")
        for state in states:
            widgets.field_input(state, keys[state.spec.path])
            if state.spec.path in errors:
                st.error(md(in_gui(errors[state.spec.path])))
    with side_col:
        st.markdown("**Command**")
        widgets.launch_command(preview["plan"], preview["error"])
        changes = ", ".join(f"unset {p}" if v is editing.UNSET else f"set {p}" for p, v in preview["changes"].items())
        st.caption(f"Pending: {md(changes) or 'none (saving confirms the suggestions)'}")
        back_col, save_col = st.columns(2)
        back_col.button("Back to review", key="wz_back_review", on_click=act, args=(wizard.back,))
        save_col.button("Save", type="primary", key="wz_save", on_click=save, disabled=bool(errors))

else:  # launch test, done: a model was registered
    name = wizard.name
    widgets.show_report()
    st.subheader(f"Launch test of {md(wizard.name)}")
    if wizard.step == wz.FINISHED:
        ss[widgets.MODEL_KEY] = wizard.name  # the editor opens on it
        st.success(f"{md(wizard.name)} is downloaded, configured, saved and answers.", icon=":material/task_alt:")
        st.page_link("editor_page.py", label="Open it in the model editor", icon=":material/edit:")
    widgets.launch_command(*editing.launch_preview(wizard.registry.entry(wizard.name), wizard.registry.settings))
    job = wizard.launch_job
    run_col, back_col = st.columns(2)
    run_col.button("Run launch test", type="primary", key="wz_launch", on_click=act, args=(wizard.start_launch_test,),
                   disabled=job is not None and job.running)
    if wizard.step == wz.LAUNCH_TEST:
        back_col.button("Back to configure", key="wz_back_configure", on_click=act, args=(wizard.back,))
    if job is not None:
        widgets.job_panel(job.id, lambda finished: widgets.launch_outcome(name, finished))

st.divider()
st.button("Start over", key="wz_restart", on_click=start_over)
