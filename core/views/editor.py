"""The model editor as plain data: editable fields, form text to a curated patch, and a live launch preview."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, AbstractSet, Any

from modelreg.errors import BadInput, RegistryError
from modelreg.fields import field_kind
from modelreg.launch.advice.fit import CONTEXT_FIELD, context_change, context_places, effective_context, place_field
from modelreg.launch.backends import BACKENDS
from modelreg.launch.planning.checks import launch_check, problems_by_field
from modelreg.launch.planning.plan import CheckedConfig, LaunchPlan, launch_plan
from modelreg.merge import MergedEntry, entry_layers, merge_entry, split_curated
from modelreg.paths import get_path, remove_path, set_path
from modelreg.registry import UNSET, Registry, check_editable
from modelreg.values import NOT_SET, format_value, parse_value

if TYPE_CHECKING:
    from modelreg.settings import Settings

LAUNCH, GENERATION, ROUTING, DISPLAY = "Launch", "Generation", "Routing", "Display & metadata"
GROUPS = (LAUNCH, GENERATION, ROUTING, DISPLAY)
OTHER_GENERATION = "generation_defaults"  # the JSON field for generation keys without a typed field


@dataclass(frozen=True)
class EditorField:
    """One curated-editable field: its dotted path, label, widget kind, tab, and the range a number must be in."""

    path: str
    label: str
    help: str = ""
    group: str = DISPLAY
    minimum: float | None = None
    maximum: float | None = None

    @property
    def kind(self) -> str:
        return field_kind(self.path)


EDITOR_FIELDS: tuple[EditorField, ...] = (
    EditorField("backend", "backend", "which server runs the model", LAUNCH),
    EditorField("backend_config.port", "port", "port the backend listens on (1-65535; checked with the launch)",
                LAUNCH),
    EditorField("backend_config.extra_args", "extra_args",
                "extra command-line arguments as shell text (--max-model-len 4096 --enforce-eager) or a JSON list",
                LAUNCH),
    EditorField("chat_template", "chat template", 'JSON object {"source", "path", "sha256"}', LAUNCH),
    EditorField("backend_config.ready_timeout", "ready timeout (s)", "seconds a start may take", LAUNCH, 1),
    EditorField("backend_config.exclusive_group", "exclusive group",
                "starting this model stops the group's other running models", LAUNCH),
    EditorField("backend_config.idle_ttl", "idle ttl (s)", "stop after this many idle seconds", LAUNCH, 0),
    EditorField("backend_config.model_path", "model path", "file or folder the backend loads", LAUNCH),
    EditorField("backend_config.host", "host", "address the backend binds (default from settings)", LAUNCH),
    EditorField("backend_config.executable", "program",
                "this model's program instead of the settings' one (e.g. a pinned llama-server build)", LAUNCH),
    EditorField("backend_config.env", "environment",
                'JSON object of variables for the backend, e.g. {"CUDA_VISIBLE_DEVICES": "0"}; "$NAME" is read from '
                "the proxy's environment at launch (never stored)", LAUNCH),
    EditorField("backend_config.api_key_env", "API key variable",
                "name of the environment variable holding the backend's API key (never the key itself)", LAUNCH),
    EditorField("backend_config.max_concurrency", "max concurrency",
                "requests in flight at once; more get 429 with Retry-After", LAUNCH, 1),
    EditorField("backend_config.loading_state", "loading state",
                "what a streamed request shows while the model starts: reasoning (progress as reasoning text), "
                "comments (SSE comments) or off; empty: the setting", LAUNCH),
    EditorField("generation_defaults.temperature", "temperature",
                "sampling temperature, 0 (greedy) to 2; the proxy fills it in when a request leaves it out",
                GENERATION, 0, 2),
    EditorField("generation_defaults.top_p", "top_p", "nucleus sampling: keep the smallest set of tokens whose "
                "probabilities add up to this, 0 to 1", GENERATION, 0, 1),
    EditorField("generation_defaults.top_k", "top_k", "sample from the k most likely tokens (-1 or 0: all)",
                GENERATION, -1),
    EditorField("generation_defaults.max_tokens", "max_tokens", "longest reply in tokens", GENERATION, 1),
    EditorField("generation_defaults.presence_penalty", "presence penalty",
                "-2 to 2: positive values favour new topics", GENERATION, -2, 2),
    EditorField("generation_defaults.frequency_penalty", "frequency penalty",
                "-2 to 2: positive values discourage repeating tokens", GENERATION, -2, 2),
    EditorField("generation_defaults.stop_sequences", "stop sequences",
                "comma-separated texts that end the reply (sent as `stop`)", GENERATION),
    EditorField(CONTEXT_FIELD, "context window",
                "the model's one context size, shown and changed where it lives: this field, or the backend's context "
                "flag in extra_args (-c/--ctx-size, --max-model-len, --n_ctx, --num-ctx); two that differ are an error",
                GENERATION, 1),
    EditorField(OTHER_GENERATION, "other generation defaults",
                'JSON object for keys without a field above, e.g. {"min_p": 0.05, "seed": 7}', GENERATION),
    EditorField("roles", "roles", "what the proxy routes to this model as `role:<name>`", ROUTING),
    EditorField("role_priority", "role priority", 'JSON object, e.g. {"chat": 10}: the highest wins a role',
                ROUTING),
    EditorField("model_aliases", "aliases", "other names the proxy accepts, comma-separated", ROUTING),
    EditorField("served_model_id", "served model id", "the name clients send as `model`", ROUTING),
    EditorField("deprecated", "deprecated", "hidden from /v1/models", ROUTING),
    EditorField("display_name", "display name"),
    EditorField("quantization", "quantization"),
    EditorField("family", "family"),
    EditorField("capabilities.vision", "vision"),
    EditorField("capabilities.tools", "tools"),
    EditorField("capabilities.embedding", "embedding"),
)
TYPED_GENERATION = tuple(f.path.removeprefix("generation_defaults.") for f in EDITOR_FIELDS
                         if f.path.startswith("generation_defaults."))
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

    @cached_property
    def current(self) -> MergedEntry:
        """The merged entry for the edited profile as read (merged once per target, not once per rerun)."""
        return merge_entry(self.name, entry_layers(self.discovered, self.base, self.profile_entry, self.profile))

    def merged(self, changes: dict[str, Any] | None = None) -> MergedEntry:
        """The merged entry for the edited profile, with `changes` applied to the edited layer."""
        if not changes:
            return self.current
        base, chosen = self.base, self.profile_entry
        edited = self.edited_layer(changes)
        base, chosen = (base, edited) if self.profile else (edited, chosen)
        return merge_entry(self.name, entry_layers(self.discovered, base, chosen, self.profile))

    def under_value(self, path: str) -> Any:
        """The value the field shows when the edited layer's value is removed."""
        return shown_value(self.merged({path: UNSET}).entry, path)


