"""The model editor as plain data: editable fields, form text to a curated patch, and a live launch preview."""
from __future__ import annotations

import copy
import json
import shlex
from dataclasses import dataclass
from typing import Any

from core.errors import BadInput, RegistryError
from core.launch import BACKENDS, LaunchPlan, launch_plan
from core.merge import MergedEntry, merge_entry, split_curated
from core.registry import UNSET, Registry, check_editable, get_path, remove_path, set_path
from core.settings import Settings

NOT_SET = "(not set)"


@dataclass(frozen=True)
class EditorField:
    """One curated-editable field: its dotted path, label and widget kind."""

    path: str
    label: str
    kind: str  # text | int | float | bool | args | list | json | backend
    help: str = ""


EDITOR_FIELDS: tuple[EditorField, ...] = (
    EditorField("backend", "backend", "backend", "which server runs the model"),
    EditorField("backend_config.port", "port", "int", "port the backend listens on"),
    EditorField("backend_config.extra_args", "extra_args", "args",
                "extra command-line arguments, shell rules: --max-model-len 4096 --enforce-eager"),
    EditorField("backend_config.model_path", "model path", "text", "file or folder the backend loads"),
    EditorField("backend_config.host", "host", "text", "address the backend binds (default from settings)"),
    EditorField("backend_config.ready_timeout", "ready timeout (s)", "float", "seconds a start may take"),
    EditorField("backend_config.exclusive_group", "exclusive group", "text",
                "starting this model stops the group's other running models"),
    EditorField("backend_config.idle_ttl", "idle ttl (s)", "float", "stop after this many idle seconds"),
    EditorField("display_name", "display name", "text"),
    EditorField("served_model_id", "served model id", "text", "the name clients send as `model`"),
    EditorField("quantization", "quantization", "text"),
    EditorField("family", "family", "text"),
    EditorField("capabilities.vision", "vision", "bool"),
    EditorField("capabilities.tools", "tools", "bool"),
    EditorField("capabilities.embedding", "embedding", "bool"),
    EditorField("roles", "roles", "list", "comma-separated, e.g. chat, vision"),
    EditorField("model_aliases", "aliases", "list", "other names the proxy accepts, comma-separated"),
    EditorField("deprecated", "deprecated", "bool", "hidden from /v1/models"),
    EditorField("generation_defaults", "generation defaults", "json",
                'JSON object, e.g. {"temperature": 0.7, "context_window": 8192}'),
    EditorField("role_priority", "role priority", "json", 'JSON object, e.g. {"chat": 10}'),
    EditorField("chat_template", "chat template", "json", 'JSON object {"source", "path", "sha256"}'),
)
FIELDS_BY_PATH = {f.path: f for f in EDITOR_FIELDS}


def format_value(spec: EditorField, value: Any) -> str:
    """The widget text for a value (the inverse of parse_value)."""
    if value is None:
        return NOT_SET if spec.kind in ("bool", "backend") else ""
    if spec.kind == "args":
        return shlex.join(str(v) for v in value) if isinstance(value, list) else str(value)
    if spec.kind == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if spec.kind == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    if spec.kind == "bool":
        return "true" if value else "false"
    return str(value)


