"""Commands over the layers: rebuild, list, show, set, unset, diff, validate, migrate, stub, history, restore."""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Callable

from modelreg.cli.output import TSV_HELP, print_json, print_table, registry_from_args, say, shell_args
from modelreg.errors import InvalidRegistry

if TYPE_CHECKING:
    from modelreg.registry import Registry


def cmd_rebuild(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).rebuild(full=args.full)
    say(f"{snap.count} models, revision {snap.revision}")


def cmd_list(args: argparse.Namespace) -> None:
    from modelreg.views.models import model_status
    registry = registry_from_args(args, reads_snapshot=True)
    entries = registry.snapshot().entries
    if args.json:
        return print_json(entries)
    rows = []
    for e in entries:
        bc = e.get("backend_config") or {}
        rows.append((e["name"], e.get("backend"), bc.get("port"), e.get("quantization"),
                     shell_args(bc.get("extra_args")), model_status(e, registry.settings)[0]))
    print_table([("name", {"no_wrap": True}), "backend", "port", "quantization",
                 ("extra_args", {"overflow": "fold"}), ("status", {"no_wrap": True})], rows, tsv=args.tsv)


def cmd_show(args: argparse.Namespace) -> None:
    from modelreg.launch.advice.fit import fit_summary
    registry = registry_from_args(args, reads_snapshot=not args.provenance)
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
    from modelreg.paths import flatten
    for path, value in sorted(flatten(doc["entry"]).items()):
        source = f"  [{doc['provenance'].get(path, '')}]" if args.provenance else ""
        say(f"{path} = {json.dumps(value, ensure_ascii=False)}{source}")
    fit = fit_summary(doc["entry"], registry.settings)
    if fit.get("known"):
        verdict = "fits" if fit.get("fits") else "does not fit"
        say(f"fit: native context {fit.get('native_context')} {verdict} in {registry.settings.gpu_memory} "
            f"at {fit['utilization']:.2f}; largest context {fit.get('max_context')}"
            + (f"; suggested: {shell_args(fit['suggested_args'])}" if fit.get("suggested_args") else ""))
    else:
        say(f"fit: unknown ({fit.get('reason')})")


LAUNCH_FIELDS = ("backend", "backend_config", "chat_template", "generation_defaults")


def check_launch_change(registry: "Registry", name: str, changes: dict, profile: str | None) -> None:
    """Refuse a change that gives the model a launch configuration its backend would reject (BadInput, exit 2);
    print the notes (a flag spelled in a way the backend reads as another)."""
    if not any(path.split(".")[0] in LAUNCH_FIELDS for path in changes):
        return  # before the imports: a change that cannot affect the launch does not pay for the launch checks
    from modelreg.errors import UnknownModel
    from modelreg.launch.planning.checks import require_launchable
    from modelreg.views.editor import load_target

    try:
        target = load_target(registry, name, profile)
    except UnknownModel:
        return
    settings = registry.settings.for_profile(profile) if profile else registry.settings
    for note in require_launchable(target.merged(changes).entry, settings, target.merged().entry):
        say(f"note: {note}", stderr=True)


def cmd_set(args: argparse.Namespace) -> None:
    from modelreg.fields import field_kind
    from modelreg.values import parse_value
    value = parse_value(args.value, field_kind(args.path), args.path)
    registry = registry_from_args(args)
    check_launch_change(registry, args.name, {args.path: value}, args.for_profile)
    snap = registry.set_value(args.name, args.path, value, profile=args.for_profile)
    say(f"set {args.name} {args.path}; revision {snap.revision}")


def cmd_unset(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).unset_value(args.name, args.path, profile=args.for_profile)
    say(f"unset {args.name} {args.path}; revision {snap.revision}")


def cmd_diff(args: argparse.Namespace) -> None:
    registry = registry_from_args(args)
    rows = registry.diff(args.name)
    if args.json:
        from dataclasses import asdict
        return print_json([{**asdict(row), "changed": row.changed} for row in rows])
    columns = ("discovered", "curated", "profile", "merged") if registry.profile else ("discovered", "curated",
                                                                                        "merged")
    print_table(["field", *columns, "status"],
                [(row.field, *(json.dumps(getattr(row, c), ensure_ascii=False) for c in columns), row.status)
                 for row in rows], tsv=args.tsv)


