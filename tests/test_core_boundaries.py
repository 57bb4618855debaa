"""core/ stays UI-free, and every setting is documented in the README."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import core
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_neither_streamlit_nor_pandas():
    modules = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "core."))
    script = ("import importlib, sys\n"
              f"for name in {modules!r}: importlib.import_module(name)\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'pandas'))\n"
              "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"core imported {proc.stdout.strip()}"
    assert len(modules) > 5


def test_gui_reads_no_registry_files():
    for path in (ROOT / "gui").rglob("*.py"):
        text = path.read_text()
        assert "model_registry" not in text and "json.load" not in text, f"{path} reads registry files itself"


def test_every_setting_is_documented_in_readme():
    readme = (ROOT / "README.md").read_text()
    for name, info in Settings.model_fields.items():
        assert info.description, f"setting {name} has no help text"
        assert f"`{name}`" in readme, f"README does not document setting {name}"
