"""Reading a backend's flag catalogue cannot hang modelreg: a `--help` that never answers is killed after
READ_TIMEOUT, the failure is remembered for a minute (by every process), and a killed caller takes its help reader
with it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from modelreg.launch import catalogue
from modelreg.launch.backends import LLAMA_CPP
from support import wait_for


def hanging_program(tmp_path):
    """A `llama-server` whose `--version` answers but whose `--help` writes its pid to `calls` and never ends."""
    program = tmp_path / "bin" / "llama-server"
    program.parent.mkdir()
    calls = tmp_path / "calls"
    program.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "version: 1 (x)" >&2; exit 0; fi\n'
                       f'echo $$ >> "{calls}"\nexec sleep 600\n')
    program.chmod(0o755)
    return program, calls


def test_hanging_help_times_out_and_the_failure_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(catalogue, "READ_TIMEOUT", 1.0)
    program, calls = hanging_program(tmp_path)
    started = time.monotonic()
    found = catalogue.catalogue_for(LLAMA_CPP, str(program))
    assert time.monotonic() - started < 10
    assert found is not None and "did not answer within 1 s" in found.notes[0] and "instead" in found.notes[0]
    [reader] = calls.read_text().split()
    assert not psutil.pid_exists(int(reader))  # killed, not left behind
    # another process within the minute: the committed catalogue at once, the program not asked again
    again = subprocess.run([sys.executable, "-c", "import sys; from modelreg.launch.catalogue import catalogue_for; "
                            f"print(catalogue_for('llama.cpp', {str(program)!r}).notes[0])"],
                           capture_output=True, text=True, timeout=60)
    assert "did not answer within 1 s" in again.stdout, again.stderr
    assert len(calls.read_text().split()) == 1
    monkeypatch.setattr(catalogue, "FAILED_READ_MEMORY", 0.0)  # a minute later: read again
    catalogue.catalogue_for(LLAMA_CPP, str(program))
    assert len(calls.read_text().split()) == 2


def test_killed_caller_leaves_no_help_reader(tmp_path):
    program, calls = hanging_program(tmp_path)
    env = {**os.environ, "MODELREG_CACHE": str(tmp_path / "cache")}
    caller = subprocess.Popen([sys.executable, "-c", "from modelreg.launch.catalogue import catalogue_for; "
                               f"catalogue_for('llama.cpp', {str(program)!r})"], env=env)
    try:
        wait_for(lambda: calls.exists() and calls.read_text().strip(), timeout=60, what="the help reader")
        reader = psutil.Process(int(calls.read_text().split()[0]))
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
        _, alive = psutil.wait_procs([reader], timeout=10)
        assert not alive, reader.cmdline()
    finally:
        if caller.poll() is None:
            caller.kill()
