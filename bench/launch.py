"""Time to ready and to first response of the tiny model: through the launcher vs the same server started by hand."""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
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


@dataclass
class Start:
    """One start, split where the time goes: `spawned` (start to a running process), `serving` (the process's own
    time until its port answers, seen by a watcher polling every 10 ms beside the side's own probe), `seen` (that
    moment to the side's own probe seeing it)."""
    ready: float
    first: float
    spawned: float
    serving: float
    seen: float


class ReadyWatch(threading.Thread):
    """Polls `url` every 10 ms, the same on both sides, and keeps the moment it first answers 200. Its client is made
    before the server starts (making one takes tens of ms: a llama-server is ready sooner)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.at = url, None
        self.client = httpx.Client(timeout=2)
        self.start()

    def run(self) -> None:
        with self.client:
            while True:
                try:
                    if self.client.get(self.url).status_code == 200:
                        self.at = time.perf_counter()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)

    def seen(self) -> float:
        """When it first answered; called while the server still runs (its side has seen it ready)."""
        self.join(timeout=10)
        assert self.at is not None, f"{self.url} never answered"
        return self.at


def by_hand(argv: list[str], base_url: str, model: str, log: Path, ready_url: str) -> Start:
    """What a person's script does: start the server, poll /v1/models every 10 ms, ask, stop."""
    start = time.perf_counter()
    watch = ReadyWatch(ready_url)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    spawned = time.perf_counter()
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
            ready_at = time.perf_counter()
            served = watch.seen()
            client.post(base_url + "/v1/chat/completions", timeout=60, json={
                "model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16,
                "temperature": 0}).raise_for_status()
            first = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: vLLM's engine runs in child processes
        proc.wait(timeout=60)
    return Start(ready_at - start, first, spawned - start, served - spawned, ready_at - served)


def through_launcher(entry: dict, settings: Settings, supervisor: Supervisor) -> Start:
    """The launcher's path (what the proxy and launch-test do): plan, start, wait ready, ask, stop."""
    start = time.perf_counter()
    plan = launch_plan(entry, settings)
    watch = ReadyWatch(plan.base_url + "/v1/models")
    backend = supervisor.start(plan)
    spawned = time.perf_counter()
    try:
        supervisor.wait_ready(backend)
        ready_at = time.perf_counter()
        served = watch.seen()
        ask(plan, PROMPT, max_tokens=16)
        first = time.perf_counter() - start
    finally:
        supervisor.stop(backend)
    return Start(ready_at - start, first, spawned - start, served - spawned, ready_at - served)


def where_the_time_goes(ours: list[Start], hand: list[Start]) -> str:
    """The median of each part on both sides, and which part the difference is made of."""
    parts = []
    for part in ("spawned", "serving", "seen"):
        mine = statistics.median(getattr(s, part) for s in ours) * 1000
        theirs = statistics.median(getattr(s, part) for s in hand) * 1000
        parts.append(f"{part} {mine:.0f} vs {theirs:.0f} ms ({mine - theirs:+.0f})")
    return "launcher vs by hand, medians: " + "; ".join(parts)


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
            hand.append(by_hand(plan.argv, plan.base_url, plan.served_model_id, folder / "by-hand.log",
                                plan.base_url + "/v1/models"))
    rows = []
    for measure, label in (("ready", "time to ready"), ("first", "time to first response")):
        ours_s = statistics.median(getattr(r, measure) for r in ours)
        hand_s = statistics.median(getattr(r, measure) for r in hand)
        rows.append((f"{label} (median of {RUNS})", ours_s, "by hand", hand_s, "s"))
    side_by_side("Launching the tiny model (llama-cpp-python server)", rows)
    added_ms = (rows[1][1] - rows[1][3]) * 1000
    console.print(f"launcher adds {added_ms:+.0f} ms to the first response (goal: under 100 ms)")
    console.print(where_the_time_goes(ours, hand))


if __name__ == "__main__":
    main()
