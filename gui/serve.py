"""Streamlit's server with the proxy's Host check in front: Streamlit compares a websocket's Origin with its Host only,
which a DNS-rebound page passes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from starlette.middleware import Middleware
from streamlit.web.server.starlette import starlette_app

from modelreg.errors import RegistryError
from modelreg.proxy.guard import HostGuard
from modelreg.settings_view import load_settings


def allowed_hosts() -> list[str]:
    try:
        return load_settings(Path(os.environ["MODELREG_CONFIG_DIR"])).allowed_hosts
    except (KeyError, RegistryError):
        return []  # no registry or unreadable settings: the app says so; loopback still works


def main() -> None:
    """`python -m modelreg.gui.serve run APP --server.address A ...`: `streamlit run` with the Host check."""
    argv = sys.argv[1:]
    bound = argv[argv.index("--server.address") + 1] if "--server.address" in argv else "127.0.0.1"
    streamlit_middleware = starlette_app.create_streamlit_middleware
    guard = Middleware(HostGuard, bound=bound, allowed=allowed_hosts())
    starlette_app.create_streamlit_middleware = lambda: [guard, *streamlit_middleware()]
    from streamlit.web.cli import main as streamlit_main
    streamlit_main(args=argv, prog_name="streamlit")


if __name__ == "__main__":
    main()
