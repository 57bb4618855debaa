"""`modelreg proxy`: binds loopback by default, port from the proxy_url setting, admin token file 0600."""
from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from modelreg.cli.main import main
from support import free_port
from support.gui_servers import ProxyProcess
from support.layers import write_layers

REPO = Path(__file__).resolve().parents[1]


def test_help_names_host_and_port(capsys):
    try:
        main(["proxy", "--help"])
    except SystemExit as exit:
        assert exit.code == 0
    text = capsys.readouterr().out
    assert "--host" in text and "--port" in text and "/admin/reload" in text


def test_binds_loopback_and_creates_a_private_token(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELREG_ADMIN_TOKEN", raising=False)
    config_dir = write_layers(tmp_path / "configs", curated=[])
    server = ProxyProcess(config_dir, free_port(), tmp_path / "proxy.log")
    try:
        listening = [c.laddr for c in psutil.Process(server.process.pid).net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", server.port)]
        token_file = config_dir / ".admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert server.http.get("/admin/status").status_code == 401
        assert server.status()["models"] == 0
    finally:
        server.stop()
    log = (tmp_path / "proxy.log").read_text()
    assert server.process.returncode == -signal.SIGTERM and "Application shutdown complete" in log  # graceful
    assert str(token_file) in log and token_file.read_text().strip() not in log  # says where, never the token


def test_port_comes_from_the_proxy_url_setting(tmp_path):
    port = free_port()
    config_dir = write_layers(tmp_path / "configs", curated=[])
    (config_dir / "settings.json").write_text(json.dumps({"proxy_url": f"http://127.0.0.1:{port}"}))
    process = subprocess.Popen([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), "proxy"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").json()["ok"]:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and process.poll() is None, "proxy did not listen"
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/v1" in output and "Application shutdown complete" in output
