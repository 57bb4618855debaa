"""Start-up cost of the command line on the demo registry, side by side with a bare Python start in the same run."""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import side_by_side

RUNS = 15
DEMO = Path(__file__).resolve().parents[1] / "configs"
GOALS = {"--help": 3, "list": 6, "set": 6}


def median_seconds(commands: dict[str, list[str]]) -> dict[str, float]:
    """Median wall time of each command over RUNS rounds, the commands in turns (a load spike on a shared machine
    then falls on all of them, the reference too)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(runs) for name, runs in times.items()}


def main() -> None:
    import modelreg as package

    modelreg = shutil.which("modelreg", path=str(Path(sys.executable).parent)) or "modelreg"
    # bytecode as an installed package has it (pip compiles at install; PYTHONDONTWRITEBYTECODE or a fresh checkout
    # would otherwise compile every module at every start, ~45 ms of `list`)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(package.__file__).parent)], check=True,
                   stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="modelreg-bench-cli-"))
    folder, copied = work / "configs", work / "copied"
    for target in (folder, copied):
        shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns(".history", ".locks", "*.lock", ".admin-token",
                                                                    ".snapshot-source"))
    # a registry modelreg has written keeps the record of what its snapshot was built from; a copied folder has none,
    # so `list` merges (and validates) the layers to tell whether the snapshot is stale
    subprocess.run([modelreg, "--config-dir", str(folder), "rebuild"], check=True, stdout=subprocess.DEVNULL)
    commands = {"bare": [sys.executable, "-c", "pass"],
                "--help": [modelreg, "--help"],
                "list": [modelreg, "--config-dir", str(folder), "list"],
                "set": [modelreg, "--config-dir", str(folder), "set", "qwen3-8b_(Q4_K_M)", "display_name", "Qwen3"],
                "copied": [modelreg, "--config-dir", str(copied), "list"]}
    medians = median_seconds(commands)
    bare = medians["bare"]
    rows = [(f"modelreg {name} (goal {GOALS[name]}x)", medians[name], "python -c pass", bare, "s") for name in GOALS]
    rows.append(("modelreg list, a copied folder without its build record", medians["copied"], "python -c pass",
                 bare, "s"))
    side_by_side(f"CLI start, median of {RUNS} in turns", rows)
    shutil.rmtree(work, ignore_errors=True)
