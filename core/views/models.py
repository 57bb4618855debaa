"""What the GUI shows, as plain data: cell provenance classes and colors, model rows, status, layer diffs."""
from __future__ import annotations

import difflib
import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from modelreg.errors import RegistryError
from modelreg.fields import FieldClass, field_class
from modelreg.jobs import Job, JobRegistry
from modelreg.launch.advice.fit import context_places, place_field
from modelreg.launch.planning.plan import launch_plan
from modelreg.merge import DISCOVERED_LABELS, LEGACY
from modelreg.paths import flatten, get_path
from modelreg.registry import Registry

if TYPE_CHECKING:
    from modelreg.discovery.scan import ScanResult
    from modelreg.proxy.client import ProxyAdmin
    from modelreg.settings import Settings

# Cell class -> a letter shown beside the value: the layer without relying on color (explained in the legend).
LAYER_CUES: dict[str, str] = {"discovered": "ᵈ", "legacy": "ˡ", "curated": "ᶜ", "override": "ᵒ", "profile": "ᵖ"}
# Cell class -> (legend text, background color). The browser test checks two of these colors on screen.
LAYER_COLORS: dict[str, tuple[str, str]] = {
    "discovered": ("discovered (from disk)", "#cfe2ff"),
    "legacy": ("legacy config in the discovered file", "#e2d9f3"),
    "curated": ("curated (your config)", "#d1e7dd"),
    "override": ("curated, overrides a discovered value", "#75c69b"),
    "profile": ("active profile", "#ffe69c"),
    "unset": ("unset", "#f1f1f1"),
    "derived": ("derived from other fields", "#ffffff"),
}

OK, NEEDS_CONFIG, FILES_MISSING, INVALID, RUNNING = "ok", "needs config", "files missing", "invalid", "running"
STATUSES = (OK, NEEDS_CONFIG, FILES_MISSING, INVALID, RUNNING)

# Column -> dotted path whose provenance colors the cell (None: computed from other fields).
COLUMNS: dict[str, str | None] = {
    "name": "name",
    "status": None,
    "display name": "display_name",
    "backend": "backend",
    "format": "metadata.format",
    "quantization": "quantization",
    "size GB": "size_bytes",
    "native ctx": None,
    "effective ctx": None,
    "port": "backend_config.port",
    "extra_args": "backend_config.extra_args",
    "roles": "roles",
    "vision": "capabilities.vision",
    "tools": "capabilities.tools",
    "overrides": None,
}
NATIVE_CONTEXT_PATHS = ("metadata.architecture.context_length", "metadata.architecture.max_position_embeddings",
                        "metadata.ollama_context_length")


def layer_class(label: str | None, value: Any = None, overridden: bool = False) -> str:
    """The cell class of a value from the layer `label` (a merge provenance label)."""
    if label is None or value is None:
        return "unset"
    if label.startswith("profile:"):
        return "profile"
    if label == "curated":
        return "override" if overridden else "curated"
    if label == LEGACY:
        return "legacy"
    return "discovered"


# The same classes on a dark page: deep tints of the light colors, under light text.
DARK_LAYER_COLORS: dict[str, str] = {"discovered": "#1d3557", "legacy": "#3a2f5b", "curated": "#1f4a37",
                                     "override": "#2e7d55", "profile": "#5a4710", "unset": "#2a2d34",
                                     "derived": "#0e1117"}
TEXT_COLOR, DARK_TEXT_COLOR = "#1f2328", "#e6edf3"


def layer_color(cls: str, dark: bool = False) -> tuple[str, str]:
    """A cell class's (background, text) colors for a light or a dark page."""
    return (DARK_LAYER_COLORS[cls], DARK_TEXT_COLOR) if dark else (LAYER_COLORS[cls][1], TEXT_COLOR)


def cell_css(cls: str, dark: bool = False) -> str:
    background, text = layer_color(cls, dark)
    return f"background-color: {background}; color: {text}"


@dataclass
class ModelRow:
    """One row of the Models table: display values and the cell class of each column."""

    name: str
    values: dict[str, Any]
    classes: dict[str, str]
    status: str
    problem: str | None = None


