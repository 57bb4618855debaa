"""What every command shares: the registry from the global options, and printing text, tables and JSON."""
from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from rich.console import Console

    from modelreg.registry import Registry


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=argparse.SUPPRESS,
                        help="registry folder (default: $MODELREG_CONFIG_DIR, else ./configs)")
    parser.add_argument("--profile", default=argparse.SUPPRESS,
                        help="active profile (default: $MODELREG_PROFILE, else the settings file)")


def registry_from_args(args: argparse.Namespace, create: bool = False, reads_snapshot: bool = False) -> "Registry":
    """The registry the global options name. `create`: the command initialises a registry (else a missing folder is
    an error and nothing is created); `reads_snapshot`: warn on stderr when the snapshot on disk is stale."""
    from modelreg.registry import Registry
    registry = Registry(args.config_dir, args.profile, create=create)
    if reads_snapshot:
        stale = registry.snapshot_staleness()
        if stale:
            say(f"modelreg: warning: {stale}", stderr=True)
    return registry


# Characters a terminal acts on instead of showing: C0 controls but newline and tab (ESC starts colour, cursor and
# title sequences; CR overwrites the line), DEL, C1 controls (0x9b is a one-byte CSI), and the bidirectional
# overrides that reorder what is shown. Each is shown as its Python escape (`\x1b`), never sent raw.
_INERT = {c: chr(c).encode("unicode_escape").decode("ascii")
          for c in [*range(0x00, 0x20), *range(0x7f, 0xa0), *range(0x202a, 0x202f), *range(0x2066, 0x206a)]
          if chr(c) not in "\n\t"}
_INERT_CELL = {**_INERT, ord("\n"): "\\n", ord("\t"): "\\t"}
_INERT_JSON = {c: f"\\u{c:04x}" for c in _INERT if c >= 0x7f}  # json.dumps already escapes C0 controls


def plain(text: str, cell: bool = False) -> str:
    """`text` with every character a terminal would act on shown as an escape (in a table cell, newlines too)."""
    return text.translate(_INERT_CELL if cell else _INERT)


@cache
def console(stderr: bool = False) -> "Console":
    """rich's console, imported on first use (only the commands that draw tables or bars pay for rich)."""
    from rich.console import Console
    return Console(soft_wrap=True, stderr=stderr)


def say(text: str, stderr: bool = False, end: str = "\n") -> None:
    """Plain text: registry names and values are printed as they are, never read as markup, and control characters
    are shown escaped, never sent to the terminal."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(plain(text) + end)
    stream.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False).translate(_INERT_JSON) + "\n")


def print_table(headers: Iterable[str | tuple[str, dict]], rows: Iterable[Iterable[Any]]) -> None:
    """A rich table whose cells are plain text (a name like `m[/x]` prints as written, control characters escaped);
    a header may be (title, rich Column options)."""
    from rich.table import Column, Table
    from rich.text import Text
    table = Table(*(Column(h[0], **h[1]) if isinstance(h, tuple) else h for h in headers))
    for row in rows:
        table.add_row(*(Text("" if cell is None else plain(str(cell), cell=True)) for cell in row))
    console().print(table)
