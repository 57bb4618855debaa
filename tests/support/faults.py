"""Faults injected for real: SIGKILL at an exact write point (strace, or a forked writer that kills itself in its
n-th fsync), a read-only or full disk (a small tmpfs in a private mount namespace), a file-size limit."""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

import pytest

from modelreg.errors import RegistryError

MODELREG = str(Path(sys.executable).parent / "modelreg")
STRACE = shutil.which("strace")
UNSHARE = shutil.which("unshare")


def strace_or_skip() -> str:
    if not STRACE:
        pytest.skip("NO STRACE: `make test` installs Debian's strace; the kill-at-a-write-point tests were SKIPPED")
    return STRACE


def modelreg_killed_at(n: int, *argv: str, syscall: str = "fsync") -> subprocess.CompletedProcess:
    """`modelreg ARGV`, SIGKILLed as it enters its n-th `syscall` (strace's fault injection: no timing involved)."""
    return subprocess.run([strace_or_skip(), "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
                           "-e", f"inject={syscall}:signal=SIGKILL:when={n}", MODELREG, *map(str, argv)],
                          capture_output=True, text=True, timeout=120)


def count_calls(*argv: str, syscall: str = "fsync") -> int:
    """How many times `modelreg ARGV` enters `syscall` when nothing goes wrong (it runs, for real)."""
    with tempfile.NamedTemporaryFile("r") as trace:
        result = subprocess.run([strace_or_skip(), "-f", "-qq", "-e", f"trace={syscall}", "-o", trace.name,
                                 MODELREG, *map(str, argv)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return sum(f"{syscall}(" in line for line in trace.read().splitlines())


def count_fsyncs(action: Callable[[], object]) -> int:
    """How many times `action`, run here, enters fsync (each atomic write: the temp file, then the folder)."""
    calls, fsync = [], os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        fsync(fd)
    os.fsync = counting_fsync
    try:
        action()
    finally:
        os.fsync = fsync
    return len(calls)


def run_in_child(action: Callable[[], object], kill_at_fsync: int | None = None) -> int:
    """Run `action` in a forked process that SIGKILLs itself on entering its n-th fsync (None: never); its exit code:
    what `action` returned if that is an int (a CLI's `main`), else 0 done, 2 refused (RegistryError), -9 killed,
    1 crashed (traceback on stderr)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            if kill_at_fsync is not None:
                calls, fsync = itertools.count(1), os.fsync

                def killing_fsync(fd: int) -> None:
                    if next(calls) == kill_at_fsync:
                        os.kill(os.getpid(), signal.SIGKILL)
                    fsync(fd)
                os.fsync = killing_fsync
            result = action()
            code = result if type(result) is int else 0
        except RegistryError:
            code = 2
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def in_mount_namespace(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell script as root of a private user and mount namespace, where it may mount a small tmpfs (full
    disk) or remount one read-only, without touching the machine's mounts; $MODELREG is the CLI."""
    if not UNSHARE or subprocess.run([UNSHARE, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("NO MOUNT NAMESPACE: `unshare -rm` is not permitted here; the full and read-only disk tests "
                    "were SKIPPED")
    return subprocess.run([UNSHARE, "-rm", "sh", "-euc", script], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MODELREG": MODELREG})
