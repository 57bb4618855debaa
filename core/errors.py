"""Errors the engine raises; each message says what is wrong, where, and what to do."""
from __future__ import annotations

import math
from typing import Any, NoReturn


class RegistryError(Exception):
    """Base of every error the CLI turns into exit status 2 with a one-line reason."""


class BadInput(RegistryError):
    """A file, argument or value that cannot be used as given."""


class StorageError(RegistryError):
    """The operating system refused a read or write (permissions, read-only or full disk, file-size limit)."""

    def __init__(self, path: Any, exc: OSError, doing: str):
        reason = exc.strerror or str(exc)
        super().__init__(f"cannot {doing} {path}: {reason}; nothing was changed (check the folder's permissions, "
                         "free space and file-size limit, then retry)")


class InvalidRegistry(RegistryError):
    """The layers do not validate; nothing was written."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s): " + "; ".join(problems[:5]))


class FactFieldRefused(RegistryError):
    """A human edit tried to write a fact (facts come from disk)."""


class ConfigFieldInDiscovered(RegistryError):
    """A machine write tried to put configuration into the discovered layer."""


class ConflictError(RegistryError):
    """The curated file changed since the caller read it; the write was refused."""

    def __init__(self, expected: str, actual: str, current_entry: Any = None):
        self.expected, self.actual, self.current_entry = expected, actual, current_entry
        super().__init__(
            f"curated layer changed since it was read (based on {expected[:12]}, now {actual[:12]}); "
            "reload and apply the edit again")


class UnknownModel(RegistryError):
    def __init__(self, name: str, close: list[str]):
        self.name, self.close = name, close
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"no model named {name!r}{hint}")


class NotAJSONNumber(ValueError):
    """NaN, Infinity, or a number beyond a double (`1e999`): Python's json module reads them (the last as inf), JSON
    has no such numbers, and no writer can write them back (str: the text as written)."""


def refuse_json_constant(name: str) -> NoReturn:
    """json.loads' `parse_constant` hook that refuses NaN, Infinity and -Infinity."""
    raise NotAJSONNumber(name)


def finite_json_float(text: str) -> float:
    """json.loads' `parse_float` hook that refuses a number too large for a double (it would be read as infinity)."""
    number = float(text)
    if not math.isfinite(number):
        raise NotAJSONNumber(text)
    return number
