"""The Fit page as plain data: weights plus KV cache at a chosen context against the GPU budget, and the context
to write where it lives (the context field or the flag in extra_args)."""
from __future__ import annotations

from typing import Any

from modelreg.errors import RegistryError
from modelreg.launch.advice.fit import CONTEXT_FIELD, EXTRA_ARGS, context_places, estimate, place_field
from modelreg.launch.backends import SPECS, canonical_backend
from modelreg.launch.flags import with_flag, without_flag
from modelreg.registry import UNSET
from modelreg.settings import Settings


def fit_at(entry: dict[str, Any], settings: Settings, context: int) -> dict[str, Any]:
    """The fit estimate with the memory a `context`-token KV cache takes: weights + overhead + KV against budget."""
    result = estimate(entry, settings.gpu_memory, settings.gpu_memory_utilization)
    result["context"] = context
    if not result.get("known"):
        return result
    kv_bytes = result["kv_bytes_per_token"] * context
    used = result["weights_bytes"] + result["overhead_bytes"] + kv_bytes
    result.update(context_kv_bytes=kv_bytes, used_bytes=used, fits_context=used <= result["budget_bytes"],
                  free_bytes=result["budget_bytes"] - used)
    return result


def context_flag(entry: dict[str, Any]) -> tuple[str, str] | None:
    """(canonical backend, the flag that sets its context size), or None when the backend has none."""
    try:
        backend = canonical_backend(entry.get("backend"))
    except RegistryError:
        return None
    flag = SPECS[backend].context_flag
    return (backend, flag) if flag else None


def context_change(entry: dict[str, Any], context: int | None) -> dict[str, Any]:
    """The curated changes that set the entry's context (None: remove it) where it lives: in each place that holds it
    (so places that disagreed agree again), or in the context field when none does."""
    changes: dict[str, Any] = {}
    for place in context_places(entry) or {CONTEXT_FIELD: 0}:
        field = place_field(place)
        if field == EXTRA_ARGS:
            changes[field] = with_context(entry, context)
        else:
            changes[field] = UNSET if context is None else context
    return changes


def context_home(entry: dict[str, Any]) -> str:
    """Where `context_change` writes, as the Fit page's Apply names it: the context flag where extra_args hold it,
    else the context window field."""
    flags = [place.split(" ", 1)[1] for place in context_places(entry) if place_field(place) == EXTRA_ARGS]
    return flags[0] if flags else "context window"


def with_context(entry: dict[str, Any], context: int | None) -> list[str]:
    """The entry's extra_args with its backend's context flag set to `context` (an earlier value replaced; None:
    removed)."""
    found = context_flag(entry)
    if found is None:
        raise RegistryError(f"{entry.get('name')!r}: backend {entry.get('backend')!r} has no context flag to set")
    backend, flag = found
    args = [str(a) for a in (entry.get("backend_config") or {}).get("extra_args") or []]
    return without_flag(args, flag, backend) if context is None else with_flag(args, flag, str(context), backend)
