"""`modelreg proxy`: a thin wrapper that runs modelreg.proxy.app's OpenAI-compatible server."""
from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from modelreg.cli.output import registry_from_args, say


def cmd_proxy(args: argparse.Namespace) -> None:
    from modelreg.proxy.app import serve
    from modelreg.proxy.token import token_source
    registry = registry_from_args(args)
    configured = urlsplit(registry.settings.proxy_url)
    host = args.host or configured.hostname or "127.0.0.1"
    port = args.port or configured.port or 8100
    say(f"modelreg proxy on http://{host}:{port}/v1 for {registry.config_dir}; "
        f"admin token: {token_source(registry.config_dir)}")
    serve(registry, host, port)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "proxy", help="run the OpenAI-compatible proxy that starts models on demand",
        description="Run the OpenAI-compatible proxy (/v1/models, /v1/chat/completions, /v1/completions, "
                    "/v1/embeddings; /admin/status and /admin/reload with the admin token). Host and port default "
                    "to the proxy_url setting (http://127.0.0.1:8100).")
    parser.add_argument("--host", default=None, help="address to bind (default from proxy_url: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default from proxy_url: 8100)")
    parser.set_defaults(handler=cmd_proxy)
