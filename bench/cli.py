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


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import modelreg as package

    modelreg = shutil.which("modelreg", path=str(Path(sys.executable).parent)) or "modelreg"
    # bytecode as an installed package has it (pip compiles at install; PYTHONDONTWRITEBYTECODE or a fresh checkout
    # would otherwise compile every module at every start, ~45 ms of `list`)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(package.__file__).parent)], check=True,
                   stdout=subprocess.DEVNULL)
    folder = Path(tempfile.mkdtemp(prefix="modelreg-bench-cli-")) / "configs"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns(".history", ".locks", "*.lock", ".admin-token"))
    bare = median_seconds([sys.executable, "-c", "pass"])
    commands = {"--help": [modelreg, "--help"],
                "list": [modelreg, "--config-dir", str(folder), "list"],
                "set": [modelreg, "--config-dir", str(folder), "set", "qwen3-8b_(Q4_K_M)", "display_name", "Qwen3"]}
    rows = [(f"modelreg {name} (goal {GOALS[name]}x)", median_seconds(argv), "python -c pass", bare, "s")
            for name, argv in commands.items()]
    side_by_side(f"CLI start, median of {RUNS}", rows)
    shutil.rmtree(folder.parent, ignore_errors=True)
