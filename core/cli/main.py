"""`modelreg`: one argument parser over the command modules; each command imports what it needs when it runs."""
from __future__ import annotations

import argparse
import sys

from modelreg import __version__
from modelreg.cli import download, gui, hosts, launch, layers, proxy, scan
from modelreg.cli.output import add_global_options
from modelreg.errors import ConflictError, RegistryError

COMMAND_MODULES = (layers, scan, launch, proxy, hosts, gui, download)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelreg", description="Layered model registry for local LLMs.")
    parser.add_argument("--version", action="version", version=f"modelreg {__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    for subparser in sub.choices.values():
        add_global_options(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config_dir = getattr(args, "config_dir", None)
    args.profile = getattr(args, "profile", None)
    try:
        return args.handler(args) or 0
    except ConflictError as exc:
        print(f"modelreg: conflict: {exc}", file=sys.stderr)
        return 2
    except RegistryError as exc:
        print(f"modelreg: {exc}", file=sys.stderr)
        return 2
