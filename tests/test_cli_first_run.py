"""A first run outside the repository: the built wheel in a fresh venv finds the user's models and keeps them in the
user's config folder, from whatever folder it is run."""
from __future__ import annotations

import argparse
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelreg.cli.scan import registry_or_first_scan
from modelreg.errors import BadInput
from support import free_port, wait_for
from support.model_folders import as_hf_cache
from support.tiny_gguf import write_tiny_gguf
from support.tiny_hf import write_tiny_hf

ROOT = Path(__file__).resolve().parents[1]
BUILD = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The wheel, built from a copy of the tracked tree without build isolation (no network), and the build's log."""
    source = tmp_path_factory.mktemp("src") / "modelreg"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info",
                                                                "__pycache__", "logs", "test-output"))
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # its notice is no packaging fault
    proc = subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=source, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / proc.stdout.split()[-1], proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; this venv's site-packages give it the dependencies (through a .pth)."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(folder / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(built[0])], check=True, capture_output=True, timeout=300)
    own = folder / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (own / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = subprocess.run([str(folder / "bin" / "python"), "-c", "import modelreg; print(modelreg.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=folder)
    assert where.stdout.strip() == str(own / "modelreg" / "__init__.py"), where.stderr  # the wheel, not this checkout
    return folder


@pytest.fixture
def home(tmp_path) -> Path:
    """A user's home with a tiny Hugging Face model and a tiny GGUF repository in the Hugging Face cache."""
    home = tmp_path / "home"
    hub = home / ".cache" / "huggingface" / "hub"
    write_tiny_hf(tmp_path / "tiny-hf")
    as_hf_cache(tmp_path / "tiny-hf", hub, "acme/tiny-chat")
    (tmp_path / "tiny-gguf").mkdir()
    write_tiny_gguf(tmp_path / "tiny-gguf" / "tiny-chat-Q8_0.gguf")
    as_hf_cache(tmp_path / "tiny-gguf", hub, "acme/tiny-chat-GGUF")
    return home


def user_env(home: Path) -> dict[str, str]:
    """The user's environment: HOME set, and nothing that names a registry, a cache or this checkout."""
    unset = {"MODELREG_CONFIG_DIR", "MODELREG_PROFILE", "XDG_CONFIG_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS",
             "PYTHONPATH", "VIRTUAL_ENV"}
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "HOME": str(home),
            "OLLAMA_HOST": "http://127.0.0.1:9"}


def test_the_wheel_builds_without_warnings(built):
    assert "warning" not in built[1].lower(), built[1]


def test_scan_then_list_from_any_folder_uses_the_users_registry(venv, home, tmp_path):
    modelreg = str(venv / "bin" / "modelreg")
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    helped = subprocess.run([modelreg, "--help"], cwd=empty, env=user_env(home), capture_output=True, text=True,
                            timeout=60)
    assert "else ./configs if it exists, else the user's config folder" in " ".join(helped.stdout.split())
    scanned = subprocess.run([modelreg, "scan"], cwd=empty, env=user_env(home), capture_output=True, text=True,
                             timeout=120)
    assert scanned.returncode == 0, scanned.stderr
    assert "2 model(s)" in scanned.stdout and "2 new stub(s)" in scanned.stdout, scanned.stdout
    registry = home / ".config" / "modelreg"
    assert (registry / "model_registry.discovered.json").is_file() and not list(empty.iterdir())
    listed = subprocess.run([modelreg, "list"], cwd=other, env=user_env(home), capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 2 and all("needs config" in row for row in rows), listed.stdout
    assert {tuple(row.split()[:2]) for row in rows} == {("tiny-chat_(F32)", "llama-cpp-python"),  # the GGUF
                                                        ("tiny-chat_(FP32)", "vllm")}, listed.stdout
    assert not list(other.iterdir())


def test_a_missing_explicit_folder_is_still_an_error(venv, home, tmp_path):
    listed = subprocess.run([str(venv / "bin" / "modelreg"), "--config-dir", str(tmp_path / "nowhere"), "list"],
                            cwd=tmp_path, env=user_env(home), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 2 and "does not exist" in listed.stderr
    assert not (tmp_path / "nowhere").exists() and not (home / ".config").exists()


def test_only_a_new_default_registry_is_scanned_first(home, tmp_path, monkeypatch, capsys):
    for name, value in user_env(home).items():
        monkeypatch.setenv(name, value)
    for name in set(os.environ) - set(user_env(home)):
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    registry = registry_or_first_scan(argparse.Namespace(config_dir=None, profile=None))
    assert registry.config_dir == home / ".config" / "modelreg"
    shown = capsys.readouterr().out
    assert f"a new registry in {registry.config_dir}" in shown and "2 model(s)" in shown and "2 new stub(s)" in shown
    assert len(registry_or_first_scan(argparse.Namespace(config_dir=None, profile=None)).snapshot().entries) == 2
    assert capsys.readouterr().out == ""  # a registry that holds layers is not scanned again
    with pytest.raises(BadInput, match="does not exist"):
        registry_or_first_scan(argparse.Namespace(config_dir=str(tmp_path / "typo"), profile=None))
    assert not (tmp_path / "typo").exists()


def test_the_gui_on_a_new_user_registry_shows_the_models_found(venv, home, tmp_path):
    port, log = free_port(), tmp_path / "gui.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(venv / "bin" / "modelreg"), "gui", "--port", str(port)], cwd=tmp_path,
                                   env=user_env(home), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "modelreg GUI ready" in log.read_text(), timeout=120, what="the GUI's first run")
        text = log.read_text()
        assert "a new registry in" in text and "2 model(s)" in text and str(home / ".config" / "modelreg") in text
        assert httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=10).text == "ok"
    finally:
        process.terminate()
        process.wait(30)