def parse_value(spec: EditorField, text: str) -> Any:
    """Widget text to a value (None: no value in this layer); BadInput names the field and what to write."""
    text = (text or "").strip()
    if text in ("", NOT_SET):
        return None
    if spec.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise BadInput(f"{spec.label}: {text!r} is not a whole number; write e.g. 24001") from None
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise BadInput(f"{spec.label}: {text!r} is not a number; write e.g. 600") from None
    if spec.kind == "bool":
        return text == "true"
    if spec.kind == "args":
        try:
            return shlex.split(text)
        except ValueError as exc:
            raise BadInput(f"{spec.label}: cannot split {text!r} with shell rules ({exc}); close the quote") from None
    if spec.kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    if spec.kind == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{spec.label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if not isinstance(value, dict):
            raise BadInput(f"{spec.label}: expected a JSON object {{...}}, got {type(value).__name__}")
        return value
    return text


@dataclass
class EditTarget:
    """One model's layers as read at one curated revision, and which curated entry (base or a profile) is edited."""

    name: str
    profile: str | None
    discovered: dict | None
    base: dict | None
    profile_entry: dict | None
    curated_revision: str

    def layer(self) -> dict:
        """The curated entry being edited (empty when it does not exist yet)."""
        return (self.profile_entry if self.profile else self.base) or {}

    def edited_layer(self, changes: dict[str, Any]) -> dict:
        """The edited curated entry as it would be written with `changes` (value or UNSET per path)."""
        entry = {"name": self.name, **({"profile": self.profile} if self.profile else {}), **copy.deepcopy(self.layer())}
        for path, value in changes.items():
            if value is UNSET:
                remove_path(entry, path)
            else:
                set_path(entry, path, copy.deepcopy(value))
        return entry

    def merged(self, changes: dict[str, Any] | None = None) -> MergedEntry:
        """The merged entry for the edited profile, with `changes` applied to the edited layer."""
        base, chosen = self.base, self.profile_entry
        if changes:
            edited = self.edited_layer(changes)
            base, chosen = (base, edited) if self.profile else (edited, chosen)
        return merge_entry(self.name, self.discovered, base, chosen, self.profile)

    def under_value(self, path: str) -> Any:
        """The value the field falls back to when the edited layer's value is removed."""
        return get_path(self.merged({path: UNSET}).entry, path)


def load_target(registry: Registry, name: str, profile: str | None) -> EditTarget:
    """Read the layers once; the curated revision is the one the entries were read at."""
    curated = registry.curated_layer()
    base, chosen = split_curated(curated.entries, profile)
    found = next((e for e in registry.discovered_entries() if e.get("name") == name), None)
    if found is None and name not in base:
        registry.entry(name)  # raises UnknownModel with close names
    return EditTarget(name, profile, found, base.get(name), chosen.get(name) if profile else None, curated.revision)


@dataclass
class FieldState:
    """What the editor shows for one field."""

    spec: EditorField
    value: Any              # effective (merged) value
    source: str | None      # layer label of the effective value
    discovered: Any         # the discovered value (what "reset" returns to for the base entry)
    in_layer: bool          # the edited curated entry sets this field
    overrides: bool         # the effective value replaces a different discovered value

    @property
    def text(self) -> str:
        return format_value(self.spec, self.value)


def field_states(target: EditTarget) -> list[FieldState]:
    merged = target.merged()
    layer = target.layer()
    out = []
    for spec in EDITOR_FIELDS:
        value = get_path(merged.entry, spec.path)
        out.append(FieldState(spec, value, merged.sources.get(spec.path), get_path(target.discovered or {}, spec.path),
                              get_path(layer, spec.path) is not None, spec.path in merged.overridden))
    return out


def form_patch(target: EditTarget, texts: dict[str, str], resets: set[str] = frozenset(),
               extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Form texts to the curated changes (value or UNSET) of fields that changed, and errors by path.

    `resets` are fields whose override is removed. `extra` sets other fields (path -> value); facts are refused
    here with a clear message, and the core refuses them again on write.
    """
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    layer = target.layer()
    for state in field_states(target):
        path = state.spec.path
        if path in resets:
            if get_path(layer, path) is not None:
                changes[path] = UNSET
            continue
        text = texts.get(path)
        if text is None or text == state.text:
            continue
        try:
            value = parse_value(state.spec, text)
        except BadInput as exc:
            errors[path] = str(exc)
            continue
        if value is None:
            if get_path(layer, path) is not None:
                changes[path] = UNSET
        elif value != state.value:
            changes[path] = value
    for path, value in (extra or {}).items():
        try:
            check_editable(path)
        except RegistryError as exc:
            errors[path] = str(exc)
            continue
        changes[path] = value
    return changes, errors


def launch_preview(entry: dict, settings: Settings) -> tuple[LaunchPlan | None, str | None]:
    """The launch plan of an (edited) merged entry, or the launch module's error for it."""
    try:
        return launch_plan(entry, settings), None
    except RegistryError as exc:
        return None, str(exc)


def backend_choices(current: Any) -> list[str]:
    extra = [current] if isinstance(current, str) and current not in BACKENDS else []
    return [NOT_SET, *BACKENDS, *extra]


def profiles_of(registry: Registry) -> list[str]:
    """Profiles named in the settings or in curated entries."""
    named = set(registry.settings.profiles) | {e["profile"] for e in registry.curated_entries() if e.get("profile")}
    if registry.profile:
        named.add(registry.profile)
    return sorted(named)
