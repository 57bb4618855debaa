"""`modelreg import llama-swap`: a thin wrapper over modelreg.hosts.llama_swap_import."""
from __future__ import annotations

import argparse
import json

from modelreg.cli.output import print_json, registry_from_args, say


def cmd_import_llama_swap(args: argparse.Namespace) -> int:
    from modelreg.hosts.llama_swap_import import import_llama_swap
    registry = registry_from_args(args, create=not args.dry_run)
    result = import_llama_swap(registry, args.config, dry_run=args.dry_run)
    if args.json:
        print_json(result.to_dict())
        return 0
    for item in result.models:
        if item.skipped:
            say(f"{item.name}: SKIPPED: {item.skipped}")
        else:
            file = "facts read from its file" if item.file_found else "its file is not here (recorded as missing)"
            say(f"{item.name}: {item.backend}, {file}")
            for path, value in item.curated.items():
                say(f"  {path} = {json.dumps(value)}")
        for note in item.notes:
            say(f"  note: {note}")
        for lost in item.not_carried:
            say(f"  not carried over: {lost}")
    for lost in result.not_carried:
        say(f"config: not carried over: {lost}")
    imported = len(result.imported())
    if result.dry_run:
        say(f"dry run: {imported} of {len(result.models)} model(s) would be imported; nothing was written")
    elif result.changed:
        say(f"imported {imported} of {len(result.models)} model(s) into {registry.config_dir}")
    else:
        say(f"{imported} of {len(result.models)} model(s) already as imported; nothing changed")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import another tool's model configuration into the registry",
                       description="import another tool's configuration: each model's facts from its file into the "
                                   "discovered layer, its configuration into the curated layer")
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    t = sources.add_parser("llama-swap", help="a llama-swap config.yaml",
                           description="import a llama-swap config.yaml as llama-swap reads it (macros, ${PORT}, "
                                       "${MODEL_ID}, ${env.VAR}, aliases, groups or matrix sets); every key that "
                                       "cannot be carried over is listed per model; nothing is written on an "
                                       "error, and importing the same file again changes nothing")
    t.add_argument("config", metavar="CONFIG.yaml", help="llama-swap's config file")
    t.add_argument("--dry-run", action="store_true", help="show what would be imported; write nothing")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(handler=cmd_import_llama_swap)
