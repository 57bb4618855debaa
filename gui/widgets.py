"""Pieces several pages share: the layer legend, the model picker, save-then-reload, a polled job panel."""
from __future__ import annotations

from typing import Callable

import streamlit as st

from core.errors import ConflictError, InvalidRegistry, RegistryError
from core.jobs import Job
from core.proxy_admin import ReloadReport, reload_report
from core.registry import Snapshot
from core.view import LAYER_COLORS
from gui import services

MODEL_KEY = "model"
REPORT_KEY = "last_save_report"


def legend(classes: tuple[str, ...] = ("discovered", "curated", "override", "profile", "legacy", "unset")) -> None:
    chips = " ".join(
        f'<span data-layer="{cls}" style="background:{LAYER_COLORS[cls][1]};color:#1f2328;padding:2px 8px;'
        f'border-radius:4px;margin-right:6px;border:1px solid #d0d7de">{LAYER_COLORS[cls][0]}</span>'
        for cls in classes)
    st.markdown(chips, unsafe_allow_html=True)


def registry_problem(exc: InvalidRegistry) -> None:
    st.error("The registry layers do not validate; nothing can be merged until they are fixed:\n\n"
             + "\n".join(f"- {p}" for p in exc.problems))


def model_picker(names: list[str], label: str = "Model", key: str = "picker") -> str | None:
    """A select box bound to the session's selected model (shared by every page)."""
    if not names:
        st.info("The registry has no models yet: run a scan on the Settings page.")
        return None
    current = st.session_state.get(MODEL_KEY)
    if current not in names:
        current = st.session_state[MODEL_KEY] = names[0]
    if st.session_state.get(key) != current:
        st.session_state[key] = current
    st.selectbox(label, names, key=key, on_change=lambda: st.session_state.update({MODEL_KEY: st.session_state[key]}))
    return current


def save_then_reload(write: Callable[[], Snapshot]) -> ReloadReport | None:
    """Run one curated write, then ask the proxy to reload; the outcome is kept for `show_report` after a rerun.

    ConflictError is re-raised for the caller to show both versions; other refusals are kept as the outcome.
    """
    try:
        snap = write()
    except ConflictError:
        raise
    except InvalidRegistry as exc:
        st.session_state[REPORT_KEY] = "Not saved: the change would make the registry invalid:\n\n" + "\n".join(
            f"- {p}" for p in exc.problems)
        return None
    except RegistryError as exc:
        st.session_state[REPORT_KEY] = f"Not saved: {exc}"
        return None
    report = reload_report(services.proxy(), snap.revision)
    st.session_state[REPORT_KEY] = report
    return report


def show_report(stale: bool = False) -> None:
    """The outcome of the last save: the revision the proxy serves, stale backends, unreachable, or refused.

    `stale`: new edits are pending, so a past success no longer describes the form (a refusal stays shown).
    """
    report: ReloadReport | str | None = st.session_state.get(REPORT_KEY)
    if stale and isinstance(report, ReloadReport):
        del st.session_state[REPORT_KEY]
        return
    if report is None:
        return
    if isinstance(report, str):
        st.error(report)
        return
    if report.confirmed:
        st.success(report.message, icon=":material/check_circle:")
    else:
        st.warning(report.message, icon=":material/warning:")
    st.caption(f"snapshot revision `{report.expected_revision}` · proxy serves "
               f"`{report.served_revision or 'n/a'}`")


def job_panel(job_id: str | None, describe: Callable[[Job], None], every: float = 0.5) -> None:
    """Poll one background job: progress, live log tail, then `describe(job)` once it has ended."""
    job = services.jobs().get(job_id) if job_id else None
    if job is None:
        return

    @st.fragment(run_every=every if job.running else None)
    def panel() -> None:
        if job.running:
            st.progress(job.progress or 0.0, text=job.message or f"{job.title}: running {job.elapsed:.0f}s")
            if st.button("Cancel", key=f"cancel:{job.id}"):
                job.cancel()
        st.code("\n".join(job.lines(40)) or "(no output yet)", language="log", wrap_lines=True)
        if not job.running:
            if not st.session_state.get(f"seen:{job.id}"):
                st.session_state[f"seen:{job.id}"] = True
                st.rerun(scope="app")  # stop polling: the next full run defines the panel without run_every
            describe(job)

    panel()