def load_target(registry: Registry, name: str, profile: str | None) -> EditTarget:
    """One model's entries from both layers; the curated revision is the one they were read at."""
    found, curated, revision = registry.model_entries(name)
    base, chosen = split_curated(curated, profile)
    if found is None and name not in base:
        registry.entry(name)  # raises UnknownModel with close names
    return EditTarget(name, profile, found, base.get(name), chosen.get(name) if profile else None, revision)


@dataclass
class FieldState:
    """What the editor shows for one field."""

    spec: EditorField
    value: Any              # effective (merged) value
    source: str | None      # layer label of the effective value
    discovered: Any         # the discovered value (what "reset" returns to for the base entry)
    in_layer: bool          # the edited curated entry sets this field
    overrides: bool         # the effective value replaces a different discovered value
    provenance: str = ""    # where the value shown comes from, true for every value (null and objects included)

    @property
    def text(self) -> str:
        return format_value(self.value, self.spec.kind)


def field_value(entry: dict | None, path: str) -> Any:
    """A field's value in an entry; the "other generation defaults" field holds only the keys without a field."""
    value = get_path(entry or {}, path)
    if path == OTHER_GENERATION and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in TYPED_GENERATION} or None
    return value


def shown_value(entry: dict | None, path: str) -> Any:
    """What the editor shows for a field: its value, except the context field, which shows the entry's one effective
    context wherever it lives."""
    return effective_context(entry or {}) if path == CONTEXT_FIELD else field_value(entry, path)


def context_provenance(entry: dict, sources: dict[str, str]) -> str:
    """Where the effective context is set: each place with its layer."""
    by_layer: dict[str, list[str]] = {}
    for place in context_places(entry):
        by_layer.setdefault(sources.get(place_field(place), "?"), []).append(place)
    if not by_layer:
        return "not set"
    return "from " + "; ".join(f"{label}: {' and '.join(places)}" for label, places in by_layer.items())


