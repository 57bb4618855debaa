"""The model editor as plain data: editable fields, form text to a curated patch, and a live launch preview."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from modelreg.errors import BadInput, RegistryError
from modelreg.fields import field_kind
from modelreg.launch.backends import BACKENDS
from modelreg.launch.checks import problems_by_field
from modelreg.launch.plan import LaunchPlan, launch_plan
from modelreg.merge import MergedEntry, entry_layers, merge_entry, split_curated
from modelreg.paths import get_path, remove_path, set_path
from modelreg.registry import UNSET, Registry, check_editable
from modelreg.settings import Settings
from modelreg.values import NOT_SET, format_value, parse_value


@dataclass(frozen=True)
class EditorField:
    """One curated-editable field: its dotted path, label and widget kind."""

    path: str
    label: str
    help: str = ""

    @property
    def kind(self) -> str:
        return field_kind(self.path)


EDITOR_FIELDS: tuple[EditorField, ...] = (
    EditorField("backend", "backend", "which server runs the model"),
    EditorField("backend_config.port", "port", "port the backend listens on"),
    EditorField("backend_config.extra_args", "extra_args",
                "extra command-line arguments as shell text (--max-model-len 4096 --enforce-eager) or a JSON list"),
    EditorField("backend_config.model_path", "model path", "file or folder the backend loads"),
    EditorField("backend_config.host", "host", "address the backend binds (default from settings)"),
    EditorField("backend_config.ready_timeout", "ready timeout (s)", "seconds a start may take"),
    EditorField("backend_config.exclusive_group", "exclusive group",
                "starting this model stops the group's other running models"),
    EditorField("backend_config.idle_ttl", "idle ttl (s)", "stop after this many idle seconds"),
    EditorField("backend_config.api_key_env", "API key variable",
                "name of the environment variable holding the backend's API key (never the key itself)"),
    EditorField("backend_config.max_concurrency", "max concurrency",
                "requests in flight at once; more get 429 with Retry-After"),
    EditorField("display_name", "display name"),
    EditorField("served_model_id", "served model id", "the name clients send as `model`"),
    EditorField("quantization", "quantization"),
    EditorField("family", "family"),
    EditorField("capabilities.vision", "vision"),
    EditorField("capabilities.tools", "tools"),
    EditorField("capabilities.embedding", "embedding"),
    EditorField("roles", "roles", "comma-separated, e.g. chat, vision"),
    EditorField("model_aliases", "aliases", "other names the proxy accepts, comma-separated"),
    EditorField("deprecated", "deprecated", "hidden from /v1/models"),
    EditorField("generation_defaults", "generation defaults",
                'JSON object, e.g. {"temperature": 0.7, "context_window": 8192}'),
    EditorField("role_priority", "role priority", 'JSON object, e.g. {"chat": 10}'),
    EditorField("chat_template", "chat template", 'JSON object {"source", "path", "sha256"}'),
)
FIELDS_BY_PATH = {f.path: f for f in EDITOR_FIELDS}


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
        entry = {"name": self.name, **({"profile": self.profile} if self.profile else {}),
                 **copy.deepcopy(self.layer())}
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
        return merge_entry(self.name, entry_layers(self.discovered, base, chosen, self.profile))

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
        return format_value(self.value, self.spec.kind)


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
               extra: dict[str, Any] | None = None,
               settings: Settings | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Form texts to the curated changes (value or UNSET) of fields that changed, and errors by path.

    `resets` are fields whose override is removed. `extra` sets other fields (path -> value); facts are refused
    here with a clear message, and the core refuses them again on write. With `settings`, the errors also hold every
    launch check of the edited entry (see modelreg.launch.checks): what the real backend would reject is an error
    of its field, so the editor never saves it.
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
            value = parse_value(text, state.spec.kind, state.spec.label)
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
    if settings is not None:
        launch_errors, _notes = problems_by_field(target.merged(changes).entry, settings)
        errors = {**launch_errors, **errors}
    return changes, errors


def field_notes(target: EditTarget, changes: dict[str, Any], settings: Settings) -> dict[str, list[str]]:
    """Notes by field for the edited entry (a flag spelling the backend reads as another flag)."""
    return problems_by_field(target.merged(changes).entry, settings)[1]


def args_preview(text: str) -> str | None:
    """The argument list the extra_args text parses to, as JSON (None when it does not parse)."""
    try:
        value = parse_value(text, "args")
    except BadInput:
        return None
    return json.dumps(value or [])


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