def model_status(entry: dict, settings: Settings, running: bool = False) -> tuple[str, str | None]:
    """ok / needs config / files missing / invalid / running, with the reason when it is not ok."""
    if running:
        return RUNNING, None
    if entry.get("missing"):
        return FILES_MISSING, "the model's files were not found by the last scan"
    if get_path(entry, "metadata._config_needed"):
        return NEEDS_CONFIG, "curated stub: choose backend, port and arguments, then save"
    try:
        launch_plan(entry, settings)
    except RegistryError as exc:
        return INVALID, str(exc)
    return OK, None


def native_context(entry: dict, sources: dict[str, str]) -> tuple[Any, str | None]:
    for path in NATIVE_CONTEXT_PATHS:
        value = get_path(entry, path)
        if value is not None:
            return value, sources.get(path)
    return None, None


def context_column(entry: dict, sources: dict[str, str]) -> tuple[Any, str | None]:
    """The context size a launch would use (the entry's one effective context), else the native context."""
    places = context_places(entry)
    if places:
        where = list(places)[-1]
        return places[where], sources.get(place_field(where))
    return native_context(entry, sources)


def display_value(path: str | None, value: Any) -> Any:
    """A cell's text: lists as a command line or comma list, sizes in GB, booleans as yes/no."""
    if value is None:
        return None
    if path == "backend_config.extra_args" and isinstance(value, list):
        return shlex.join(str(v) for v in value)
    if path == "size_bytes" and isinstance(value, (int, float)):
        return round(value / 1e9, 2)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def model_rows(entries: Iterable[dict], sources: Mapping[str, dict[str, str]], overridden: dict[str, dict[str, Any]],
               settings: Settings, running: Iterable[str] = ()) -> list[ModelRow]:
    """The Models table: a row per merged entry, every cell classed by the layer its value came from."""
    active = set(running)
    rows = []
    for entry in entries:
        name = entry["name"]
        where = sources.get(name, {})
        over = overridden.get(name, {})
        values: dict[str, Any] = {}
        classes: dict[str, str] = {}
        for column, path in COLUMNS.items():
            if path is None:
                continue
            value = get_path(entry, path)
            values[column] = display_value(path, value)
            classes[column] = layer_class(where.get(path), value, path in over)
        if any(label in DISCOVERED_LABELS for label in where.values()):
            classes["name"] = "discovered"
        for column, finder in (("native ctx", native_context), ("effective ctx", context_column)):
            value, label = finder(entry, where)
            values[column], classes[column] = value, layer_class(label, value)
        status, problem = model_status(entry, settings, name in active)
        values["status"], classes["status"] = status, "derived"
        values["overrides"] = ", ".join(sorted(p.removeprefix("backend_config.") for p in over)) or None
        classes["overrides"] = "derived"
        rows.append(ModelRow(name, values, classes, status, problem))
    return rows


def cell_label(value: Any, cls: str) -> str:
    """A table cell's text: the value (empty, never "None", when unset) and its layer's letter."""
    if value is None or value == "":
        return ""
    cue = LAYER_CUES.get(cls)
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return f"{text} {cue}" if cue else text


def total_size_gb(rows: Iterable[ModelRow]) -> float:
    return round(sum(r.values.get("size GB") or 0 for r in rows), 2)


def filter_rows(rows: list[ModelRow], backends: Iterable[str] = (), formats: Iterable[str] = (),
                statuses: Iterable[str] = (), text: str = "") -> list[ModelRow]:
    """Rows matching every given filter (empty filter = all); text matches any cell, case-insensitive."""
    backends, formats, statuses = set(backends), set(formats), set(statuses)
    needle = text.strip().lower()
    out = []
    for row in rows:
        if backends and row.values.get("backend") not in backends:
            continue
        if formats and row.values.get("format") not in formats:
            continue
        if statuses and row.status not in statuses:
            continue
        if needle and not any(needle in str(v).lower() for v in row.values.values() if v is not None):
            continue
        out.append(row)
    return out


def sort_rows(rows: list[ModelRow], column: str, descending: bool = False) -> list[ModelRow]:
    """Sort by one column; empty cells last; numbers before text so mixed columns still sort."""
    present = [r for r in rows if r.values.get(column) is not None]
    empty = [r for r in rows if r.values.get(column) is None]

    def key(row: ModelRow) -> tuple:
        value = row.values[column]
        return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value).lower())
    return sorted(present, key=key, reverse=descending) + empty


