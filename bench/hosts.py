"""The gateway's overhead: the same chat request through the real LiteLLM proxy (started from `modelreg export
litellm`) and straight to the host's `modelreg proxy`, interleaved in one run."""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import console, side_by_side
from modelreg.store import CURATED_FILE, dumps
from support import chat_body


def _median_ms(client: httpx.Client, url: str, model: str, runs: int, headers: dict | None = None) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        reply = client.post(url, json=chat_body(model), headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        reply.raise_for_status()
    return statistics.median(times)


def main() -> None:
    from support import free_port
    from support.gui_servers import ProxyProcess
    from support.hosts import LITELLM, LiteLLMProcess
    from support.tiny_gguf import tiny_entry, write_tiny_gguf

    if not LITELLM.exists():
        console.print(f"hosts: SKIPPED, {LITELLM} is missing (`make backends` installs LiteLLM and links it there)")
        return
    folder = Path(tempfile.mkdtemp(prefix="modelreg-bench-hosts-"))
    host_dir, local = folder / "host" / "configs", folder / "gateway" / "configs"
    host_dir.mkdir(parents=True)
    local.mkdir(parents=True)
    model = write_tiny_gguf(folder / "tiny.gguf")
    (host_dir / CURATED_FILE).write_bytes(dumps([tiny_entry(model, name="tiny")]))
    (host_dir / "settings.json").write_text(json.dumps({"log_dir": str(folder / "logs"), "stop_grace": 3}))
    proxy = ProxyProcess(host_dir, free_port(), folder / "proxy.log")
    gateway = None
    try:
        (local / "settings.json").write_text(json.dumps({"hosts": {"gpu": {"url": proxy.url}}}))
        config = folder / "litellm.yaml"
        subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(local), "export", "litellm", "--out",
                        str(config)], check=True, capture_output=True, timeout=60)
        gateway = LiteLLMProcess(config, free_port(), folder / "litellm.log")
        key = {"Authorization": f"Bearer {gateway.master_key}"}
        direct, through = [], []
        with httpx.Client(timeout=120) as client:
            _median_ms(client, gateway.url + "/v1/chat/completions", "tiny", 10, key)  # starts the backend, warms up
            for _ in range(5):
                direct.append(_median_ms(client, proxy.url + "/v1/chat/completions", "tiny", 20))
                through.append(_median_ms(client, gateway.url + "/v1/chat/completions", "tiny", 20, key))
        direct_ms, through_ms = statistics.median(direct), statistics.median(through)
        side_by_side("hosts: LiteLLM gateway in front of one host's modelreg proxy (tiny model)", [
            ("non-streamed chat through LiteLLM (median)", through_ms, "host proxy direct", direct_ms, "ms"),
        ], note=f"gateway overhead {through_ms - direct_ms:.1f} ms per request; LiteLLM ready after "
                f"{gateway.seconds_to_ready:.0f} s")
    finally:
        if gateway:
            gateway.stop()
        proxy.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
