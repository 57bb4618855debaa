"""Test support: real servers on loopback, generated models, and stand-ins where the real thing cannot run here."""
from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable
from urllib.parse import urlsplit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy (returned); fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


def post_and_leave(url: str, body: dict, arrived: Callable[[], Any], headers: dict[str, str] | None = None,
                   waited: float = 0.0) -> None:
    """POST `body` as JSON to `url` over a raw socket and leave (close it) `waited` seconds after `arrived()` holds:
    a client that leaves at a known point, which a client timeout cannot give on a loaded machine (a request whose
    client is gone before the proxy reads it is never forwarded at all)."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection((parts.hostname, parts.port)) as client:
        client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        wait_for(arrived, what="the request to arrive")
        time.sleep(waited)


def chat_body(model: str, max_tokens: int = 1, **extra) -> dict:
    """An OpenAI chat request asking `model` a one-word question."""
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, **extra}
