"""Pieces several pages share: the layer legend, the model picker, field inputs, save-then-reload, a polled job
panel, a launch command and a launch test's outcome, and the settings writer's outcome."""
from __future__ import annotations

import shlex
from typing import AbstractSet, Any, Callable

import streamlit as st

from modelreg.errors import ConflictError, InvalidRegistry, RegistryError
from modelreg.gui import services
from modelreg.gui.text import md
from modelreg.jobs import Job
from modelreg.launch.planning.plan import LaunchPlan
from modelreg.proxy.client import ProxyUnreachable, ReloadReport, reload_report
from modelreg.registry import Merged, Snapshot
from modelreg.settings import save_setting
from modelreg.values import NOT_SET
from modelreg.views import editor as editing
from modelreg.views.messages import in_gui

MODEL_KEY = "model"
REPORT_KEY = "last_save_report"


def dark_page() -> bool:
    """Whether the browser shows the dark theme (the reader's choice, or the system's)."""
    return st.context.theme.type == "dark"


def registry_problem(exc: InvalidRegistry) -> None:
    st.error("The registry layers do not validate; nothing can be merged until they are fixed:\n\n"
             + "\n".join(f"- {md(in_gui(p))}" for p in exc.problems))


def merged_or_stop() -> Merged:
    """The merge of the layers, or the registry's problem shown and the page stopped."""
    try:
        return services.merged()
    except InvalidRegistry as exc:
        registry_problem(exc)
        st.stop()


def picked_model(key: str) -> str:
    """The model chosen in a picker over the merged registry (the page stops when there is none)."""
    name = model_picker([e["name"] for e in merged_or_stop().entries], key=key)
    if name is None:
        st.stop()
    return name


def model_picker(names: list[str], label: str = "Model", key: str = "picker", marked: AbstractSet[str] = frozenset(),
                 on_pick: Callable[[str], None] | None = None) -> str | None:
    """A select box bound to the session's selected model (shared by every page); `marked` models show a dot
    (the editor's unsaved edits); `on_pick` is called with the model the reader picks."""
    if not names:
        st.info("The registry has no models yet: run a scan on the Settings page.")
        return None
    current = st.session_state.get(MODEL_KEY)
    if current not in names:
        current = st.session_state[MODEL_KEY] = names[0]
    if st.session_state.get(key) != current:
        st.session_state[key] = current

    def picked() -> None:
        st.session_state[MODEL_KEY] = st.session_state[key]
        if on_pick is not None:
            on_pick(st.session_state[key])
    st.selectbox(label, names, key=key, on_change=picked,
                 format_func=lambda n: f"● {n} (unsaved edits)" if n in marked else n)
    return current


def field_input(state: editing.FieldState, key: str) -> None:
    """The input for one curated-editable field (select box, JSON area or text box), its text bound to `key`."""
    spec = state.spec
    if spec.kind in ("bool", "backend"):
        options = editing.backend_choices(state.value) if spec.kind == "backend" else \
            [NOT_SET, "true", "false"]
        st.selectbox(spec.label, options, key=key, help=spec.help)
    elif spec.kind == "json":
        st.text_area(spec.label, key=key, help=spec.help, height=90)
    else:
        st.text_input(spec.label, key=key, help=spec.help)


def launch_command(plan: LaunchPlan | None, problem: str | None) -> None:
    """The exact command a launch would run (an Ollama model runs in the daemon), or why it cannot start."""
    if plan is None:
        st.error(md(in_gui(problem)))
    elif plan.argv:
        st.code(plan.command_line(), language="bash", wrap_lines=True)
    else:
        st.code(f"# runs in the Ollama daemon at {plan.base_url}: model {plan.ollama_model}, "
                f"options {plan.ollama_options}", language="bash", wrap_lines=True)


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
            f"- {md(in_gui(p))}" for p in exc.problems)
        return None
    except RegistryError as exc:
        st.session_state[REPORT_KEY] = f"Not saved: {md(in_gui(exc))}"
        return None
    report = reload_report(services.proxy(), snap.revision)
    services.proxy_changed()
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
        st.error(md(report))
        return
    if report.confirmed:
        st.success(md(report.message), icon=":material/check_circle:")
    else:
        st.warning(md(report.message), icon=":material/warning:")
    st.caption(f"snapshot revision `{report.expected_revision}` · proxy serves "
               f"`{report.served_revision or 'n/a'}`")


def job_panel(job_id: str | None, describe: Callable[[Job], object], every: float = 0.5) -> None:
    """Poll one background job: progress, live log tail, then `describe(job)` once it has ended."""
    job = services.jobs().get(job_id) if job_id else None
    if job is None:
        return

    @st.fragment(run_every=every if job.running else None)
    def panel() -> None:
        if job.running:
            st.progress(job.progress or 0.0, text=md(job.message or f"{job.title}: running {job.elapsed:.0f}s"))
            if st.button("Cancel", key=f"cancel:{job.id}"):
                job.cancel()
            st.code("\n".join(job.lines(40)) or "(no output yet)", language="log", wrap_lines=True)
            return
        if not st.session_state.get(f"seen:{job.id}"):
            st.session_state[f"seen:{job.id}"] = True
            st.rerun(scope="app")  # stop polling: the next full run defines the panel without run_every
        describe(job)  # the verdict first, the log below it
        with st.expander(f"Log ({len(job.lines())} lines)"):
            st.code("\n".join(job.lines(200)) or "(no output)", language="log", wrap_lines=True)

    panel()


