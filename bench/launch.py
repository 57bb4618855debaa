"""Time to ready and to first response of the tiny model: through the launcher vs the same server started by hand."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import console, side_by_side
from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.launch_test import ask
from modelreg.launch.running.supervisor import Supervisor
from modelreg.settings import Settings
from support.tiny_gguf import tiny_entry, write_tiny_gguf

RUNS = 5
PROMPT = "Say hello."


def by_hand(argv: list[str], base_url: str, model: str, log: Path) -> tuple[float, float]:
    """What a person's script does: start the server, poll /v1/models every 10 ms, ask, stop."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                try:
                    if client.get(base_url + "/v1/models").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
                time.sleep(0.01)
            ready = time.perf_counter() - start
            client.post(base_url + "/v1/chat/completions", timeout=60, json={
                "model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16,
                "temperature": 0}).raise_for_status()
            first = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: vLLM's engine runs in child processes
        proc.wait(timeout=60)
    return ready, first


def through_launcher(entry: dict, settings: Settings, supervisor: Supervisor) -> tuple[float, float]:
    """The launcher's path (what the proxy and launch-test do): plan, start, wait ready, ask, stop."""
    start = time.perf_counter()
    plan = launch_plan(entry, settings)
    backend = supervisor.start(plan)
    try:
        supervisor.wait_ready(backend)
        ready = time.perf_counter() - start
        ask(plan, PROMPT, max_tokens=16)
        first = time.perf_counter() - start
    finally:
        supervisor.stop(backend)
    return ready, first


def main() -> None:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="modelreg-bench-launch-") as tmp:
        folder = Path(tmp)
        entry = tiny_entry(write_tiny_gguf(folder / "tiny.gguf"))
        plan = launch_plan(entry, settings)
        supervisor = Supervisor(folder / "logs", stop_grace=10)
        ours, hand = [], []
        for _ in range(RUNS):  # alternate, so both see the same machine load
            ours.append(through_launcher(entry, settings, supervisor))
            hand.append(by_hand(plan.argv, plan.base_url, plan.served_model_id, folder / "by-hand.log"))
    rows = []
    for index, measure in enumerate(("time to ready", "time to first response")):
        ours_s = statistics.median(r[index] for r in ours)
        hand_s = statistics.median(r[index] for r in hand)
        rows.append((f"{measure} (median of {RUNS})", ours_s, "by hand", hand_s, "s"))
    side_by_side("Launching the tiny model (llama-cpp-python server)", rows)
    added_ms = (rows[1][1] - rows[1][3]) * 1000
    console.print(f"launcher adds {added_ms:+.0f} ms to the first response (goal: under 100 ms)")


if __name__ == "__main__":
    main()
