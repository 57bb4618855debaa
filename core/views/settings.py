"""The Settings page as plain data: which of a form's values change the settings."""
from __future__ import annotations

import json
from typing import Any

from modelreg.errors import BadInput
from modelreg.settings import Settings


def changed_settings(settings: Settings, values: dict[str, Any]) -> dict[str, Any]:
    """The settings among a form's `values` that differ from `settings`, compared as JSON (the form's list for a
    port range is the same as the settings' pair with the same numbers)."""
    current = settings.model_dump(mode="json")
    return {name: value for name, value in values.items() if json.loads(json.dumps(value)) != current[name]}


HOST_COLUMNS = ("name", "url", "profile", "api_key_env", "admin_token_env")


def host_rows(settings: Settings) -> list[dict[str, Any]]:
    """The `hosts` setting as table rows (one per host, its name first)."""
    return [{"name": name, **host.model_dump(mode="json")} for name, host in settings.hosts.items()]


def hosts_from_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Table rows back to the `hosts` setting: blank rows dropped, blank cells left out; the settings writer checks
    each value. A row without a name, or a name twice, is refused."""
    hosts: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, 1):
        cells = {column: str(row.get(column) or "").strip() for column in HOST_COLUMNS}
        if not any(cells.values()):
            continue
        name = cells.pop("name")
        if not name:
            raise BadInput(f"hosts, row {number}: give the host a name")
        if name in hosts:
            raise BadInput(f"hosts, row {number}: the name {name!r} is used twice")
        hosts[name] = {column: value for column, value in cells.items() if value}
    return hosts
