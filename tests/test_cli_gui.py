"""`modelreg gui`: a real Streamlit server on 127.0.0.1 only, usage statistics off, the registry folder passed on."""
from __future__ import annotations

import socket
import tomllib

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from modelreg.cli.gui import app_path, gui_env, streamlit_argv
from modelreg.cli.main import build_parser
from support import free_port
from support.gui_servers import REPO, gui_registry, start_gui


def test_the_command_binds_loopback_and_sends_no_statistics():
    argv = streamlit_argv(8600)
    assert argv[1:4] == ["-m", "modelreg.gui.serve", "run"] and argv[4] == str(app_path())
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8600"
    assert options["--browser.gatherUsageStats"] == "false" and options["--server.headless"] == "true"
    assert options["--client.toolbarMode"] == "minimal" and options["--client.showErrorLinks"] == "false"  # no chrome
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1" and config["browser"]["gatherUsageStats"] is False


def test_the_registry_folder_and_profile_reach_the_app(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELREG_PROFILE", raising=False)
    env = gui_env(str(tmp_path / "regs"), "rtx4080")
    assert env["MODELREG_CONFIG_DIR"] == str((tmp_path / "regs").resolve()) and env["MODELREG_PROFILE"] == "rtx4080"
    args = build_parser().parse_args(["--config-dir", "x", "gui", "--port", "9000"])
    assert (args.port, args.address, args.config_dir) == (9000, "127.0.0.1", "x")


def test_modelreg_gui_serves_on_loopback_only_after_a_warm_up_run(tmp_path):
    port = free_port()
    served = start_gui(gui_registry(tmp_path / "configs", free_port()), port, tmp_path)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/_stcore/health").text == "ok"
        outside = next((a for a in _own_addresses() if not a.startswith("127.")), None)
        if outside:
            with socket.socket() as probe:
                probe.settimeout(2)
                assert probe.connect_ex((outside, port)) != 0  # not reachable from another interface
    finally:
        served.stop()
    assert f"modelreg GUI ready on http://127.0.0.1:{port}" in (tmp_path / "gui.log").read_text()  # app ran ok


def _own_addresses() -> list[str]:
    import psutil

    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET]


def test_dns_rebound_host_name_cannot_reach_the_gui_or_open_its_websocket(tmp_path):
    """Streamlit checks a websocket's Origin against its Host only: a page on evil.example rebound to 127.0.0.1 is
    same-origin with itself. modelreg's Host check answers 403 to it, over HTTP and on the websocket handshake."""
    port = free_port()
    served = start_gui(gui_registry(tmp_path / "configs", free_port()), port, tmp_path)
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    try:
        for path in ("/", "/_stcore/health", "/_stcore/host-config"):
            reply = httpx.get(f"http://127.0.0.1:{port}{path}", headers=evil)
            assert reply.status_code == 403 and "allowed_hosts" in reply.text, (path, reply.text)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}/_stcore/stream", additional_headers=evil, open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(f"ws://127.0.0.1:{port}/_stcore/stream", open_timeout=10):  # loopback's own page: allowed
            pass
        assert httpx.get(f"http://localhost:{port}/_stcore/health").text == "ok"
    finally:
        served.stop()
