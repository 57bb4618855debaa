"""Timing and side-by-side printing shared by the benchmarks."""
from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.table import Table

console = Console()


def best_of(runs: int, action: Callable[[], object]) -> float:
    """Fastest wall time of `runs` calls, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def side_by_side(title: str, rows: list[tuple[str, float, str, float, str]], note: str = "") -> None:
    """Rows of (what, ours, reference name, reference, unit); prints the ratio ours/reference."""
    table = Table(title=title)
    for column in ("measure", "modelreg", "reference", "ratio"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for what, ours, ref_name, ref, unit in rows:
        ratio = f"{ours / ref:.2f}x" if ref else "n/a"
        table.add_row(what, f"{ours:.3f} {unit}", f"{ref:.3f} {unit} ({ref_name})", ratio)
    console.print(table)
    if note:
        console.print(note)
