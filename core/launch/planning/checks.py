"""What in a merged entry's launch configuration would make its start fail, by field: for set, validate, the editor."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from modelreg.errors import BadInput
from modelreg.launch.advice.fit import CONTEXT_FIELD, EXTRA_ARGS, OLLAMA_CONTEXT_OPTION
from modelreg.launch.backends import canonical_backend
from modelreg.launch.planning.plan import CheckedConfig, LaunchProblem, check_config

if TYPE_CHECKING:
    from modelreg.settings import Settings

CONTEXT_PLACE_FIELDS = (CONTEXT_FIELD, OLLAMA_CONTEXT_OPTION, EXTRA_ARGS)


def launch_problems(entry: dict[str, Any], settings: Settings) -> list[LaunchProblem]:
    """The problems `launch_check` finds."""
    return launch_check(entry, settings)[0]


def launch_check(entry: dict[str, Any], settings: Settings) -> tuple[list[LaunchProblem], CheckedConfig | None]:
    """The configuration errors (and notes) a start of this merged entry would meet before the backend loads
    anything: an unknown backend, and what the plan's check_config finds (the one check `launch_plan` makes too, or
    takes as made: the CheckedConfig comes with the problems).

    An entry still to be configured (no backend, no port: a stub) has no problems here; the launcher says what to
    fill in when it is started.
    """
    name = entry.get("name") or "?"
    if entry.get("backend") in (None, ""):
        return [], None
    try:
        backend = canonical_backend(entry.get("backend"), name)
    except BadInput as exc:
        return [LaunchProblem("backend", str(exc))], None
    checked = check_config(name, backend, entry, settings)
    return checked.problems, checked


def curated_launch_problems(entries: list[dict[str, Any]], sources: Mapping[str, dict[str, str]],
                            settings: Settings) -> tuple[list[str], list[str]]:
    """Errors and warnings for `modelreg validate`: a problem in a field the curated layer (base or profile) sets is
    an error; in a field that comes from elsewhere (a legacy discovered layer), or about a file missing on this
    machine, it is a warning."""
    errors: list[str] = []
    warnings: list[str] = []
    for entry in entries:
        origin = sources.get(entry["name"], {})
        for problem in launch_problems(entry, settings):
            # a context conflict is shown on the context field, and may be between any of the context places
            fields = CONTEXT_PLACE_FIELDS if problem.field == CONTEXT_FIELD else (problem.field,)
            curated = any(source == "curated" or source.startswith("profile:")
                          for path, source in origin.items()
                          for field in fields if path == field or path.startswith(field + "."))
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


def problems_by_field(problems: list[LaunchProblem]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Launch errors (joined) and notes by field: the editor shows them and disables Save while there is an error."""
    errors: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    for problem in problems:
        if problem.error:
            errors[problem.field] = (errors[problem.field] + "; " if problem.field in errors else "") + problem.message
        else:
            notes.setdefault(problem.field, []).append(problem.message)
    return errors, notes
