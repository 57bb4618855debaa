"""`modelreg hosts` and `modelreg export litellm|llama-swap`: thin wrappers over modelreg.hosts."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from modelreg.cli.output import TSV_HELP, add_global_options, print_json, print_table, registry_from_args, say
from modelreg.errors import BadInput

if TYPE_CHECKING:
    from modelreg.registry import Registry

NO_HOSTS = ("no hosts: add them to the `hosts` setting in settings.json, e.g. "
            '{"hosts": {"gpu-b": {"url": "http://gpu-b:8100", "profile": "a6000"}}}')


def checked_hosts(registry: Registry) -> Registry:
    """The registry, for a command about its hosts: there a host entry the settings file skipped is an error (the
    proxy and `up` only warn of it), so no list or export silently leaves a host out."""
    skipped = registry.settings.load_warnings
    if skipped:
        raise BadInput("\n".join(skipped))
    return registry


def cmd_hosts(args: argparse.Namespace) -> int:
    from modelreg.hosts.status import hosts_status
    from modelreg.proxy.record import find_proxy_url
    registry = checked_hosts(registry_from_args(args))
    local_url, source = find_proxy_url(registry.config_dir, registry.settings)
    say(f"local proxy {local_url} (from {source})", stderr=True)
    statuses = hosts_status(registry.settings, registry.config_dir, args.timeout, local_url)
    if args.json:
        print_json([s.to_dict() for s in statuses])
    elif not statuses:
        say(NO_HOSTS)
    else:
        rows = [s.row() for s in statuses]
        print_table(list(rows[0]), [list(r.values()) for r in rows], tsv=args.tsv)
    return 0 if all(s.reachable for s in statuses) else 1


def cmd_export_litellm(args: argparse.Namespace) -> int:
    from modelreg.hosts.litellm import litellm_yaml
    from modelreg.hosts.status import hosts_status, require_reachable
    registry = checked_hosts(registry_from_args(args))
    settings = registry.settings
    if not settings.hosts:
        raise BadInput(NO_HOSTS)
    return _emit(args, lambda: litellm_yaml(require_reachable(hosts_status(settings, registry.config_dir,
                                                                           args.timeout)), settings.hosts))


def cmd_export_llama_swap(args: argparse.Namespace) -> int:
    from modelreg.hosts.llama_swap import llama_swap_config, llama_swap_yaml
    from modelreg.registry import Registry
    registry = registry_from_args(args)
    if args.host:
        checked_hosts(registry)
        hosts = registry.settings.hosts
        if args.host not in hosts:
            raise BadInput(f"unknown host {args.host!r}; " + (f"known: {', '.join(sorted(hosts))}" if hosts
                                                              else NO_HOSTS))
        registry = Registry(registry.config_dir, hosts[args.host].profile or args.profile)
    return _emit(args, lambda: llama_swap_yaml(llama_swap_config(registry), args.host, registry.profile))


def _emit(args: argparse.Namespace, render: Callable[[], str]) -> int:
    """Print the config, or write it to --out (only when it changed); with --watch, keep it written."""
    from modelreg.hosts.export import watch_export, write_if_changed
    if args.watch:
        if not args.out:
            raise BadInput("--watch needs --out FILE (the file the gateway reads)")
        say(f"writing {args.out} whenever it changes (every {args.interval:g} s; Ctrl-C stops)", stderr=True)
        try:
            watch_export(render, Path(args.out), args.interval, lambda text: say(text, stderr=True),
                         shlex.split(args.then) if args.then else None)
        except KeyboardInterrupt:
            pass
        return 0
    text = render()
    if not args.out:
        sys.stdout.write(text)
    elif write_if_changed(Path(args.out), text):
        say(f"wrote {args.out}", stderr=True)
    else:
        say(f"{args.out} is up to date", stderr=True)
    return 0


def _output_options(parser: argparse.ArgumentParser) -> None:
    add_global_options(parser)
    parser.add_argument("--out", metavar="FILE", help="write the config to FILE (atomically, only when it changed) "
                                                      "instead of printing it")
    parser.add_argument("--watch", action="store_true", help="keep running and rewrite FILE whenever it changes")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help="with --watch: seconds between checks (default 2)")
    parser.add_argument("--then", metavar="CMD", help="with --watch: run CMD after each rewrite, e.g. the command "
                                                      "that restarts the gateway")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hosts", help="list the GPU hosts with what their proxies serve",
                       description="ask every host of the `hosts` setting: reachable, served revision, model count, "
                                   "running backends (from its /v1/models and /admin/status); exit 1 when a host "
                                   "does not answer")
    p.add_argument("--json", action="store_true", help="print every host's status as JSON")
    p.add_argument("--tsv", action="store_true", help=TSV_HELP)
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait for each host")
    p.set_defaults(handler=cmd_hosts)

    p = sub.add_parser("export", help="write a gateway config: LiteLLM over all hosts, or llama-swap for one",
                       description="write the config of another tool from the registry")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    t = targets.add_parser("litellm", help="a LiteLLM proxy config over every host",
                           description="a LiteLLM proxy config.yaml: one deployment per (model, host) and per alias, "
                                       "model info, retries and fallbacks across hosts; every host must answer")
    _output_options(t)
    t.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait for each host")
    t.set_defaults(handler=cmd_export_litellm)
    t = targets.add_parser("llama-swap", help="a llama-swap config.yaml for one host",
                           description="a llama-swap config.yaml (v250 format) for one host: each model's launch "
                                       "command with ${PORT}, aliases, ttl from idle_ttl, groups from "
                                       "exclusive_group; built from this registry with the host's profile")
    _output_options(t)
    t.add_argument("--host", metavar="NAME", help="the host (its profile applies); default: this machine's profile")
    t.set_defaults(handler=cmd_export_llama_swap)
