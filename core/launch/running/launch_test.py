"""The launch test: start a model exactly as the registry says, wait until ready, ask one question, stop, report."""
from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import httpx

from modelreg.jobs import Job, JobRegistry
from modelreg.launch.advice.diagnose import diagnose, reported_context_size
from modelreg.launch.backends import LLAMA_CPP, OLLAMA, VLLM
from modelreg.launch.planning.plan import LaunchPlan, launch_plan
from modelreg.launch.running.logs import read_tail, resolve_log_dir
from modelreg.launch.running.supervisor import Backend, BackendStartError, LogCallback, Supervisor
from modelreg.settings import Settings

if TYPE_CHECKING:
    from modelreg.registry import Registry

DEFAULT_PROMPT = "Say hello in five words."


@dataclass
class LaunchTestResult:
    name: str
    backend: str
    ok: bool
    argv: list[str]
    seconds_to_ready: float | None = None
    seconds_to_first_response: float | None = None  # from the start of the process to the reply
    reply: str | None = None
    log_path: str | None = None
    log_tail: str = ""
    diagnosis: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    context_size: int | None = None  # the context the running server reports
    orphans_stopped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tiny_png(size: int = 16) -> bytes:
    """A small RGB gradient PNG, made without an imaging library (the test image for vision models)."""
    rows = b"".join(b"\x00" + bytes(v for x in range(size) for v in (x * 255 // size, y * 255 // size, 128))
                    for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def chat_messages(prompt: str, vision: bool) -> list[dict[str, Any]]:
    if not vision:
        return [{"role": "user", "content": prompt}]
    image = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    return [{"role": "user", "content": [{"type": "text", "text": prompt},
                                         {"type": "image_url", "image_url": {"url": image}}]}]


def ask(plan: LaunchPlan, prompt: str, max_tokens: int = 16, timeout: float = 120.0) -> str:
    """One chat completion against a ready backend; returns the reply text (RuntimeError says why not)."""
    if plan.backend == OLLAMA:
        import ollama

        message: dict[str, Any] = {"role": "user", "content": prompt}
        if plan.vision:
            message["images"] = [tiny_png()]
        try:
            answer = ollama.Client(host=plan.base_url, timeout=timeout).chat(
                model=plan.served_model_id, messages=[message],
                options={**plan.ollama_options, "num_predict": max_tokens})
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise RuntimeError(f"chat with {plan.ollama_model} failed: {getattr(exc, 'error', None) or exc}") from exc
        return answer.message.content or ""
    body = {"model": plan.served_model_id, "messages": chat_messages(prompt, plan.vision),
            "max_tokens": max_tokens, "temperature": 0}
    try:
        response = httpx.post(plan.base_url + "/v1/chat/completions", json=body, timeout=timeout,
                              headers=plan.auth_headers())
    except httpx.HTTPError as exc:
        raise RuntimeError(f"chat completion request failed: {exc}") from exc
    if response.status_code != 200:
        raise RuntimeError(f"chat completion answered {response.status_code}: {response.text[:500]}")
    try:
        return response.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RuntimeError(f"chat completion answer is not OpenAI-shaped: {response.text[:500]}") from exc


def served_context_size(plan: LaunchPlan, log_text: str) -> int | None:
    """The context size the running server reports (vLLM /v1/models, llama-server /props), else from its log."""
    try:
        if plan.backend == VLLM:
            models = httpx.get(plan.base_url + "/v1/models", timeout=5, headers=plan.auth_headers()).json()["data"]
            return int(models[0]["max_model_len"])
        if plan.backend == LLAMA_CPP:
            props = httpx.get(plan.base_url + "/props", timeout=5, headers=plan.auth_headers()).json()
            return int(props.get("n_ctx") or props["default_generation_settings"]["n_ctx"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        pass
    return reported_context_size(log_text)


def launch_test(entry: dict[str, Any], settings: Settings, log_dir: str | Path, *, timeout: float | None = None,
                prompt: str = DEFAULT_PROMPT, max_tokens: int = 16, on_log: LogCallback | None = None,
                on_ready: Callable[[Backend], None] | None = None, cancel: threading.Event | None = None,
                supervisor: Supervisor | None = None) -> LaunchTestResult:
    """Start the merged entry, wait until ready, send one chat completion (vision models also get a tiny image),
    stop it, and report. Bad launch configuration raises BadInput before anything starts; every other failure is
    in the result (ok false, with error, log tail and diagnosis).

    on_log gets the backend's log text as it is written; on_ready gets the running backend before the question.
    """
    plan = launch_plan(entry, settings)
    supervisor = supervisor or Supervisor(log_dir, settings.stop_grace)
    result = LaunchTestResult(name=plan.name, backend=plan.backend, ok=False, argv=plan.argv)
    orphans = supervisor.stop_orphans()
    result.orphans_stopped = [f"{o.name} (pid {o.pid}, port {o.port})" for o in orphans]
    if orphans and on_log:
        on_log("".join(f"modelreg: stopped orphaned backend {o}\n" for o in result.orphans_stopped))
    backend: Backend | None = None
    try:
        backend = supervisor.start(plan)
        result.pid, result.log_path = backend.pid, str(backend.log_path)
        result.seconds_to_ready = supervisor.wait_ready(backend, timeout, on_log, cancel)
        result.context_size = served_context_size(plan, read_tail(backend.log_path, 5000, 1 << 20))
        if on_ready:
            on_ready(backend)
        result.reply = ask(plan, prompt, max_tokens)
        result.seconds_to_first_response = time.time() - backend.started_at
        result.ok = True
    except BackendStartError as exc:
        result.error, result.exit_code = str(exc), exc.exit_code
        result.log_path = exc.log_path
        result.diagnosis = [f.to_dict() for f in exc.diagnosis]
    except RuntimeError as exc:
        result.error = str(exc)
        if backend is not None:
            result.exit_code = backend.exit_code()
            log = read_tail(backend.log_path, 2000, 1 << 20)
            result.diagnosis = [f.to_dict() for f in diagnose(log, entry, argv=plan.argv,
                                                              fit_max_context=plan.fit_max_context)]
    finally:
        if backend is not None:
            supervisor.stop(backend)
    result.log_tail = read_tail(result.log_path)
    return result


UNSAVED = " (unsaved edits)"  # the title's end for a test of an edited entry that is not saved


def start_launch_test_job(jobs: JobRegistry, registry: Registry, name: str, entry: dict[str, Any] | None = None,
                          **options: Any) -> Job:
    """Run the launch test of one merged entry as a background job (kind `launch-test`, keyed by the model's name:
    one test per model at a time, visible from every page that polls the job registry).

    `entry`: the merged entry to test instead of the registry's (the editor's unsaved version: a launch plan needs
    no save); the job's title then ends with UNSAVED."""
    settings = registry.settings
    title = f"launch test {name}" + (UNSAVED if entry is not None else "")
    entry = entry if entry is not None else registry.entry(name)
    log_dir = resolve_log_dir(registry.config_dir, settings)

    def work(job: Job) -> LaunchTestResult:
        return launch_test(entry, settings, log_dir, on_log=job.write, cancel=job.cancel_event, **options)

    return jobs.start("launch-test", work, key=name, title=title)
