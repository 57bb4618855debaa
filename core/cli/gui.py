"""`modelreg gui`: run the Streamlit app on 127.0.0.1 for one registry folder."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modelreg.errors import BadInput

if TYPE_CHECKING:  # the command modules import at run time what only their command needs: `--help` starts fast
    import subprocess

DEFAULT_PORT = 8501
STOP_WAIT = 20.0  # seconds Streamlit gets to stop before it is killed


def app_path() -> Path:
    """The Streamlit entry file, found through the installed package (editable or not)."""
    from importlib import resources
    return Path(str(resources.files("modelreg.gui") / "app.py"))


def streamlit_argv(port: int, address: str = "127.0.0.1") -> list[str]:
    """The command that serves the app: loopback, no usage statistics, no browser opened by the server, and no
    Streamlit chrome (minimal toolbar, no Deploy button) wherever it is started from (flags: a config file in the
    working directory, or the user's own, would win over the one beside the app's script)."""
    return [sys.executable, "-m", "modelreg.gui.serve", "run", str(app_path()), "--server.address", address,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--browser.serverAddress", address, "--server.scriptHealthCheckEnabled", "true",
            "--client.toolbarMode", "minimal", "--client.showErrorLinks", "false", "--server.runOnSave", "false",
            "--server.fileWatcherType", "none"]


def warm_up(url: str, process: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Run the app's script once through Streamlit's script health check, so the first visitor finds the imports
    done and the registry merged (cached per process); True when the app answered ok."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url + "/_stcore/health", timeout=5).status_code == 200:
                return httpx.get(url + "/_stcore/script-health-check", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def gui_env(config_dir: str | None, profile: str | None, proxy_url: str | None = None) -> dict[str, str]:
    """The app reads its registry folder (and profile, and the proxy `modelreg up` started) from the environment."""
    from modelreg.registry import default_config_dir
    from modelreg.settings import PROXY_URL_ENV

    env = dict(os.environ)
    env["MODELREG_CONFIG_DIR"] = str((Path(config_dir) if config_dir else default_config_dir()).resolve())
    if profile:
        env["MODELREG_PROFILE"] = profile
    if proxy_url:
        env[PROXY_URL_ENV] = proxy_url
    return env


def loopback_url(address: str, port: int) -> str:
    return f"http://{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{port}"


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_gui(args: argparse.Namespace) -> None:
    import signal
    import subprocess
    from importlib.util import find_spec

    if find_spec("streamlit") is None:
        raise BadInput("streamlit is not installed; run `make setup` (pip install -e '.[gui]')")
    from modelreg.cli.scan import registry_or_first_scan
    registry_or_first_scan(args)  # a missing --config-dir is an error here, not in the browser; a first run scans
    env = gui_env(args.config_dir, args.profile)
    from modelreg.launch.lifetime import tied_popen
    url = loopback_url(args.address, args.port)
    process = tied_popen(streamlit_argv(args.port, args.address), env=env)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # they stop the Streamlit server too, as Ctrl-C does
        signal.signal(sig, stop_on_sigterm)
    try:
        warmed = warm_up(url, process)
        state = "ready" if warmed else "started, but its first run of the app failed or timed out (see above)"
        print(f"modelreg GUI {state} on {url} for {env['MODELREG_CONFIG_DIR']}", file=sys.stderr, flush=True)
        code = process.wait()
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the wait short
            signal.signal(sig, signal.SIG_IGN)
        process.terminate()
        try:
            code = process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    if code not in (0, -15, -9):
        raise SystemExit(code)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the registry GUI (Streamlit) on 127.0.0.1",
                       description="serve the GUI for the registry folder on 127.0.0.1 (Ctrl-C stops it)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else exposes the editor to the network)")
    p.set_defaults(handler=cmd_gui)
