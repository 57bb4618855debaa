"""A non-editable `pip install .` is one package, `modelreg`, that works from any folder: library, CLI and GUI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built and installed (not editable, no dependencies) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "modelreg"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info",
                                                                "__pycache__", "logs", "test-output"))
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(source)], check=True, capture_output=True, text=True,
                           timeout=300)
    (target / "build.log").write_text(build.stdout + build.stderr)
    return target


def test_the_build_gives_no_warning(installed):
    log = (installed / "build.log").read_text()
    assert "Warning:" not in log and "!!" not in log, log[-3000:]
    assert sorted(p.name for p in (installed / "modelreg" / "launch" / "catalogues").glob("*.json"))


def env_for(site: Path) -> dict[str, str]:
    """This venv's dependencies, with the installed copy first on the path (ahead of the editable install)."""
    return {**os.environ, "PYTHONPATH": str(site)}


def test_one_import_package_and_no_core_or_gui(installed, tmp_path):
    assert (installed / "modelreg" / "gui" / "app.py").is_file()
    assert (installed / "modelreg" / "launch" / "catalogues" / "vllm.json").is_file()
    assert not (installed / "core").exists() and not (installed / "gui").exists()
    script = "import modelreg; print(modelreg.__file__); print(modelreg.Registry.__name__)"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env_for(installed),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(installed / "modelreg" / "__init__.py"), "Registry"]


def test_cli_runs_from_another_folder(installed, tmp_path):
    config = tmp_path / "X"
    shutil.copytree(ROOT / "configs", config, ignore=shutil.ignore_patterns(".*"))
    listed = subprocess.run([str(installed / "bin" / "modelreg"), "--config-dir", str(config), "list", "--json"],
                            cwd=tmp_path, env=env_for(installed), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "qwen3-8b_(Q4_K_M)" in listed.stdout
    helped = subprocess.run([sys.executable, "-m", "modelreg", "--help"], cwd=tmp_path, env=env_for(installed),
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "usage: modelreg" in helped.stdout


def test_gui_is_served_from_the_installed_package(installed, tmp_path):
    assert (installed / "modelreg" / "gui" / ".streamlit" / "config.toml").is_file()  # the theme, beside app.py
    config = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", config, ignore=shutil.ignore_patterns(".*"))
    port = free_port()
    log = tmp_path / "gui.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(installed / "bin" / "modelreg"), "--config-dir", str(config), "gui",
                                    "--port", str(port)], cwd=tmp_path, env=env_for(installed), stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "modelreg GUI ready" in log.read_text(), timeout=120, what="the GUI's first run")
        assert httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=10).text == "ok"
        children = psutil.Process(process.pid).children()
        assert [str(installed / "modelreg" / "gui" / "app.py") in c.cmdline() for c in children] == [True]
        process.terminate()  # SIGTERM stops the Streamlit server with it
        assert process.wait(30) == 0
        psutil.wait_procs(children, timeout=10)
        assert not any(c.is_running() for c in children)
    finally:
        if process.poll() is None:
            process.kill()