def choices(rows: list[ModelRow], column: str) -> list[str]:
    return sorted({str(r.values[column]) for r in rows if r.values.get(column) is not None})


# ---- diffs ---------------------------------------------------------------------------------------------------
def snapshot_drift(on_disk: list[dict], current: list[dict]) -> list[dict[str, Any]]:
    """Fields where the snapshot file differs from a fresh merge of the layers (a stale snapshot)."""
    old, new = {e["name"]: flatten(e) for e in on_disk}, {e["name"]: flatten(e) for e in current}
    rows = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old or name not in new:
            rows.append({"name": name, "field": "(whole model)", "snapshot": "present" if name in old else "absent",
                         "layers": "present" if name in new else "absent"})
            continue
        for path in sorted(old[name].keys() | new[name].keys()):
            if old[name].get(path) != new[name].get(path):
                rows.append({"name": name, "field": path, "snapshot": old[name].get(path),
                             "layers": new[name].get(path)})
    return rows


def text_diff(before: str, after: str, before_label: str, after_label: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        before_label, after_label))


def fact_rows(entry: dict, sources: dict[str, str]) -> list[dict[str, Any]]:
    """The read-only part of an entry for the editor: every fact leaf with the layer it came from."""
    return [{"field": path, "value": cell_text(value), "source": sources.get(path) or "discovered"}
            for path, value in sorted(flatten(entry).items())
            if field_class(path) is FieldClass.FACT and value is not None]


def curated_text(registry: Registry) -> str:
    return (registry.curated_layer().raw or b"[]\n").decode("utf-8")


def history_diff(registry: Registry, item_id: str) -> str:
    """What restoring a history item would change in the curated file, as a unified diff."""
    old = registry.history.raw(item_id).decode("utf-8")
    return text_diff(curated_text(registry), old, "curated (now)", f"curated ({item_id})")


def history_labels(items: list[Any]) -> dict[str, str]:
    """Each history item (newest first) labelled by what that version is: the write that made it and when, and the
    write that replaced it. An item holds the curated file as it was before its own write (`reason`, `saved_at`)."""
    labels = {}
    for index, item in enumerate(items):
        made = items[index + 1] if index + 1 < len(items) else None
        origin = (f"version after \u201c{made.reason}\u201d, saved {made.saved_at}" if made
                  else f"oldest kept version (before {item.saved_at})")
        labels[item.id] = f"{origin} · replaced {item.saved_at} by \u201c{item.reason}\u201d"
    return labels


def cell_text(value: Any) -> str:
    """A diff cell: JSON for anything but plain strings, empty for no value."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def start_scan_job(jobs: JobRegistry, registry: Registry, admin: ProxyAdmin, paths: list[str] | None = None,
                   dry_run: bool = False) -> Job:
    """Scan `paths` (default: the model roots) as a background job (kind `scan`, one per registry folder at a time):
    discovered facts, stubs for new models, rebuild, proxy reload, each model logged; a dry run writes nothing and
    says what a scan would change. The job's result is the ScanResult."""
    from modelreg.discovery.scan import default_roots, scan  # gguf, numpy and the hub: not for `modelreg list`
    from modelreg.proxy.client import reload_report

    roots = paths or [str(r) for r in default_roots(registry.settings)]

    def work(job: Job) -> ScanResult:
        job.set_progress(None, ("dry run: " if dry_run else "scanning ") + ", ".join(roots))
        result = scan(registry, paths or None, dry_run=dry_run)
        for model in result.models:
            job.log(f"{model['status']:>9}  {model['name']}  ({model['format']}, {model['path']})")
        for name in result.missing:
            job.log(f"  missing  {name}")
        for problem in result.problems:
            job.log(f"  problem  {problem}")
        job.log(f"stubs {'to create' if dry_run else 'created'}: {', '.join(result.stubs) or 'none'}")
        if not dry_run:
            job.log(reload_report(admin, registry.snapshot().revision).message)
        return result

    return jobs.start("scan", work, key=str(registry.config_dir), title="dry run" if dry_run else "rescan")
