"""Tables into a pipe are plain columns (or TSV), whole and one row per line; on a terminal rich tables, NO_COLOR
honoured; extra_args shell-quoted."""
from __future__ import annotations

import json
import os
import pty
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelreg.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BOX = set("│─┃━┏┓┗┛┡┩└┘├┤┼╇╈")


@pytest.fixture
def demo(tmp_path) -> Path:
    """A copy of the demo registry in configs/."""
    return Path(shutil.copytree(ROOT / "configs", tmp_path / "configs"))


def modelreg(config: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    """A real `modelreg` process with its stdout a pipe, in a narrow "terminal" that must not matter."""
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config), *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "40", **env})


def in_terminal(config: Path, *argv: str, **env: str) -> str:
    """What `modelreg` writes when its stdout is a terminal (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    process = subprocess.Popen([sys.executable, "-m", "modelreg", "--config-dir", str(config), *argv], stdout=follower,
                               stderr=subprocess.DEVNULL, env={**environ, "TERM": "xterm-256color", **env})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(60) == 0
    return b"".join(chunks).decode()


def snapshot_entries(config: Path) -> list[dict]:
    return json.loads(modelreg(config, "list", "--json").stdout)


def test_list_into_a_pipe_prints_each_model_whole_on_one_line(demo):
    entries = snapshot_entries(demo)
    listed = modelreg(demo, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["name", "backend", "port", "quantization", "extra_args", "status"]
    assert len(rows) == len(entries) and not BOX & set(listed.stdout) and "\x1b" not in listed.stdout
    for entry, row in zip(entries, rows):
        args = shlex.join((entry.get("backend_config") or {}).get("extra_args") or [])
        assert row.startswith(entry["name"] + " ") and (not args or f"  {args}  " in row), row
    column = header.index("backend")  # aligned: every backend starts under its header
    assert [row[column:].split()[0] for row in rows] == [entry["backend"] for entry in entries]


def test_tsv_has_one_field_per_column_and_quoted_arguments(demo, capsys):
    assert main(["--config-dir", str(demo), "set", "qwen3-8b_(Q4_K_M)", "backend_config.extra_args",
                 '["--num-ctx", "8192", "--stop", "be brief; no lists"]']) == 0
    capsys.readouterr()
    listed = modelreg(demo, "list", "--tsv")
    header, *rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert header == ["name", "backend", "port", "quantization", "extra_args", "status"]
    assert {len(row) for row in rows} == {6}
    qwen = next(row for row in rows if row[0] == "qwen3-8b_(Q4_K_M)")
    assert qwen[4] == "--num-ctx 8192 --stop 'be brief; no lists'"
    assert shlex.split(qwen[4]) == ["--num-ctx", "8192", "--stop", "be brief; no lists"]


def test_diff_and_history_into_a_pipe(demo, capsys):
    assert main(["--config-dir", str(demo), "set", "qwen3-8b_(Q4_K_M)", "display_name", "Qwen 3"]) == 0
    capsys.readouterr()
    diff = modelreg(demo, "diff", "qwen3-8b_(Q4_K_M)").stdout.splitlines()
    assert diff[0].split() == ["field", "discovered", "curated", "merged", "status"]
    assert any(line.startswith("display_name ") and '"Qwen 3"' in line for line in diff)
    history = modelreg(demo, "history", "--tsv").stdout.splitlines()
    assert history[0] == "id\tsaved at\treason\tstate" and len(history) >= 2
    assert all(len(line.split("\t")) == 4 for line in history)


def test_a_terminal_gets_a_rich_table_and_no_color_turns_its_styles_off(demo):
    styled = in_terminal(demo, "list")
    assert BOX & set(styled) and "\x1b[" in styled
    plain = in_terminal(demo, "list", NO_COLOR="1")
    assert BOX & set(plain) and "\x1b[" not in plain and "qwen3-8b_(Q4_K_M)" in plain
