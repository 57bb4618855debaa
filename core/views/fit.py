"""The Fit page as plain data: weights plus KV cache at a chosen context against the GPU budget, and the context
flag to write into curated extra_args."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelreg.errors import RegistryError
from modelreg.launch.advice.fit import estimate
from modelreg.launch.backends import SPECS, canonical_backend
from modelreg.launch.flags import with_flag

if TYPE_CHECKING:
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


def with_context(entry: dict[str, Any], context: int) -> list[str]:
    """The entry's extra_args with its backend's context flag set to `context` (an earlier value replaced)."""
    found = context_flag(entry)
    if found is None:
        raise RegistryError(f"{entry.get('name')!r}: backend {entry.get('backend')!r} has no context flag to set")
    backend, flag = found
    return with_flag([str(a) for a in (entry.get("backend_config") or {}).get("extra_args") or []], flag,
                     str(context), backend)
