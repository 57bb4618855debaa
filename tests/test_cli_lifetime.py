"""No backend outlives its proxy: SIGHUP (a closed terminal) stops the proxy and its backends as SIGTERM does, and a
SIGKILLed proxy's backends get the kernel's parent-death signal."""
from __future__ import annotations

import signal

import psutil

from support import chat_body
from support.gui_servers import proxy_over_one_standin


def started_backend(tmp_path, standin_vllm):
    config_dir, server = proxy_over_one_standin(tmp_path, standin_vllm)
    reply = server.http.post("/v1/chat/completions", json=chat_body("m"))
    assert reply.status_code == 200, reply.text
    return server, psutil.Process(server.backend("m")["pid"])


def test_sighup_to_proxy_stops_backends(tmp_path, standin_vllm):
    server, backend = started_backend(tmp_path, standin_vllm)
    try:
        server.process.send_signal(signal.SIGHUP)
        server.process.wait(30)
    finally:
        server.stop()
    assert "Application shutdown complete" in (tmp_path / "proxy.log").read_text()  # stopped as by SIGTERM
    _, alive = psutil.wait_procs([backend], timeout=10)
    assert not alive


def test_sigkill_of_proxy_leaves_no_backend(tmp_path, standin_vllm):
    server, backend = started_backend(tmp_path, standin_vllm)
    try:
        server.process.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can stop the backend
        server.process.wait(30)
    finally:
        server.stop()
    _, alive = psutil.wait_procs([backend], timeout=10)
    assert not alive, backend.cmdline()
