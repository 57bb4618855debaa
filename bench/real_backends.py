"""Time to ready of the real vLLM (CPU) and llama-server on the tiny models: through the launcher vs by hand."""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import console, side_by_side
from bench.launch import by_hand, through_launcher, where_the_time_goes
from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.supervisor import Supervisor
from modelreg.settings import Settings
from support.real_backends import LLAMA_SERVER, VLLM, VLLM_CPU_ARGS, VLLM_ENV
from support.tiny_gguf import tiny_entry, write_tiny_gguf
from support.tiny_hf import write_tiny_hf

# a real vLLM start takes 20-60 s on 2 cores and spreads by seconds between runs: four a side gave medians 3 s apart
RUNS = {"llama.cpp": 5, "vllm": 8}


def entries(folder: Path) -> dict[str, dict]:
    gguf = tiny_entry(write_tiny_gguf(folder / "tiny.gguf"), extra_args=["-c", "512"])
    hf = tiny_entry(write_tiny_hf(folder / "tiny-hf"), extra_args=["--max-model-len", "256", *VLLM_CPU_ARGS])
    return {"llama.cpp": {**gguf, "backend": "llama.cpp"}, "vllm": {**hf, "backend": "vllm"}}


def main() -> None:
    missing = [str(p) for p in (LLAMA_SERVER, VLLM) if not p.exists()]
    if missing:
        console.print(f"real backends: skipped, {', '.join(missing)} missing (`make backends` installs them)")
        return
    os.environ.update(VLLM_ENV)
    settings = Settings(executables={"vllm": str(VLLM), "llama.cpp": str(LLAMA_SERVER),
                                     "llama-cpp-python": sys.executable})
    rows = []
    runs: dict[str, tuple[list, list]] = {}
    with tempfile.TemporaryDirectory(prefix="modelreg-bench-real-") as tmp:
        folder = Path(tmp)
        supervisor = Supervisor(folder / "logs", stop_grace=10)
        for backend, entry in entries(folder).items():
            plan = launch_plan(entry, settings)
            ours, hand = [], []
            # an untimed start first: the first start after a while may read the backend's files (vLLM: thousands
            # of Python modules) from disk, and that must not land on whichever side happens to run first
            ready_url = plan.base_url + "/v1/models"
            by_hand(plan.argv, plan.base_url, plan.served_model_id, folder / "by-hand.log", ready_url)
            for run in range(RUNS[backend]):  # in turns, each side first every other time: both see the same load
                sides = [lambda: ours.append(through_launcher(entry, settings, supervisor)),
                         lambda: hand.append(by_hand(plan.argv, plan.base_url, plan.served_model_id,
                                                     folder / "by-hand.log", ready_url))]
                for side in sides if run % 2 == 0 else sides[::-1]:
                    side()
            runs[backend] = (ours, hand)
            for measure, label in (("ready", "time to ready"), ("first", "time to first response")):
                rows.append((f"{backend}: {label} (median of {RUNS[backend]})",
                             statistics.median(getattr(r, measure) for r in ours), "by hand",
                             statistics.median(getattr(r, measure) for r in hand), "s"))
    side_by_side("Launching the real backends on the tiny models", rows)
    for backend, (_, ours_s, _, hand_s, _) in zip(RUNS, rows[::2]):
        ours, hand = runs[backend]
        console.print(f"{backend}: the launcher adds {(ours_s - hand_s) * 1000:+.0f} ms to the time to ready "
                      f"(goal: under 100 ms); ready in {', '.join(f'{r.ready:.3f}' for r in ours)} s through the "
                      f"launcher, {', '.join(f'{r.ready:.3f}' for r in hand)} s by hand")
        console.print(f"{backend}: {where_the_time_goes(ours, hand)}")


if __name__ == "__main__":
    main()
