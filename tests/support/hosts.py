"""Several test hosts on this one machine, and the real LiteLLM proxy as the gateway in front of them.

Each host is a network namespace joined to this one by a veth pair (as root, with `ip`), or, where namespaces
cannot be made, a loopback address of its own (127.0.0.2, 127.0.0.3, ...). Everything made is removed again.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from filelock import FileLock

from support.gui_servers import REPO, Served

NS_PREFIX = "mrhost-"  # namespaces named mrhost-<pid>-<index>: a later run removes those of a dead process
SUBNET = "10.213"  # each host gets the /30 10.213.N.0: this machine is .1, the host is .2
LITELLM = Path(os.environ.get("MODELREG_LITELLM") or REPO / ".cache" / "backends" / "bin" / "litellm")


@dataclass
class NetworkHost:
    name: str
    address: str  # where the host's proxy binds and the others reach it
    wrap: tuple[str, ...] = ()  # the command prefix that runs a process on the host
    namespace: str | None = None
    link: str | None = None  # this machine's end of the veth pair


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_namespace(namespace: str, link: str | None) -> None:
    """Kill what still runs in the namespace, delete it (which deletes its veth end and so the pair)."""
    pids = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", namespace, check=False)
    if link:
        _ip("link", "del", link, check=False)


def _remove_stale_namespaces() -> None:
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        namespace = line.split()[0] if line.split() else ""
        parts = namespace.removeprefix(NS_PREFIX).split("-")
        if namespace.startswith(NS_PREFIX) and parts[0].isdigit() and not _alive(int(parts[0])):
            _remove_namespace(namespace, None)


def namespaces_work() -> bool:
    """Root with `ip netns` and veth: try it once with a throwaway namespace."""
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    try:
        if _ip("netns", "add", probe, check=False).returncode != 0:
            return False
        return _ip("-n", probe, "link", "set", "lo", "up", check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _ip("netns", "del", probe, check=False)


class HostNetwork:
    """Make hosts (`with HostNetwork(["alpha", "beta"]) as made:`); `made.mode` says which kind ran."""

    def __init__(self, names: list[str], prefer_namespaces: bool = True):
        self.names = names
        self.prefer_namespaces = prefer_namespaces
        self.hosts: dict[str, NetworkHost] = {}
        self.mode = ""

    def __enter__(self) -> "HostNetwork":
        try:
            if self.prefer_namespaces and namespaces_work():
                self.mode = "network namespaces with veth pairs"
                with FileLock("/tmp/modelreg-test-hosts.lock", timeout=60):  # parallel runs pick different subnets
                    _remove_stale_namespaces()
                    for index, name in enumerate(self.names):
                        self.hosts[name] = self._namespace_host(index, name)
            else:
                self.mode = "loopback addresses"
                for index, name in enumerate(self.names):
                    self.hosts[name] = NetworkHost(name, f"127.0.0.{index + 2}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _namespace_host(self, index: int, name: str) -> NetworkHost:
        used = _ip("-4", "-o", "addr", "show", check=False).stdout
        third = next(n for n in range(1, 255) if f" {SUBNET}.{n}." not in used)
        namespace = f"{NS_PREFIX}{os.getpid()}-{index}"
        link, peer = f"mrh{os.getpid() % 100000}x{index}", f"mrh{os.getpid() % 100000}y{index}"
        host = NetworkHost(name, f"{SUBNET}.{third}.2", ("ip", "netns", "exec", namespace), namespace, link)
        self.hosts[name] = host  # removed on failure from here on
        _ip("netns", "add", namespace)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", namespace)
        _ip("addr", "add", f"{SUBNET}.{third}.1/30", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", namespace, "addr", "add", f"{host.address}/30", "dev", peer)
        _ip("-n", namespace, "link", "set", peer, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")  # the host's backends listen on its own 127.0.0.1
        return host

    def __exit__(self, *exc_info) -> None:
        for host in self.hosts.values():
            if host.namespace:
                _remove_namespace(host.namespace, host.link)

    def leftovers(self) -> list[str]:
        """Namespaces and links of these hosts that still exist (none after the with block)."""
        names = _ip("netns", "list", check=False).stdout if self.mode.startswith("network") else ""
        links = _ip("-o", "link", "show", check=False).stdout if self.mode.startswith("network") else ""
        return [h.namespace for h in self.hosts.values() if h.namespace and h.namespace in names] + \
               [h.link for h in self.hosts.values() if h.link and f" {h.link}@" in links]


class LiteLLMProcess(Served):
    """The real LiteLLM proxy (`litellm --config FILE`) on a loopback port, with its telemetry and every remote
    lookup at start (the model cost map and the like) turned off; ready once its liveliness probe answers."""

    def __init__(self, config: Path, port: int, log_path: Path, env: dict[str, str] | None = None):
        self.master_key = "sk-" + secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=180,
                                 headers={"Authorization": f"Bearer {self.master_key}"})
        quiet = {"LITELLM_TELEMETRY_DISABLED": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                 "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True", "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
                 "LITELLM_LOCAL_BLOG_POSTS": "True", "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
                 "LITELLM_MODE": "PRODUCTION", "NO_PROXY": "*"}
        began = time.monotonic()
        super().__init__([str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                         f"{self.url}/health/liveliness", log_path,
                         {**os.environ, **(env or {}), **quiet, "LITELLM_MASTER_KEY": self.master_key},
                         timeout=300)
        self.seconds_to_ready = time.monotonic() - began

    def chat(self, model: str, max_tokens: int = 2) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})

    def stop(self) -> None:
        super().stop()
        self.http.close()
