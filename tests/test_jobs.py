"""Background jobs: progress, log lines, result, failure, cancel, one running job per kind and key."""
from __future__ import annotations

import threading
import time

from modelreg.jobs import CANCELLED, DONE, FAILED, JobRegistry


def test_a_job_reports_progress_log_and_result():
    jobs = JobRegistry()
    step = threading.Event()

    def work(job):
        job.set_progress(0.5, "half way")
        job.log("first line\nsecond line")
        job.write("partial ")
        step.wait(5)
        job.write("line done\nnext")
        return 42

    job = jobs.start("scan", work, key="/models", title="rescan")
    deadline = time.monotonic() + 5
    while job.message != "half way" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.running and job.progress == 0.5
    step.set()
    assert job.wait(5)
    assert (job.state, job.result, job.error) == (DONE, 42, None)
    assert job.lines() == ["first line", "second line", "partial line done", "next"]
    assert job.lines(2) == ["partial line done", "next"]
    assert jobs.get(job.id) is job and jobs.latest("scan", "/models") is job


def test_a_failing_job_keeps_its_error_and_log():
    job = JobRegistry().start("launch-test", lambda job: (job.log("starting"), 1 / 0), key="m")
    assert job.wait(5)
    assert job.state == FAILED and "division by zero" in job.error
    assert job.lines()[0] == "starting" and job.lines()[-1].startswith("error:")


def test_cancel_is_cooperative():
    jobs = JobRegistry()

    def work(job):
        while True:
            job.check_cancelled()
            job.cancel_event.wait(0.01)

    job = jobs.start("download", work, key="repo")
    job.cancel()
    assert job.wait(5) and job.state == CANCELLED and job.finished_at is not None


def test_one_running_job_per_kind_and_key():
    jobs = JobRegistry()
    release = threading.Event()
    first = jobs.start("launch-test", lambda job: release.wait(5), key="m")
    assert jobs.start("launch-test", lambda job: None, key="m") is first
    other = jobs.start("launch-test", lambda job: "other", key="n")
    assert other is not first and other.wait(5) and other.result == "other"
    release.set()
    assert first.wait(5)
    again = jobs.start("launch-test", lambda job: "again", key="m")
    assert again is not first and again.wait(5) and again.result == "again"
    assert [j.id for j in jobs.jobs("launch-test")][0] == again.id


def test_old_finished_jobs_are_forgotten():
    jobs = JobRegistry(keep=3)
    for index in range(6):
        jobs.start("scan", lambda job, index=index: index, key=str(index)).wait(5)
    jobs.start("scan", lambda job: None, key="last").wait(5)
    assert len(jobs.jobs()) <= 4
