"""`modelreg up`: the proxy and the GUI together; Ctrl-C, SIGTERM or SIGHUP stops both and every backend they
started."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from modelreg.cli.gui import DEFAULT_PORT, gui_env
from modelreg.cli.output import say
from modelreg.cli.scan import registry_or_first_scan

if TYPE_CHECKING:
    import subprocess

STOP_WAIT = 30.0  # seconds each child gets to stop its own backends before it is killed
INTERRUPTED = 130  # the exit status of a command ended by Ctrl-C


def _modelreg(args: argparse.Namespace, *command: str) -> list[str]:
    argv = [sys.executable, "-m", "modelreg"]
    if args.config_dir:
        argv += ["--config-dir", args.config_dir]
    if args.profile:
        argv += ["--profile", args.profile]
    return argv + list(command)


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM to every child still running (each stops what it started), then wait; SIGKILL the ones that hang."""
    import subprocess
    import time

    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_WAIT
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_ready(url: str, child: subprocess.Popen, timeout: float) -> bool:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    import signal
    import time

    from modelreg.launch.lifetime import tied_popen
    from modelreg.launch.running.supervisor import Supervisor

    registry = registry_or_first_scan(args)
    proxy_port = args.proxy_port or registry.settings.proxy_port
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    gui_url = f"http://127.0.0.1:{args.port}"
    for sig in (signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        signal.signal(sig, stop_on_sigterm)
    children: list[subprocess.Popen] = []
    code = 0
    try:
        children.append(tied_popen(_modelreg(args, "proxy", "--host", "127.0.0.1", "--port", str(proxy_port))))
        if not _wait_ready(proxy_url + "/health", children[0], 60):
            say(f"modelreg up: the proxy did not start on {proxy_url} (see its messages above)", stderr=True)
            return 1
        env = gui_env(args.config_dir, args.profile, proxy_url)
        children.append(tied_popen(_modelreg(args, "gui", "--port", str(args.port)), env=env))
        if not _wait_ready(gui_url + "/_stcore/health", children[1], 120):
            say(f"modelreg up: the GUI did not start on {gui_url} (see its messages above)", stderr=True)
            return 1
        say(f"modelreg up for {registry.config_dir}\n  GUI:   {gui_url}\n  proxy: {proxy_url}/v1 "
            f"(OpenAI-compatible)\nCtrl-C stops both and every backend they started.")
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        gone = next(child for child in children if child.poll() is not None)
        say(f"modelreg up: the {'proxy' if gone is children[0] else 'GUI'} exited ({gone.returncode}); "
            "stopping the other", stderr=True)
        # A clean stop is no failure: a Ctrl-C reaches the whole terminal group, and a child may end before `up`
        # sees its own SIGINT (so `make run` does not end with "Error 1").
        code = 0 if gone.returncode in (0, INTERRUPTED, -signal.SIGINT) else 1
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGHUP):  # a second Ctrl-C must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        _stop(children[::-1])
        stopped = Supervisor.for_registry(registry).stop_orphans()  # launch tests the GUI had running
        if stopped:
            say(f"modelreg up: stopped {', '.join(s.name for s in stopped)}", stderr=True)
    return code


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the proxy and the GUI together (Ctrl-C stops both)",
                       description="Start `modelreg proxy` and `modelreg gui` for the registry folder on 127.0.0.1 "
                                   "and print both URLs. Ctrl-C, SIGTERM or SIGHUP stops both and every backend they "
                                   "started.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"GUI port (default {DEFAULT_PORT})")
    p.add_argument("--proxy-port", type=int, default=None,
                   help="proxy port (default from the proxy_url setting); the GUI is told where it runs")
    p.set_defaults(handler=cmd_up)
