"""`modelreg proxy` (the OpenAI-compatible server) and its live control: `ps`, `stop`, `logs`, `restart`,
`activity`."""
from __future__ import annotations

import argparse
import signal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from modelreg.cli.output import TSV_HELP, print_json, print_table, registry_from_args, say

if TYPE_CHECKING:
    from modelreg.proxy.client import ProxyAdmin
    from modelreg.registry import Registry


def cmd_proxy(args: argparse.Namespace) -> None:
    from modelreg.proxy.app import proxy_keys, serve
    from modelreg.proxy.record import remove_record, write_record
    from modelreg.proxy.token import token_source
    registry = registry_from_args(args)
    configured = urlsplit(registry.settings.proxy_url)
    host = args.host or configured.hostname or "127.0.0.1"
    port = args.port or registry.settings.proxy_port
    keys = len(proxy_keys(registry.settings))
    say(f"modelreg proxy on http://{host}:{port}/v1 for {registry.config_dir}; "
        f"admin token: {token_source(registry.config_dir)}; "
        + (f"API keys: {keys} from settings" if keys else "no API key (proxy_api_keys is empty)"))
    for warning in registry.settings.load_warnings:
        say(f"modelreg proxy: warning: {warning}", stderr=True)
    # a closed terminal (SIGHUP) stops the proxy as SIGTERM does, backends included (uvicorn handles only INT, TERM)
    signal.signal(signal.SIGHUP, lambda signum, frame: signal.raise_signal(signal.SIGTERM))
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # where `modelreg ps` reaches it
    write_record(registry.config_dir, f"http://{client_host}:{port}")

    def remove_and_die(signum: int, frame: object) -> None:
        # uvicorn raises the SIGTERM it caught again once it has shut down: the record goes, then the default death
        remove_record(registry.config_dir)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
    signal.signal(signal.SIGTERM, remove_and_die)
    try:
        serve(registry, host, port)
    finally:
        remove_record(registry.config_dir)


def _admin(args: argparse.Namespace) -> "ProxyAdmin":
    from modelreg.proxy.client import ProxyAdmin
    registry = registry_from_args(args)
    return ProxyAdmin(proxy_url_for(args, registry), registry.config_dir)


def proxy_url_for(args: argparse.Namespace, registry: "Registry") -> str:
    """--url, else the running proxy's record, $MODELREG_PROXY_URL or the proxy_url setting (said on stderr)."""
    from modelreg.proxy.record import find_proxy_url
    if args.url:
        return args.url
    url, source = find_proxy_url(registry.config_dir, registry.settings)
    say(f"proxy {url} (from {source})", stderr=True)
    return url


def cmd_ps(args: argparse.Namespace) -> None:
    admin = _admin(args)
    running = admin.running()
    if args.json:
        return print_json(running)
    if not running:
        return say(f"no backends running (proxy at {admin.url})")
    rows = [[b["name"], b["state"] + (" (stale)" if b["stale"] else ""), b["backend"], b["pid"], b["port"],
             b["in_flight"], _clock(b["started_at"]), _clock(b["last_request_at"])] for b in running]
    print_table(["name", "state", "backend", "pid", "port", "in flight", "started", "last request"], rows,
                tsv=args.tsv)


def _clock(stamp: str | None) -> str:
    """`2026-05-01T12:34:56.789+00:00` -> `12:34:56` (UTC, as the proxy reports it)."""
    return stamp[11:19] if stamp else "-"


def cmd_stop(args: argparse.Namespace) -> int:
    if bool(args.name) == args.all:
        say("modelreg stop: give a model NAME or --all", stderr=True)
        return 2
    stopped = _admin(args).unload(args.name)["stopped"]
    say("\n".join(f"stopped {name}" for name in stopped) if stopped else "nothing was running")
    return 0


def cmd_logs(args: argparse.Namespace) -> None:
    try:
        for line in _admin(args).logs(args.name, follow=args.follow, lines=args.lines):
            say(line)
    except KeyboardInterrupt:
        pass


def cmd_restart(args: argparse.Namespace) -> None:
    backend = _admin(args).restart(args.name)
    say(f"restarted {backend['name']}: pid {backend['pid']}, {backend['state']} on port {backend['port']}")


def cmd_activity(args: argparse.Namespace) -> None:
    from modelreg.views.activity import activity_rows
    admin = _admin(args)
    records = admin.activity(limit=args.lines, model=args.model)
    if args.json:
        return print_json(records)
    if not records:
        return say(f"no requests recorded yet (proxy at {admin.url})")
    rows = activity_rows(records)
    columns = list(rows[0])
    print_table(columns, [["-" if row[c] is None else row[c] for c in columns] for row in rows], tsv=args.tsv)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "proxy", help="run the OpenAI-compatible proxy that starts models on demand",
        description="Run the OpenAI-compatible proxy (/v1/models, /v1/chat/completions, /v1/completions, "
                    "/v1/embeddings, /v1/rerank, /v1/audio/*, /v1/images/*, /v1/responses, /v1/messages; "
                    "/admin/status, /admin/reload, /admin/running, /admin/unload, /admin/restart and /admin/logs "
                    "with the admin token). Host and port default to the proxy_url setting "
                    "(http://127.0.0.1:8100); a host beyond loopback needs proxy_api_keys in settings.json.")
    parser.add_argument("--host", default=None,
                        help="address to bind (default from proxy_url: 127.0.0.1; a docker bridge address or "
                             "0.0.0.0 only with proxy_api_keys set)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default from proxy_url)")
    parser.set_defaults(handler=cmd_proxy)

    def control(name: str, help: str) -> argparse.ArgumentParser:
        command = subparsers.add_parser(name, help=help, description=help + " (through the running proxy's admin "
                                        "endpoints, with its admin token).")
        command.add_argument("--url", default=None, help="the proxy (default: the running proxy recorded in the "
                             "registry folder, then $MODELREG_PROXY_URL, then the proxy_url setting)")
        return command

    command = control("ps", "list the backends the running proxy has started")
    command.add_argument("--json", action="store_true", help="print them as JSON")
    command.add_argument("--tsv", action="store_true", help=TSV_HELP)
    command.set_defaults(handler=cmd_ps)

    command = control("stop", "stop a running backend now (or every one with --all)")
    command.add_argument("name", nargs="?", help="model name or alias")
    command.add_argument("--all", action="store_true", help="stop every backend the proxy runs")
    command.set_defaults(handler=cmd_stop)

    command = control("logs", "print a backend's log")
    command.add_argument("name", help="model name or alias")
    command.add_argument("-f", "--follow", action="store_true", help="keep printing what the backend writes")
    command.add_argument("-n", "--lines", type=int, default=200, help="how many last lines first (default 200)")
    command.set_defaults(handler=cmd_logs)

    command = control("restart", "restart a backend (or start it) and wait until it is ready")
    command.add_argument("name", help="model name or alias")
    command.set_defaults(handler=cmd_restart)

    command = control("activity", "list the last requests through the running proxy, newest first: model, status "
                      "or cancelled, time to first token, duration, tokens and tokens/s")
    command.add_argument("-n", "--lines", type=int, default=20, help="how many of the last requests (default 20)")
    command.add_argument("--model", default=None, help="only this model's requests (its registry name)")
    command.add_argument("--json", action="store_true", help="print the proxy's records as JSON, oldest first")
    command.add_argument("--tsv", action="store_true", help=TSV_HELP)
    command.set_defaults(handler=cmd_activity)