def provenance(path: str, value: Any, sources: dict[str, str], layer_holds_null: bool = False) -> str:
    """Which layer the value of `path` comes from: one label, the labels of an object's fields, or "not set"."""
    if value is None:
        return "not set" + (" (the edited entry holds null: no opinion)" if layer_holds_null else "")
    if path in sources:
        return f"from {sources[path]}"
    leaves = {p: label for p, label in sources.items() if p.startswith(path + ".")}
    if path == OTHER_GENERATION:
        leaves = {p: label for p, label in leaves.items() if p.split(".")[1] not in TYPED_GENERATION}
    labels = sorted(set(leaves.values()))
    if not labels:
        return "derived"
    if len(labels) == 1:
        return f"from {labels[0]}"
    parts = [f"{label} ({', '.join(sorted(p[len(path) + 1:] for p, of in leaves.items() if of == label))})"
             for label in labels]
    return "from " + "; ".join(parts)


def _holds_null(layer: dict, path: str) -> bool:
    parent, _, key = path.rpartition(".")
    node = get_path(layer, parent) if parent else layer
    return isinstance(node, dict) and key in node and node[key] is None


def field_states(target: EditTarget) -> list[FieldState]:
    merged = target.current
    layer = target.layer()
    out = []
    for spec in EDITOR_FIELDS:
        value = shown_value(merged.entry, spec.path)
        where = (context_provenance(merged.entry, merged.sources) if spec.path == CONTEXT_FIELD else
                 provenance(spec.path, value, merged.sources, _holds_null(layer, spec.path)))
        out.append(FieldState(spec, value, merged.sources.get(spec.path), shown_value(target.discovered, spec.path),
                              field_value(layer, spec.path) is not None, spec.path in merged.overridden, where))
    return out


def out_of_range(spec: EditorField, value: Any) -> str | None:
    """Why a number is outside the field's range, or None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if spec.minimum is not None and value < spec.minimum:
        return f"{spec.label}: {value:g} is below the minimum {spec.minimum:g}"
    if spec.maximum is not None and value > spec.maximum:
        return f"{spec.label}: {value:g} is above the maximum {spec.maximum:g}"
    return None


def _other_generation_changes(layer: dict, old: Any, new: Any) -> dict[str, Any]:
    """The "other generation defaults" object as per-key changes, so the typed keys beside it are kept."""
    if new is not None and not isinstance(new, dict):
        raise BadInput(f'{FIELDS_BY_PATH[OTHER_GENERATION].label}: expected a JSON object such as {{"seed": 7}}')
    old, new = old or {}, new or {}
    changes: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        path = f"{OTHER_GENERATION}.{key}"
        if key in TYPED_GENERATION:
            raise BadInput(f"{FIELDS_BY_PATH[OTHER_GENERATION].label}: {key} has its own field; set it there")
        if key not in new:
            if get_path(layer, path) is not None:
                changes[path] = UNSET
        elif new[key] != old.get(key):
            changes[path] = new[key]
    return changes


def form_patch(target: EditTarget, texts: dict[str, str], resets: AbstractSet[str] = frozenset(),
               extra: dict[str, Any] | None = None,
               settings: Settings | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Form texts to the curated changes (value or UNSET) of fields that changed, and errors by path.

    `resets` are fields whose override is removed. `extra` sets other fields (path -> value); facts are refused
    here with a clear message, and the core refuses them again on write. With `settings`, the errors also hold every
    launch check of the edited entry (see modelreg.launch.planning.checks): what the real backend would reject is an
    error of its field, so the editor never saves it.
    """
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    layer = target.layer()
    context: tuple[int | None] | None = None  # the context typed in its field, written where it lives
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
            if path == OTHER_GENERATION:
                changes.update(_other_generation_changes(layer, state.value, value))
                continue
        except BadInput as exc:
            errors[path] = str(exc)
            continue
        problem = out_of_range(state.spec, value)
        if problem:
            errors[path] = problem
            continue
        if path == CONTEXT_FIELD and value != state.value:
            context = (value,)
        elif value is None:
            if get_path(layer, path) is not None:
                changes[path] = UNSET
        elif value != state.value:
            changes[path] = value
    if context is not None:  # where the context lives after the form's other changes (extra_args typed too)
        entry = target.merged(changes).entry
        homes = context_change(entry, context[0]) if context_places(entry) else {CONTEXT_FIELD: context[0]}
        changes.update({p: UNSET if value is None else value for p, value in homes.items()})
    for path, value in (extra or {}).items():
        try:
            check_editable(path)
        except RegistryError as exc:
            errors[path] = str(exc)
            continue
        changes[path] = value
    if settings is not None:
        errors = {**check_edit(target, changes, settings).errors, **errors}
    return changes, errors


