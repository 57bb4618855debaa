"""The Fit page as plain data: weights plus KV cache at a chosen context against the GPU budget, and the context
to write where it lives (the context field or the flag in extra_args)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelreg.errors import RegistryError
from modelreg.launch.advice.fit import context_change, context_home, estimate, with_context
from modelreg.launch.backends import SPECS, canonical_backend

if TYPE_CHECKING:
    from modelreg.settings import Settings

__all__ = ["context_change", "context_flag", "context_home", "fit_at", "with_context"]


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
