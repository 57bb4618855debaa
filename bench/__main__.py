"""`python -m bench [NAME...]`: run every benchmark (or the named ones) and print side-by-side figures."""
from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("cli", "rebuild", "scan", "launch", "real_backends", "proxy", "hosts", "gui")


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
