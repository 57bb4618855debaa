"""What in a merged entry's launch configuration would make its start fail, by field: for set, validate, the editor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelreg.errors import BadInput
from modelreg.launch.backends import OLLAMA, PROCESS_BACKENDS, canonical_backend
from modelreg.launch.flags import extra_args_problems
from modelreg.launch.plan import backend_catalogue, chat_template_file
from modelreg.settings import Settings

EXTRA_ARGS = "backend_config.extra_args"


@dataclass(frozen=True)
class LaunchProblem:
    """One problem with one field; `error` False is a note (a flag spelled in a way the backend reads as another)."""

    field: str
    message: str
    error: bool = True
    # about a file on this machine (a chat template): the registry may be edited on another machine than the one
    # that runs the model, so `validate` only warns
    local: bool = False


def launch_problems(entry: dict[str, Any], settings: Settings) -> list[LaunchProblem]:
    """The configuration errors (and notes) a start of this merged entry would meet before the backend loads
    anything: an unknown backend, a port outside 1-65535, extra_args the backend's own parser rejects or that set
    what the launcher owns, a chat template file that is missing or that the backend cannot take.

    An entry still to be configured (no backend, no port: a stub) has no problems here; the launcher says what to
    fill in when it is started.
    """
    name = entry.get("name") or "?"
    if entry.get("backend") in (None, ""):
        return []
    try:
        backend = canonical_backend(entry.get("backend"), name)
    except BadInput as exc:
        return [LaunchProblem("backend", str(exc))]
    config = entry.get("backend_config") or {}
    problems: list[LaunchProblem] = []
    port = config.get("port")
    if backend in PROCESS_BACKENDS and port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        problems.append(LaunchProblem("backend_config.port", f"model {name!r}: backend_config.port {port!r} is not a "
                                                             "port; use a whole number from 1 to 65535"))
    if backend != OLLAMA:
        catalogue = backend_catalogue(backend, settings)
        parsed = extra_args_problems(backend, config.get("extra_args"), catalogue)
        problems += [LaunchProblem(EXTRA_ARGS, f"model {name!r}: backend_config.extra_args: {p.message}", p.error)
                     for p in parsed.problems]
        if catalogue is not None and catalogue.notes and config.get("extra_args"):
            problems += [LaunchProblem(EXTRA_ARGS, note, error=False) for note in catalogue.notes]
    try:
        chat_template_file(name, backend, entry, settings)
    except BadInput as exc:
        problems.append(LaunchProblem("chat_template", str(exc), local="is not supported by" not in str(exc)))
    return problems


def curated_launch_problems(entries: list[dict[str, Any]], sources: dict[str, dict[str, str]],
                            settings: Settings) -> tuple[list[str], list[str]]:
    """Errors and warnings for `modelreg validate`: a problem in a field the curated layer (base or profile) sets is
    an error; in a field that comes from elsewhere (a legacy discovered layer), or about a file missing on this
    machine, it is a warning."""
    errors: list[str] = []
    warnings: list[str] = []
    for entry in entries:
        origin = sources.get(entry["name"], {})
        for problem in launch_problems(entry, settings):
            curated = any(source == "curated" or source.startswith("profile:")
                          for path, source in origin.items()
                          if path == problem.field or path.startswith(problem.field + "."))
            (errors if problem.error and curated and not problem.local else warnings).append(problem.message)
    return errors, warnings


def require_launchable(entry: dict[str, Any], settings: Settings, before: dict[str, Any] | None = None) -> list[str]:
    """BadInput with every launch error `entry` has that `before` (the entry as it was) did not have; else the notes
    (for a warning), so that `set` never writes a configuration the backend would reject."""
    old = {p.message for p in launch_problems(before, settings) if p.error} if before else set()
    problems = launch_problems(entry, settings)
    new = [p.message for p in problems if p.error and p.message not in old]
    if new:
        raise BadInput("; ".join(new))
    return [p.message for p in problems if not p.error]


def problems_by_field(entry: dict[str, Any], settings: Settings) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Launch errors (joined) and notes by field: the editor shows them and disables Save while there is an error."""
    errors: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    for problem in launch_problems(entry, settings):
        if problem.error:
            errors[problem.field] = (errors[problem.field] + "; " if problem.field in errors else "") + problem.message
        else:
            notes.setdefault(problem.field, []).append(problem.message)
    return errors, notes
