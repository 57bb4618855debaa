"""The download wizard's steps as a state machine (no Streamlit): source and analysis, variant, download, review,
configure, save, launch test. The GUI page draws the current step and calls these methods."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import AbstractSet, Any

from modelreg.download.hub import (
    RepoAnalysis,
    analyse_hf_repo,
    download_hf,
    download_root,
    free_space,
    model_folder,
    select_files,
    split_repo_id,
)
from modelreg.download.ollama import check_ollama_name, pull_ollama
from modelreg.download.progress import DownloadProgress
from modelreg.download.register import DownloadResult, to_decide
from modelreg.errors import BadInput, RegistryError
from modelreg.jobs import CANCELLED, DONE, FAILED, Job, JobRegistry
from modelreg.launch.advice.fit import fit_summary
from modelreg.paths import get_path
from modelreg.proxy.client import ReloadReport
from modelreg.registry import CONFIG_NEEDED, UNSET, Registry
from modelreg.values import format_value, human_size
from modelreg.views.editor import EDITOR_FIELDS, field_states, form_patch, launch_preview, load_target

SOURCE, DOWNLOAD, REVIEW, CONFIGURE, LAUNCH_TEST, FINISHED = (
    "source", "download", "review", "configure", "launch_test", "done")
STEPS = (SOURCE, DOWNLOAD, REVIEW, CONFIGURE, LAUNCH_TEST, FINISHED)
SOURCES = ("hf", "ollama")
# Where `back()` goes from each step (a running download or a saved model cannot be un-done by going back).
BACK = {DOWNLOAD: SOURCE, CONFIGURE: REVIEW, LAUNCH_TEST: CONFIGURE}


class WizardStepError(BadInput):
    """An action the current step does not allow; the message says what to do first."""


@dataclass
class Wizard:
    """One user's way from a repo id or Ollama name to a saved, launch-tested model.

    Long work (the download, the launch test) runs in background threads owned by `jobs` (one registry per process),
    so it survives page changes; the wizard only remembers which jobs are its own.
    """

    registry: Registry
    jobs: JobRegistry
    endpoint: str | None = None  # Hugging Face endpoint (None: HF_ENDPOINT / huggingface.co)
    token: str | None = None
    step: str = SOURCE
    source: str | None = None
    ref: str | None = None
    revision: str | None = None
    analysis: RepoAnalysis | None = None
    variant: str | None = None
    root: str | None = None
    job_id: str | None = None
    progress: DownloadProgress | None = None
    result: DownloadResult | None = None
    name: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    base_revision: str | None = None
    report: ReloadReport | None = None  # the proxy's answer to the reload after save
    launch_job_id: str | None = None
    error: str | None = None

    # ---- step 1: source, analysis, variant -----------------------------------------------------------------
    def analyse(self, source: str, ref: str, revision: str | None = None) -> RepoAnalysis | None:
        """Read what a Hugging Face repo offers (files, formats, GGUF variants and sizes); for Ollama, check the
        name. Returns the analysis (None for Ollama)."""
        self._require(SOURCE)
        if source not in SOURCES:
            raise BadInput(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        ref = (ref or "").strip()
        self.error = None
        self.source, self.analysis, self.variant = source, None, None
        if source == "ollama":
            self.ref, self.revision = check_ollama_name(ref), None
            return None
        split_repo_id(ref)
        self.ref, self.revision = ref, (revision or "").strip() or None
        try:
            self.analysis = analyse_hf_repo(ref, self.revision, token=self.token, endpoint=self.endpoint)
        except RegistryError as exc:
            self.error = str(exc)
            raise
        if self.analysis.unsafe_files:
            self.error = (f"{ref} lists file names that would be written outside the model folder "
                          f"({', '.join(self.analysis.unsafe_files[:3])}); it cannot be downloaded")
        recommended = self.analysis.recommended
        self.variant = recommended.key if recommended else None
        return self.analysis

    def choose(self, variant: str) -> None:
        self._require(SOURCE)
        if self.analysis is None:
            raise WizardStepError("analyse a Hugging Face repo before choosing a variant")
        self.variant = self.analysis.variant(variant).key

    def plan(self, root: str | None = None) -> dict[str, Any]:
        """What the download would fetch and where: folder, files, size, free space (raises when it cannot go)."""
        self._require(SOURCE)
        if self.source == "ollama":
            return {"source": "ollama", "name": self.ref, "host": self.registry.settings.ollama_host}
        if self.analysis is None:
            raise WizardStepError("analyse a Hugging Face repo first")
        base = download_root(self.registry, root or self.root)
        folder = model_folder(base, self.analysis.repo_id)
        files = select_files(self.analysis, self.variant)
        size, free = sum(f.size for f in files), free_space(folder)
        return {"source": "hf", "repo_id": self.analysis.repo_id, "commit": self.analysis.commit,
                "variant": self.variant, "folder": str(folder), "files": [f.path for f in files],
                "size_bytes": size, "size": human_size(size), "free_bytes": free, "free": human_size(free),
                "fits": size <= free, "login_hint": self.analysis.login_hint()}

    # ---- step 2: download ----------------------------------------------------------------------------------
    def start_download(self, root: str | None = None) -> Job:
        """Start (or rejoin) the background download of the chosen source; moves to the download step."""
        self._require(SOURCE)
        if self.source is None or self.ref is None:
            raise WizardStepError("enter a repo id or an Ollama name first")
        if self.source == "hf":
            if self.analysis is None:
                raise WizardStepError("analyse the repo first")
            if self.analysis.unsafe_files:
                raise BadInput(self.error or "this repo cannot be downloaded")
            self.root = root or self.root
            self.plan(self.root)  # refuses a repo id or root that would write outside the models root
        progress = DownloadProgress()
        registry, source, ref = self.registry, self.source, self.ref
        download = functools.partial(download_hf, revision=self.revision, variant=self.variant, root=self.root,
                                     analysis=self.analysis, token=self.token, endpoint=self.endpoint)

        def work(job: Job) -> DownloadResult:
            progress.should_cancel = lambda: job.cancel_requested
            progress.listeners.append(lambda p: report_progress(job, p))
            if source == "ollama":
                return pull_ollama(registry, ref, progress=progress)
            return download(registry, ref, progress=progress)

        key = f"{source}:{ref}" + (f":{self.variant}" if source == "hf" else "")
        job = self.jobs.start("download", work, key=key, title=f"download {ref}")
        if job.id != self.job_id:
            self.progress = progress
        self.job_id, self.error, self.result = job.id, None, None
        self.step = DOWNLOAD
        return job

    @property
    def job(self) -> Job | None:
        return self.jobs.get(self.job_id) if self.job_id else None

    @property
    def downloaded(self) -> DownloadResult:
        """The finished download's result, which every step after the download has."""
        if self.result is None:
            raise WizardStepError("download a model first")
        return self.result

    def poll(self) -> dict[str, Any]:
        """The download's state for a progress bar; when it has finished, moves on to the review step."""
        self._require(DOWNLOAD)
        job = self.job
        if job is None:
            self.step, self.error = SOURCE, "the download job is gone (the app restarted?); start it again"
            return {"state": FAILED, "error": self.error}
        status = {"state": job.state, "fraction": job.progress, "message": job.message, "error": job.error,
                  **(self.progress.snapshot() if self.progress else {})}
        if job.state == DONE:
            self.result = job.result
            self.name = self.result.names[0] if self.result.names else None
            self.step = REVIEW
        elif job.state in (FAILED, CANCELLED):
            self.error = job.error
        return status

    def cancel_download(self) -> None:
        self._require(DOWNLOAD)
        if self.job is not None:
            self.job.cancel()

    def retry_download(self) -> Job:
        """Start the same download again after a failure or cancel; finished files are reused."""
        self._require(DOWNLOAD)
        if self.job is not None and self.job.running:
            raise WizardStepError("the download is still running; cancel it first")
        self.step = SOURCE
        return self.start_download(self.root)

    # ---- step 3: review ------------------------------------------------------------------------------------
    def select_model(self, name: str) -> None:
        self._require(REVIEW, CONFIGURE)
        if self.result is None or name not in self.result.names:
            raise BadInput(f"{name!r} was not registered by this download; choose one of: "
                           + ", ".join(self.result.names if self.result else []))
        self.name, self.changes = name, {}

    def review(self) -> dict[str, Any]:
        """The discovered facts, the pre-filled curated stub, the merged entry, the fit estimate for the active
        profile's GPU, and what the user must decide."""
        self._require(REVIEW, CONFIGURE, LAUNCH_TEST, FINISHED)
        name = self._model()
        discovered = next((e for e in self.registry.discovered_entries() if e["name"] == name), None)
        curated = next((e for e in self.registry.curated_entries()
                        if e["name"] == name and e.get("profile") is None), None)
        merged = self.registry.entry(name)
        return {"name": name, "discovered": discovered, "curated": curated, "merged": merged,
                "fit": fit_summary(merged, self.registry.settings), "to_decide": to_decide(self.registry, name),
                "notes": self.result.notes if self.result else [],
                "problems": self.result.problems if self.result else []}

    def configure_step(self) -> None:
        self._require(REVIEW)
        self._model()
        self.base_revision = self.registry.curated_revision()
        self.step = CONFIGURE

    # ---- step 4: configure ---------------------------------------------------------------------------------
    def fields(self) -> list:
        """The editor's fields (modelreg.views.editor.FieldState) with the staged changes not yet applied."""
        self._require(CONFIGURE)
        return field_states(load_target(self.registry, self._model(), None))

    def form_texts(self) -> dict[str, str]:
        """Each editor field's text with the staged changes applied (a form drawn afresh shows what was staged)."""
        self._require(CONFIGURE)
        entry = load_target(self.registry, self._model(), None).merged(self.changes).entry
        return {spec.path: format_value(get_path(entry, spec.path), spec.kind) for spec in EDITOR_FIELDS}

    def edit(self, texts: dict[str, str], resets: AbstractSet[str] = frozenset(),
             extra: dict[str, Any] | None = None) -> dict[str, str]:
        """Stage the form (its texts as a whole replace what was staged before; nothing is written until save);
        returns errors by field path."""
        self._require(CONFIGURE)
        target = load_target(self.registry, self._model(), None)
        self.changes, errors = form_patch(target, texts, set(resets), extra)
        return errors

    def preview(self) -> dict[str, Any]:
        """The merged entry with the staged changes, and the launch plan (a LaunchPlan) with the command
        it would start (or why it cannot)."""
        self._require(CONFIGURE)
        target = load_target(self.registry, self._model(), None)
        merged = target.merged(self.changes).entry
        plan, problem = launch_preview(merged, self.registry.settings)
        return {"entry": merged, "argv": plan.argv if plan else None, "plan": plan,
                "error": problem, "changes": dict(self.changes)}

    # ---- step 5: save --------------------------------------------------------------------------------------
    def save(self, reload_proxy: bool = True) -> str:
        """Write the staged changes (rebuild), ask the proxy to reload; moves to the launch test. Returns a message.

        Saving confirms the stub's suggestions: `_config_needed` goes even when nothing was changed."""
        self._require(CONFIGURE)
        name = self._model()
        changes = dict(self.changes)
        if get_path(load_target(self.registry, name, None).layer(), CONFIG_NEEDED):
            changes.setdefault(CONFIG_NEEDED, UNSET)
        snapshot = self.registry.apply_curated(name, changes, base_revision=self.base_revision) \
            if changes else self.registry.rebuild()
        self.changes, self.report = {}, None
        message = f"saved; revision {snapshot.revision[:12]}"
        if reload_proxy:
            from modelreg.proxy.client import ProxyAdmin, reload_report

            admin = ProxyAdmin(self.registry.settings.proxy_url, self.registry.config_dir)
            self.report = reload_report(admin, snapshot.revision)
            message = self.report.message
        self.step = LAUNCH_TEST
        return message

    # ---- step 6: launch test -------------------------------------------------------------------------------
    def start_launch_test(self, **options: Any) -> Job:
        """Start the launch test of the saved entry in the background (the Launch test page shows the same job)."""
        self._require(LAUNCH_TEST)
        from modelreg.launch.running.launch_test import start_launch_test_job

        job = start_launch_test_job(self.jobs, self.registry, self._model(), **options)
        self.launch_job_id, self.error = job.id, None
        return job

    @property
    def launch_job(self) -> Job | None:
        return self.jobs.get(self.launch_job_id) if self.launch_job_id else None

    def poll_launch_test(self) -> dict[str, Any]:
        """The launch test's log so far and, when finished, its result; a passing test finishes the wizard."""
        self._require(LAUNCH_TEST, FINISHED)
        job = self.launch_job
        if job is None:
            return {"running": False, "log": "", "result": None}
        status: dict[str, Any] = {"running": job.running, "log": "\n".join(job.lines()), "result": None}
        if not job.running:
            if job.result is None:
                self.error = job.error or "the launch test did not run"
                status["error"] = self.error
            else:
                status["result"] = job.result.to_dict()
                if job.result.ok:
                    self.step = FINISHED
        return status

    # ---- moving around -------------------------------------------------------------------------------------
    def back(self) -> str:
        """Go one step back where that undoes nothing (from configure to review, from launch test to configure)."""
        target = BACK.get(self.step)
        if target is None:
            raise WizardStepError(f"cannot go back from the {self.step} step")
        if self.step == DOWNLOAD and self.job is not None and self.job.running:
            raise WizardStepError("the download is running; cancel it before going back")
        if target == CONFIGURE:
            self.base_revision = self.registry.curated_revision()
        self.step = target
        return target

    def _require(self, *steps: str) -> None:
        if self.step not in steps:
            raise WizardStepError(f"this action belongs to the {' or '.join(steps)} step; the wizard is at the "
                                  f"{self.step} step")

    def _model(self) -> str:
        if not self.name:
            raise WizardStepError("the download registered no model; see its problems, fix them and download again")
        return self.name


def report_progress(job: Job, progress: DownloadProgress) -> None:
    """Feed a download's progress to its job: the bar's fraction and text, and a log line per phase."""
    state = progress.snapshot()
    text = state["message"]
    if state["phase"] == "downloading" and state["bytes_total"]:
        text = (f"{human_size(state['bytes_done'])} of {human_size(state['bytes_total'])}, "
                f"{state['files_done']}/{state['files_total']} files · {text}")
    line = f"{state['phase']}: {state['message']}"
    if not job.lines(1) or job.lines(1)[0] != line:
        job.log(line)
    job.set_progress(state["fraction"], text)
