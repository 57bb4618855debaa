"""modelreg: a layered model registry for local LLMs (discovered facts, curated configuration, one merged snapshot)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelreg.errors import (
    BadInput,
    ConfigFieldInDiscovered,
    ConflictError,
    FactFieldRefused,
    InvalidRegistry,
    RegistryError,
    UnknownModel,
)

if TYPE_CHECKING:
    from modelreg.registry import Registry, Snapshot

__version__ = "0.2.0"

__all__ = [
    "BadInput",
    "ConfigFieldInDiscovered",
    "ConflictError",
    "FactFieldRefused",
    "InvalidRegistry",
    "Registry",
    "RegistryError",
    "Snapshot",
    "UnknownModel",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Registry and Snapshot load pydantic; commands that never touch a registry (`--help`) start without it.
    if name in ("Registry", "Snapshot"):
        from modelreg import registry
        return getattr(registry, name)
    raise AttributeError(f"module 'modelreg' has no attribute {name!r}")
