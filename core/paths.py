"""Dotted field paths (`backend_config.port`) over nested dicts: get, set, remove, flatten, deep-merge."""
from __future__ import annotations

import copy
from typing import Any


def get_path(entry: dict, path: str, default: Any = None) -> Any:
    node: Any = entry
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(entry: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = entry
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def remove_path(entry: dict, path: str) -> bool:
    """Remove a dotted path and any objects it leaves empty; True when something was removed."""
    parts = path.split(".")
    chain = [entry]
    for part in parts[:-1]:
        child = chain[-1].get(part)
        if not isinstance(child, dict):
            return False
        chain.append(child)
    if parts[-1] not in chain[-1]:
        return False
    del chain[-1][parts[-1]]
    for depth in range(len(parts) - 1, 0, -1):
        if chain[depth]:
            break
        del chain[depth - 1][parts[depth - 1]]
    return True


def flatten(entry: dict, prefix: str = "") -> dict[str, Any]:
    """Leaf values by dotted path (a list or an empty object is one leaf)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        path = prefix + key
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def deep_merge(base: dict, over: dict) -> dict:
    """`over` applied onto a copy of `base`: objects merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
