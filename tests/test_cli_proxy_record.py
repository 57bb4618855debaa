"""The CLI finds the running proxy: `modelreg proxy --port` records its URL; `ps` reads it before env and settings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from support import free_port
from support.gui_servers import ProxyProcess
from support.layers import write_layers

REPO = Path(__file__).resolve().parents[1]


def run_cli(config_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "MODELREG_PROXY_URL"} | (env or {})
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=environ)


def test_ps_finds_a_proxy_started_with_port(tmp_path):
    config_dir = write_layers(tmp_path / "configs", curated=[])
    port = free_port()  # not the proxy_url setting's port
    server = ProxyProcess(config_dir, port, tmp_path / "proxy.log")
    record = config_dir / ".proxy.json"
    try:
        assert json.loads(record.read_text())["url"] == f"http://127.0.0.1:{port}"
        found = run_cli(config_dir, "ps", env={"MODELREG_PROXY_URL": "http://127.0.0.1:1"})
        assert found.returncode == 0, found.stderr
        assert found.stdout == f"no backends running (proxy at http://127.0.0.1:{port})\n"
        assert "from the running proxy's record" in found.stderr
    finally:
        server.stop()
    assert not record.exists()  # removed on a clean exit


def test_a_record_whose_pid_another_process_now_has_is_ignored(tmp_path):
    """A proxy killed without cleaning up leaves its record; its pid may later name another process."""
    config_dir = write_layers(tmp_path / "configs", curated=[])
    other = psutil.Process()  # alive, but started at another time than the record says
    (config_dir / ".proxy.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": other.pid,
                                                        "create_time": other.create_time() - 3600}))
    assert "from the proxy_url setting" in run_cli(config_dir, "ps").stderr


def test_a_record_whose_process_is_gone_is_ignored(tmp_path):
    config_dir = write_layers(tmp_path / "configs", curated=[])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (config_dir / ".proxy.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": dead.pid}))
    port = free_port()
    from_env = run_cli(config_dir, "ps", env={"MODELREG_PROXY_URL": f"http://127.0.0.1:{port}"})
    assert from_env.returncode == 2 and f"http://127.0.0.1:{port}" in from_env.stderr
    assert "from $MODELREG_PROXY_URL" in from_env.stderr
    from_setting = run_cli(config_dir, "ps")
    assert "from the proxy_url setting" in from_setting.stderr and "http://127.0.0.1:8100" in from_setting.stderr
