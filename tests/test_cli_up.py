"""`modelreg up`: the proxy and the GUI from one command, both URLs printed; SIGTERM or Ctrl-C stops both and every
backend they started (no orphan process, no held port), and so does SIGHUP (a closed terminal). `modelreg gui` alone
stops its Streamlit child on SIGTERM or SIGHUP."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import psutil
import pytest

from modelreg.cli.main import build_parser
from modelreg.settings import PROXY_URL_ENV
from support import chat_body, free_port, wait_for
from support.gui_servers import REPO, STORY_MODEL, app_env, gui_registry, modelreg


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def started(argv: list[str], log, env=None) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def test_the_command_line():
    args = build_parser().parse_args(["--config-dir", "c", "up", "--port", "9001", "--proxy-port", "9002"])
    assert (args.port, args.proxy_port, args.config_dir) == (9001, 9002, "c")
    assert build_parser().parse_args(["up"]).proxy_port is None  # from the proxy_url setting


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "ctrl-c-reaches-the-children-first"])
def test_up_starts_both_and_stops_everything(tmp_path, how):
    up_then_stop(tmp_path, how)


def test_sighup_to_up_stops_backends(tmp_path):
    up_then_stop(tmp_path, "sighup", bad_host=True)  # the terminal closed: SIGHUP to its foreground group


def up_then_stop(tmp_path, how, bad_host=False):
    folder = gui_registry(tmp_path / "configs", proxy_port=free_port())
    if bad_host:  # one bad host entry is a warning: `up` still starts, with the good hosts
        settings_path = folder / "settings.json"
        settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
        settings["hosts"] = {"gpu-a": {"url": "http://127.0.0.1:9"}, "gpu-b": {"profile": "a6000"}}
        settings_path.write_text(json.dumps(settings))
    gui_port, proxy_port = free_port(), free_port()
    env = app_env()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = started(modelreg(folder, "up", "--port", str(gui_port), "--proxy-port", str(proxy_port)), log, env)
        try:
            wait_for(lambda: "GUI:" in log_path.read_text(), timeout=150, what="modelreg up's URLs", interval=0.2)
            text = log_path.read_text()
            if bad_host:
                assert text.count("hosts entry 1 ('gpu-b') ignored: url") == 1, text  # said once, by the proxy
            assert f"GUI:   http://127.0.0.1:{gui_port}" in text and f"proxy: http://127.0.0.1:{proxy_port}/v1" in text
            assert httpx.get(f"http://127.0.0.1:{gui_port}/_stcore/health").text == "ok"
            reply = httpx.post(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", json=chat_body(STORY_MODEL),
                               timeout=60)
            assert reply.status_code == 200, reply.text  # the proxy started a backend
            family = psutil.Process(up.pid).children(recursive=True)
            streamlit = next(p for p in family if "modelreg.gui.serve" in " ".join(p.cmdline()))
            assert streamlit.environ()[PROXY_URL_ENV] == f"http://127.0.0.1:{proxy_port}"  # the GUI knows where
            backend = next(p for p in family if "standin_vllm" in " ".join(p.cmdline()))
            if how == "sigterm":
                up.send_signal(signal.SIGTERM)
            elif how == "ctrl-c-reaches-the-children-first":  # `up` learns of it from a child's exit
                for child in psutil.Process(up.pid).children():
                    child.send_signal(signal.SIGINT)
            else:  # what a terminal sends to the foreground group on Ctrl-C, or when it closes
                os.killpg(up.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGHUP)
            assert up.wait(90) == 0
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    assert backend in gone and not port_open(gui_port) and not port_open(proxy_port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_modelreg_gui_stops_its_streamlit_child_on_sigterm_or_sighup(tmp_path, sig):
    folder = gui_registry(tmp_path / "configs", proxy_port=free_port())
    port = free_port()
    log_path = tmp_path / "gui.log"
    with open(log_path, "wb") as log:
        gui = started([sys.executable, "-m", "modelreg", "--config-dir", str(folder), "gui", "--port", str(port)], log)
        try:
            wait_for(lambda: "modelreg GUI ready" in log_path.read_text(), timeout=150, what="the GUI", interval=0.2)
            children = psutil.Process(gui.pid).children(recursive=True)
            assert children and port_open(port)
            gui.send_signal(sig)  # to `modelreg gui` alone, not its group
            gui.wait(30)
        finally:
            if gui.poll() is None:
                os.killpg(gui.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive and not port_open(port)
