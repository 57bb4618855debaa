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
from support import chat_body, free_port
from support.gui_servers import ProxyProcess, proxy_over_one_standin
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


def run_cli(config_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_binding_beyond_loopback_needs_proxy_keys(tmp_path):
    config_dir = write_layers(tmp_path / "configs", curated=[])
    for host in ("0.0.0.0", "172.17.0.1"):  # refused before anything is bound
        refused = run_cli(config_dir, "proxy", "--host", host, "--port", str(free_port()))
        assert refused.returncode == 2
        assert f"refusing to listen on {host}" in refused.stderr and "proxy_api_keys" in refused.stderr
    (config_dir / "settings.json").write_text(json.dumps({"proxy_api_keys": ["sk-bridge"]}))
    server = ProxyProcess(config_dir, free_port(), tmp_path / "proxy.log", host="127.0.0.2")
    try:
        assert server.http.get("/v1/models").status_code == 401
        assert server.http.get("/v1/models", headers={"Authorization": "Bearer sk-bridge"}).json()["data"] == []
    finally:
        server.stop()
    assert "API keys: 1 from settings" in (tmp_path / "proxy.log").read_text()


def test_ps_logs_restart_and_stop(tmp_path, standin_vllm):
    config_dir, server = proxy_over_one_standin(tmp_path, standin_vllm)
    try:
        assert run_cli(config_dir, "ps").stdout.startswith("no backends running")
        assert server.http.post("/v1/chat/completions", json=chat_body("m")).status_code == 200
        listed = run_cli(config_dir, "ps")
        assert listed.returncode == 0 and "m" in listed.stdout and "ready" in listed.stdout
        [running] = json.loads(run_cli(config_dir, "ps", "--json").stdout)
        assert (running["name"], running["state"]) == ("m", "ready")

        logs = run_cli(config_dir, "logs", "m", "-n", "5")
        assert logs.returncode == 0 and "POST /v1/chat/completions" in logs.stdout
        assert len(logs.stdout.splitlines()) == 5

        restarted = run_cli(config_dir, "restart", "org/m")
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.startswith("restarted m: pid ") and str(running["pid"]) not in restarted.stdout

        assert run_cli(config_dir, "stop", "m").stdout == "stopped m\n"
        again = run_cli(config_dir, "stop", "m")
        assert again.returncode == 2 and "'m' is not running" in again.stderr
        assert run_cli(config_dir, "stop").returncode == 2  # neither a name nor --all
        assert server.http.post("/v1/chat/completions", json=chat_body("m")).status_code == 200
        assert run_cli(config_dir, "stop", "--all").stdout == "stopped m\n"
        assert run_cli(config_dir, "ps", "--json").stdout.strip() == "[]"
    finally:
        server.stop()
    gone = run_cli(config_dir, "ps")
    assert gone.returncode == 2 and "proxy not reachable" in gone.stderr


def test_logs_follow_prints_what_the_backend_writes(tmp_path, standin_vllm):
    config_dir, server = proxy_over_one_standin(tmp_path, standin_vllm)
    follower = None
    try:
        assert server.http.post("/v1/chat/completions", json=chat_body("m")).status_code == 200
        follower = subprocess.Popen([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), "logs", "m",
                                     "-f", "-n", "1"], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert "POST /v1/chat/completions" in follower.stdout.readline()
        assert server.http.post("/v1/chat/completions", json=chat_body("m", 3)).status_code == 200
        assert "POST /v1/chat/completions" in follower.stdout.readline()  # written after -f began
    finally:
        if follower is not None:
            follower.send_signal(signal.SIGINT)
            follower.wait(10)
            follower.stdout.close()
        server.stop()
    assert follower.returncode == 0