def cmd_validate(args: argparse.Namespace) -> None:
    from modelreg.launch.planning.checks import curated_launch_problems
    registry = registry_from_args(args)
    report = registry.validate()
    errors, warnings = list(report.errors), [*registry.settings.load_warnings, *report.warnings]
    if report.ok:
        merged = registry.merged()
        launch_errors, launch_warnings = curated_launch_problems(merged.entries, merged.sources, registry.settings)
        errors += launch_errors
        warnings += launch_warnings
    for warning in warnings:
        say(f"warning: {warning}")
    if errors:
        raise InvalidRegistry(errors)
    say(f"valid ({len(warnings)} warning(s))")


def cmd_migrate(args: argparse.Namespace) -> None:
    result = registry_from_args(args).migrate(dry_run=args.dry_run)
    if args.json:
        return print_json({"written": result.written, "backups": result.backups, "moves": result.moves})
    for move in result.moves:
        say(f"{move['name']}: {move['field']} = {json.dumps(move['value'], ensure_ascii=False)} -> {move['action']}")
    verb = "would move" if args.dry_run else "moved"
    say(f"{verb} {sum(m['action'] == 'moved' for m in result.moves)} value(s), "
        f"{len(result.moves)} config field(s) out of discovered"
        + (f"; backups: {', '.join(result.backups)}" if result.backups else ""))


def cmd_stub(args: argparse.Namespace) -> None:
    created = registry_from_args(args).stub(args.name)
    say(f"created curated stub for {args.name}" if created else f"{args.name} already has a curated entry")


def cmd_history(args: argparse.Namespace) -> int:
    items = registry_from_args(args).history_items(verify=True)
    if args.json:
        print_json([i.__dict__ for i in items])
    else:
        rows = [(item.id, item.saved_at, item.reason, f"DAMAGED: {item.damage}" if item.damage else "restorable")
                for item in items]
        print_table(["id", "saved at", "reason", "state"], rows, tsv=args.tsv)
    return 1 if items and items[0].damage else 0  # the newest version, the one a restore most likely wants


def cmd_restore(args: argparse.Namespace) -> None:
    snap = registry_from_args(args).restore(args.id)
    say(f"restored {args.id}; revision {snap.revision}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    def command(name: str, handler: Callable[[argparse.Namespace], object], help: str,
                *arguments: tuple[tuple, dict]) -> None:
        p = sub.add_parser(name, help=help, description=help)
        for flags, options in arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(handler=handler)

    as_json = (("--json",), {"action": "store_true", "help": "print JSON"})
    as_tsv = (("--tsv",), {"action": "store_true", "help": TSV_HELP})
    name = (("name",), {"help": "model name"})
    for_profile = (("--for-profile",), {"metavar": "PROFILE", "default": None,
                                        "help": "edit this profile's curated entry instead of the base entry"})
    command("rebuild", cmd_rebuild, "write the merged snapshot from the layers (only the models that changed are "
                                    "merged again)",
            (("--full",), {"action": "store_true", "help": "validate and merge every model again (same result)"}))
    command("list", cmd_list, "list the merged models", as_json, as_tsv)
    command("show", cmd_show, "show one merged model", name, as_json,
            (("--provenance",), {"action": "store_true", "help": "say which layer every field came from"}))
    command("set", cmd_set, "set a curated value (written as the field's kind: extra_args as shell text or a "
                            "JSON list, roles as a comma list, numbers, true/false; unknown fields: JSON when it "
                            "parses, else a string)", name,
            (("path",), {"help": "dotted field path, e.g. backend_config.extra_args"}),
            (("value",), {"help": "new value (put -- before a value that starts with -)"}), for_profile)
    command("unset", cmd_unset, "remove a curated override", name, (("path",), {"help": "dotted field path"}),
            for_profile)
    command("diff", cmd_diff, "compare discovered, curated and merged values per field", name, as_json,
            as_tsv)
    command("validate", cmd_validate, "check both layers")
    command("migrate", cmd_migrate, "move configuration out of a legacy discovered layer into curated",
            (("--dry-run",), {"action": "store_true", "help": "report the moves, write nothing"}), as_json)
    command("stub", cmd_stub, "create a curated stub for a model (never touches an existing entry)", name)
    command("history", cmd_history, "list earlier versions of the curated layer, each marked restorable or damaged "
            "(naming the damaged file); exit 1 when the newest is damaged", as_json, as_tsv)
    command("restore", cmd_restore, "make an earlier curated version current", (("id",), {"help": "history id"}))
