"""`modelreg`: thin command-line wrappers over core.registry (features add theirs via FEATURE_MODULES)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Callable

from rich.console import Console
from rich.table import Column, Table

from core.errors import ConflictError, InvalidRegistry, RegistryError
from core.fit import fit_summary
from core.merge import flatten
from core.registry import Registry, parse_value
from core.view import model_status

# Modules named core.cli_<feature> that define add_commands(subparsers).
FEATURE_MODULES: tuple[str, ...] = ("launch", "proxy", "gui", "download", "scan")

out = Console(soft_wrap=True)


def registry_from_args(args: argparse.Namespace) -> Registry:
    return Registry(args.config_dir, args.profile)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def cmd_rebuild(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).rebuild()
    out.print(f"{len(snap.entries)} models, revision {snap.revision}")


def cmd_list(args: argparse.Namespace) -> None:
    registry = registry_from_args(args)
    entries = registry.snapshot().entries
    if args.json:
        return print_json(entries)
    table = Table(Column("name", no_wrap=True), "backend", "port", "quantization",
                  Column("extra_args", overflow="fold"), Column("status", no_wrap=True))
    for e in entries:
        bc = e.get("backend_config") or {}
        table.add_row(e["name"], str(e.get("backend") or ""), str(bc.get("port") or ""),
                      str(e.get("quantization") or ""), " ".join(bc.get("extra_args") or []),
                      model_status(e, registry.settings)[0])
    out.print(table)


def cmd_show(args: argparse.Namespace) -> None:
    registry = registry_from_args(args)
    if args.provenance:
        merged = registry.merged()
        if args.name not in merged.sources:
            registry.entry(args.name)  # raises UnknownModel with close names
        doc = {"entry": merged.by_name[args.name], "provenance": merged.sources[args.name],
               "overridden": merged.overridden[args.name]}
    else:
        doc = {"entry": registry.entry(args.name)}
    if args.json:
        return print_json({**doc, "fit": fit_summary(doc["entry"], registry.settings)}
                          if args.provenance else doc["entry"])
    for path, value in sorted(flatten(doc["entry"]).items()):
        source = f"  [{doc['provenance'].get(path, '')}]" if args.provenance else ""
        out.print(f"{path} = {json.dumps(value, ensure_ascii=False)}{source}", markup=False, highlight=False)
    fit = fit_summary(doc["entry"], registry.settings)
    if fit.get("known"):
        verdict = "fits" if fit.get("fits") else "does not fit"
        out.print(f"fit: native context {fit.get('native_context')} {verdict} in {registry.settings.gpu_memory} "
                  f"at {fit['utilization']:.2f}; largest context {fit.get('max_context')}"
                  + (f"; suggested: {' '.join(fit['suggested_args'])}" if fit.get("suggested_args") else ""),
                  markup=False, highlight=False)
    else:
        out.print(f"fit: unknown ({fit.get('reason')})", markup=False, highlight=False)




def cmd_set(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).set_value(args.name, args.path, parse_value(args.value),
                                              profile=args.for_profile)
    out.print(f"set {args.name} {args.path}; revision {snap.revision}")


def cmd_unset(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).unset_value(args.name, args.path, profile=args.for_profile)
    out.print(f"unset {args.name} {args.path}; revision {snap.revision}")


def cmd_diff(args: argparse.Namespace) -> None:
    rows = registry_from_args(args).diff(args.name)
    if args.json:
        return print_json(rows)
    table = Table("field", "discovered", "curated", "merged", "status")
    for row in rows:
        if row["status"] != "unset":
            table.add_row(row["field"], *(json.dumps(row[k], ensure_ascii=False) for k in
                                          ("discovered", "curated", "merged")), row["status"])
    out.print(table)


def cmd_validate(args: argparse.Namespace) -> None:
    report = registry_from_args(args).validate()
    for warning in report.warnings:
        out.print(f"warning: {warning}", markup=False, highlight=False)
    if not report.ok:
        raise InvalidRegistry(report.errors)
    out.print(f"valid ({len(report.warnings)} warning(s))")


def cmd_migrate(args: argparse.Namespace) -> None:
    result = registry_from_args(args).migrate(dry_run=args.dry_run)
    if args.json:
        return print_json({"written": result.written, "backups": result.backups, "moves": result.moves})
    for move in result.moves:
        out.print(f"{move['name']}: {move['field']} = {json.dumps(move['value'], ensure_ascii=False)} "
                  f"-> {move['action']}", markup=False, highlight=False)
    verb = "would move" if args.dry_run else "moved"
    out.print(f"{verb} {sum(m['action'] == 'moved' for m in result.moves)} value(s), "
              f"{len(result.moves)} config field(s) out of discovered"
              + (f"; backups: {', '.join(result.backups)}" if result.backups else ""))


def cmd_stub(args: argparse.Namespace) -> None:
    created = registry_from_args(args).stub(args.name)
    out.print(f"created curated stub for {args.name}" if created else f"{args.name} already has a curated entry")


def cmd_history(args: argparse.Namespace) -> None:
    items = registry_from_args(args).history_items()
    if args.json:
        return print_json([i.__dict__ for i in items])
    for item in items:
        out.print(f"{item.id}  {item.saved_at}  {item.reason}", markup=False, highlight=False)


def cmd_restore(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).restore(args.id)
    out.print(f"restored {args.id}; revision {snap.revision}")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=argparse.SUPPRESS,
                        help="registry folder (default: $MODELREG_CONFIG_DIR, else ./configs)")
    parser.add_argument("--profile", default=argparse.SUPPRESS,
                        help="active profile (default: $MODELREG_PROFILE, else the settings file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelreg", description="Layered model registry for local LLMs.")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable, help: str, *arguments: tuple[tuple, dict]) -> None:
        p = sub.add_parser(name, help=help, description=help)
        for flags, options in arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(handler=handler)

    as_json = (("--json",), {"action": "store_true", "help": "print JSON"})
    name = (("name",), {"help": "model name"})
    for_profile = (("--for-profile",), {"metavar": "PROFILE", "default": None,
                                        "help": "edit this profile's curated entry instead of the base entry"})
    command("rebuild", cmd_rebuild, "write the merged snapshot from the layers")
    command("list", cmd_list, "list the merged models", as_json)
    command("show", cmd_show, "show one merged model", name, as_json,
            (("--provenance",), {"action": "store_true", "help": "say which layer every field came from"}))
    command("set", cmd_set, "set a curated value (VALUE is JSON when it parses, else a string)", name,
            (("path",), {"help": "dotted field path, e.g. backend_config.extra_args"}),
            (("value",), {"help": "new value"}), for_profile)
    command("unset", cmd_unset, "remove a curated override", name, (("path",), {"help": "dotted field path"}),
            for_profile)
    command("diff", cmd_diff, "compare discovered, curated and merged values per field", name, as_json)
    command("validate", cmd_validate, "check both layers")
    command("migrate", cmd_migrate, "move configuration out of a legacy discovered layer into curated",
            (("--dry-run",), {"action": "store_true", "help": "report the moves, write nothing"}), as_json)
    command("stub", cmd_stub, "create a curated stub for a model (never touches an existing entry)", name)
    command("history", cmd_history, "list earlier versions of the curated layer", as_json)
    command("restore", cmd_restore, "make an earlier curated version current", (("id",), {"help": "history id"}))
    for module in FEATURE_MODULES:
        importlib.import_module(f"core.cli_{module}").add_commands(sub)
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


if __name__ == "__main__":
    sys.exit(main())
