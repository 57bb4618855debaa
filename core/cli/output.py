"""What every command shares: the registry from the global options, and printing text, tables and JSON."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from functools import cache
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from rich.console import Console

    from modelreg.registry import Registry


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=argparse.SUPPRESS,
                        help="registry folder (default: $MODELREG_CONFIG_DIR, else ./configs if it exists, else "
                             "the user's config folder, ~/.config/modelreg on Linux)")
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


def no_color() -> bool:
    """https://no-color.org: a non-empty NO_COLOR turns every colour and style off."""
    return bool(os.environ.get("NO_COLOR"))


@cache
def console(stderr: bool = False) -> "Console":
    """rich's console, imported on first use (only the commands that draw tables or bars pay for rich)."""
    from rich.console import Console
    return Console(soft_wrap=True, stderr=stderr, color_system=None if no_color() else "auto")


def shell_args(args: Iterable[Any] | None) -> str:
    """Arguments as one shell line, each quoted where the shell would split or expand it."""
    return shlex.join(str(a) for a in args or [])


TSV_HELP = "print tab-separated values with a header line (tabs and newlines in values escaped)"


def say(text: str, stderr: bool = False, end: str = "\n") -> None:
    """Plain text: registry names and values are printed as they are, never read as markup, and control characters
    are shown escaped, never sent to the terminal."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(plain(text) + end)
    stream.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False).translate(_INERT_JSON) + "\n")


def print_table(headers: Iterable[str | tuple[str, dict]], rows: Iterable[Iterable[Any]], tsv: bool = False) -> None:
    """A table whose cells are plain text (a name like `m[/x]` prints as written, control characters escaped): on a
    terminal a rich table (a header may be (title, rich Column options)); into a pipe or file plain columns aligned
    with spaces, or with `tsv` tab-separated values; either way one row per line, nothing cut, no colour."""
    titles = [h[0] if isinstance(h, tuple) else h for h in headers]
    cells = [["" if cell is None else plain(str(cell), cell=True) for cell in row] for row in rows]
    if tsv or not sys.stdout.isatty():
        lines = [titles, *cells]
        widths = None if tsv else [max(len(line[i]) for line in lines) for i in range(len(titles))]
        sys.stdout.write("".join(_line(line, widths) for line in lines))
        sys.stdout.flush()
        return
    from rich.table import Column, Table
    from rich.text import Text
    table = Table(*(Column(h[0], **h[1]) if isinstance(h, tuple) else h for h in headers))
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    console().print(table)


def _line(cells: list[str], widths: list[int] | None) -> str:
    """One row: tab-separated (no widths), or each cell padded to its column's width."""
    if widths is None:
        return "\t".join(cells) + "\n"
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() + "\n"
