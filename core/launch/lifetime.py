"""Child processes that die with the modelreg process that started them, even when it is SIGKILLed."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def process_alive(pid: int, create_time: float) -> bool:
    """The process `pid` still runs and is the one started at `create_time` (a pid alone may have been reused)."""
    import psutil  # here: `modelreg list` imports this module and must not load psutil
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# The kernel sends the parent-death signal when the *thread* that forked the child ends, not the process: a child
# forked from a short-lived thread (a worker of asyncio.to_thread, a Streamlit script run) would be killed when that
# thread ends. So every tied child is forked by one thread per process, which lives as long as the process (keyed by
# pid: a forked copy of this process has no such thread).
_forkers: dict[int, ThreadPoolExecutor] = {}


def _die_with(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    def in_child() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
    return in_child


def tied_popen(argv: list[str], **options: Any) -> subprocess.Popen:
    """subprocess.Popen, with the child SIGKILLed by the kernel when this process dies (Linux; elsewhere a plain
    Popen). Only the child itself is tied: a backend's own children are its to stop (vLLM's engine processes watch
    their parent)."""
    prctl = _prctl()
    if prctl is None:
        return subprocess.Popen(argv, **options)
    forker = _forkers.get(os.getpid())
    if forker is None:
        forker = _forkers[os.getpid()] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelreg-forker")
    preexec = _die_with(os.getpid(), prctl)
    return forker.submit(lambda: subprocess.Popen(argv, preexec_fn=preexec, **options)).result()
