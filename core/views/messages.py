"""The library's messages as a GUI user reads them: a command-line fix becomes the page and field that make it."""
from __future__ import annotations

import re

_NAME = r"(?:'[^']*'|[^\s`]+)"  # a model name as a message writes it, shell-quoted or bare
_REWRITES = (
    (re.compile(rf"`?modelreg set {_NAME} (?P<path>[\w.]+) (?P<value>[^`)\n]*?)`?(?=\)|$|\n|;)"),
     r"in the Model editor, set \g<path> to \g<value>"),
    (re.compile(rf"`?modelreg set {_NAME} (?P<path>[\w.]+)`?"), r"in the Model editor, set \g<path>"),
    (re.compile(rf"`?modelreg unset {_NAME} (?P<path>[\w.]+)`?"), r"in the Model editor, reset \g<path>"),
    (re.compile(r"`?modelreg migrate`?"), "Migrate on the Settings & status page"),
    (re.compile(r"`?modelreg scan(?: PATH)?`?"), "a Rescan on the Model folders page"),
    (re.compile(r'settings\.json "executables"'), "Settings & status (executables)"),
    (re.compile(r"set its full path in settings\.json"), "set its full path on the Settings & status page"),
)


def in_gui(message: object) -> str:
    """`message` with every `modelreg ...` fix it names told as the GUI's way to do it."""
    text = str(message)
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text
