"""The Settings page as plain data: which of a form's values change the settings."""
from __future__ import annotations

import json
from typing import Any

from modelreg.settings import Settings


def changed_settings(settings: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """The settings among a form's `values` that differ from `settings`, compared as JSON (the form's list for a
    port range is the same as the settings' pair with the same numbers)."""
    current = settings.model_dump(mode="json")
    return {name: value for name, value in values.items() if json.loads(json.dumps(value)) != current[name]}