@dataclass
class EditCheck:
    """The edited entry, merged once, with its launch check and launch plan, each made once (for one rerun)."""

    edited: MergedEntry
    errors: dict[str, str] = field(default_factory=dict)       # launch errors by field
    notes: dict[str, list[str]] = field(default_factory=dict)  # notes by field (a flag read as another)
    plan: LaunchPlan | None = None
    plan_error: str | None = None


def check_edit(target: EditTarget, changes: dict[str, Any], settings: Settings) -> EditCheck:
    """The edited entry's merge, launch check and launch plan: what the editor shows below and beside the form."""
    edited = target.merged(changes)
    problems, checked = launch_check(edited.entry, settings)
    errors, notes = problems_by_field(problems)
    plan, plan_error = launch_preview(edited.entry, settings, checked)
    return EditCheck(edited, errors, notes, plan, plan_error)


def args_preview(text: str) -> str | None:
    """The argument list the extra_args text parses to, as JSON (None when it does not parse)."""
    try:
        value = parse_value(text, "args")
    except BadInput:
        return None
    return json.dumps(value or [])


def launch_preview(entry: dict, settings: Settings,
                   checked: CheckedConfig | None = None) -> tuple[LaunchPlan | None, str | None]:
    """The launch plan of an (edited) merged entry, or the launch module's error for it (`checked`: its launch check,
    when already made)."""
    try:
        return launch_plan(entry, settings, checked), None
    except RegistryError as exc:
        return None, str(exc)


def backend_choices(current: Any) -> list[str]:
    extra = [current] if isinstance(current, str) and current not in BACKENDS else []
    return [NOT_SET, *BACKENDS, *extra]


def known_roles(entries: list[dict]) -> list[str]:
    """Every role some entry already has (the roles a multiselect offers)."""
    return sorted({str(r) for e in entries for r in (e.get("roles") or []) if isinstance(e.get("roles"), list)})


def priority_text(priorities: dict[str, float | None]) -> str:
    """Role priorities typed as numbers, as the role_priority field's text (roles without a number left out)."""
    chosen = {role: (int(p) if float(p).is_integer() else p) for role, p in priorities.items() if p is not None}
    return format_value(chosen, "json") if chosen else ""


def pending_summary(changes: dict[str, Any]) -> str:
    return ", ".join(f"unset {p}" if v is UNSET else f"set {p}" for p, v in changes.items())


def profiles_of(registry: Registry) -> list[str]:
    """Profiles named in the settings or in curated entries."""
    named = set(registry.settings.profiles) | {e["profile"] for e in registry.curated_entries() if e.get("profile")}
    if registry.profile:
        named.add(registry.profile)
    return sorted(named)


def edited_paths(target: EditTarget, texts: dict[str, str]) -> list[str]:
    """The fields whose form text differs from the loaded entry's, parsed or not: what Discard drops (a value that
    does not parse yet, an unbalanced quote in extra_args, is an unsaved change too)."""
    return [s.spec.path for s in field_states(target) if texts.get(s.spec.path, s.text) != s.text]


def unsaved_summary(changes: dict[str, Any], edited: list[str]) -> str:
    """The pending changes, then the edited fields that do not parse yet."""
    unparsed = [path for path in edited if path not in changes and not any(p.startswith(path + ".") for p in changes)]
    return ", ".join(filter(None, [pending_summary(changes), ", ".join(f"{p} (not valid yet)" for p in unparsed)]))


@dataclass(frozen=True)
class FieldConflict:
    """One field both this form and another writer changed, differently: the form's value and the file's now."""

    path: str
    mine: Any    # UNSET: the form removes it
    theirs: Any  # UNSET: the file on disk does not set it


def conflicts(target: EditTarget, fresh: EditTarget, changes: dict[str, Any]) -> list[FieldConflict]:
    """The fields of `changes` that the curated entry on disk (`fresh`) changed too, to another value, since the
    form was loaded from `target`; the form's other changes apply over the disk version as they are."""
    loaded, now, mine = target.layer(), fresh.layer(), target.edited_layer(changes)
    out = []
    for path in changes:
        theirs, before, value = (get_path(entry, path, UNSET) for entry in (now, loaded, mine))
        if theirs != before and theirs != value:
            out.append(FieldConflict(path, value, theirs))
    return out


def resolve(changes: dict[str, Any], keep_theirs: AbstractSet[str]) -> dict[str, Any]:
    """The changes to write over the disk version: the form's, less the fields where the disk version is kept."""
    return {path: value for path, value in changes.items() if path not in keep_theirs}


def conflict_text(value: Any, path: str) -> str:
    """One side of a conflict as the field's text ("not set" for a field that side does not hold)."""
    return "not set" if value is UNSET or value is None else format_value(value, field_kind(path)) or "[]"