def launch_outcome(name: str, finished: Job) -> None:
    """A finished launch test: the reply or the error, timings, the argv used, the diagnosis and the log."""
    result = finished.result
    if result is None:
        st.error(f"Launch test did not run: {md(finished.error)}")
        return
    if result.ok:
        st.success(f"{md(name)} answered: {md(repr(result.reply))}", icon=":material/check_circle:")
    else:
        st.error(f"{md(name)} failed: {md(in_gui(result.error))}", icon=":material/error:")
    a, b, c = st.columns(3)
    a.metric("ready after", f"{result.seconds_to_ready:.2f} s" if result.seconds_to_ready is not None else "-")
    b.metric("first response after",
             f"{result.seconds_to_first_response:.2f} s" if result.seconds_to_first_response is not None else "-")
    c.metric("context size", result.context_size or "-")
    if result.argv:
        st.caption("argv used")
        st.code(shlex.join(result.argv), language="bash", wrap_lines=True)
    for finding in result.diagnosis:
        st.warning(f"**{md(in_gui(finding['summary']))}**  \nchange: {md(in_gui(finding['suggestion']))}  \n"
                   f"log: {md(finding['evidence'], code=True)}")
    if result.log_path:
        st.caption(f"log: {md(result.log_path, code=True)}")
    if not result.ok and result.log_tail:
        st.code(result.log_tail, language="log", wrap_lines=True)


SETTING_KEY = "last_setting_outcome"


def write_setting(name: str, value: Any, profile: str | None = None) -> None:  # a setting: any JSON
    """Button callback: one setting through the core's settings writer; the outcome shows on the next run."""
    where = f" for profile {profile}" if profile else ""
    try:
        save_setting(services.config_dir(), name, value, profile)
    except RegistryError as exc:
        st.session_state[SETTING_KEY] = ("error", f"Not saved: {in_gui(exc)}")
        return
    report = reload_report(services.proxy(), services.registry().snapshot().revision)
    services.proxy_changed()
    saved = f"Saved `{name}`{where} in settings.json"
    if not report.reachable:
        st.session_state[SETTING_KEY] = ("success", f"{saved}; the proxy is not running ({report.error}): it reads "
                                                    "settings when it starts.")
    elif report.error:
        st.session_state[SETTING_KEY] = ("error", f"{saved}, but the proxy could not use it: {report.error}")
    else:
        done = [f"restarted {', '.join(report.restarted)}"] if report.restarted else []
        done += [f"{', '.join(report.stale)} restart when idle"] if report.stale else []
        st.session_state[SETTING_KEY] = ("success", f"{saved}; the proxy applied it" + (
            f" ({'; '.join(done)})" if done else " (running backends are unaffected; it applies at the next start)"))


def show_setting_outcome() -> None:
    outcome = st.session_state.pop(SETTING_KEY, None)
    if outcome:
        (st.error if outcome[0] == "error" else st.success)(outcome[1])


# Streamlit has no API for leaving the page or for keys: a script in the app's own document installs the listeners
# once per browser tab; each run says in the class of the hidden container around it (`st-key-...`) which of them
# apply now (a script Streamlit has run once is not run again when the element is redrawn).
_HOOKS = """<script>
(() => {
  const w = window;
  if (w.modelregHooked) return;
  w.modelregHooked = true;
  const on = (flag) => !!w.document.querySelector(`[class*="st-key-modelreg_hooks"][class*="_${flag}"]`);
  w.addEventListener("beforeunload", (event) => {
    if (on("unsaved")) { event.preventDefault(); event.returnValue = ""; }
  });
  const idle = () => w.document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]');
  // Click the button once the text being typed has reached the app (a blur commits it, then the app reruns).
  const press = (key) => {
    const focused = w.document.activeElement;
    if (focused && focused !== w.document.body) focused.blur();
    let tries = 0;
    const attempt = () => {
      const button = w.document.querySelector(`.st-key-${key} button`);
      if (button && !button.disabled && idle()) { button.click(); return; }
      if (++tries < 50) w.setTimeout(attempt, 100);
    };
    w.setTimeout(attempt, 150);
  };
  w.document.addEventListener("keydown", (event) => {
    if (!on("shortcuts")) return;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "s") {
      event.preventDefault();
      press("save");
    } else if (event.key === "Escape" && !event.defaultPrevented
               && !w.document.querySelector('[data-baseweb="popover"], [role="dialog"]')) {
      press("discard_edits");
    }
  });
})();
</script>"""


def page_hooks(unsaved: bool, shortcuts: bool = False) -> None:
    """The browser asks before leaving the app while `unsaved`; with `shortcuts`, Ctrl+S clicks Save and Esc
    clicks Discard (the editor's buttons, keys `save` and `discard_edits`)."""
    flags = "".join(f"_{flag}" for flag, wanted in (("unsaved", unsaved), ("shortcuts", shortcuts)) if wanted)
    with st.container(key=f"modelreg_hooks{flags}"):  # hidden by the app's style sheet
        st.html(_HOOKS, unsafe_allow_javascript=True)


def from_proxy(read: Callable[[], list], empty: str) -> list | None:
    """What `read` asks the running proxy for, or None after saying why there is nothing to show."""
    try:
        rows = read()
    except ProxyUnreachable as exc:
        st.warning(f"{md(exc)}. `modelreg up` starts the proxy and the GUI together.")
        return None
    if not rows:
        st.info(empty)
        return None
    return rows
