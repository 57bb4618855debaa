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


def registry_from_args(args: argparse.Namespace) -> "Registry":
    from modelreg.registry import Registry
    return Registry(args.config_dir, args.profile)


@cache
def console(stderr: bool = False) -> "Console":
    """rich's console, imported on first use (only the commands that draw tables or bars pay for rich)."""
    from rich.console import Console
    return Console(soft_wrap=True, stderr=stderr)


def say(text: str, stderr: bool = False) -> None:
    """One line of plain text: registry names and values are printed as they are, never read as markup."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_table(headers: Iterable[str | tuple[str, dict]], rows: Iterable[Iterable[Any]]) -> None:
    """A rich table whose cells are plain text (a name like `m[/x]` prints as written); a header may be
    (title, rich Column options)."""
    from rich.table import Column, Table
    from rich.text import Text
    table = Table(*(Column(h[0], **h[1]) if isinstance(h, tuple) else h for h in headers))
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console().print(table)
