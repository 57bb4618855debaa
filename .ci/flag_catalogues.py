"""Regenerate the flag catalogues committed in core/launch/catalogues/ from the real programs `make backends` installs.

modelreg reads each backend's flags from the installed program; these files serve where a program is not installed.
Run after changing a backend version in .ci/backends.sh: `.venv/bin/python .ci/flag_catalogues.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from modelreg.launch.backends import LLAMA_CPP, LLAMA_CPP_PYTHON, VLLM
from modelreg.launch.catalogue import COMMITTED, read_catalogue

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".cache" / "backends" / "bin"
PROGRAMS = {VLLM: str(BIN / "vllm"), LLAMA_CPP: str(BIN / "llama-server"), LLAMA_CPP_PYTHON: sys.executable}


def main() -> int:
    for backend, executable in PROGRAMS.items():
        catalogue = read_catalogue(backend, executable)
        path = COMMITTED / f"{backend}.json"
        path.write_text(catalogue.dumps(), encoding="utf-8")
        print(f"{path.relative_to(REPO)}: {catalogue.program} {catalogue.version}, {len(catalogue.flags)} flags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
