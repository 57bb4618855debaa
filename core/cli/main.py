"""`modelreg`: one argument parser over the command modules; each command imports what it needs when it runs."""
from __future__ import annotations

import argparse

from modelreg import __version__
from modelreg.cli import download, gui, hosts, imports, launch, layers, proxy, scan, up
from modelreg.cli.output import add_global_options, say
from modelreg.errors import ConflictError, RegistryError

COMMAND_MODULES = (layers, scan, launch, proxy, hosts, imports, gui, up, download)


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
        say(f"modelreg: conflict: {exc}", stderr=True)
        return 2
    except RegistryError as exc:
        say(f"modelreg: {exc}", stderr=True)
        return 2
    except OSError as exc:  # one the engine did not name (a log or model file, a socket): still one line
        say(f"modelreg: {str(exc.filename) + ': ' if exc.filename else ''}{exc.strerror or exc}", stderr=True)
        return 2
    except RecursionError:  # a file the command read without validating nests too deep
        say("modelreg: a registry file nests objects or lists too deep to process; `modelreg validate` names the "
            "file, line and field", stderr=True)
        return 2
