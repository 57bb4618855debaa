"""The running-backends panel as plain data: what the proxy runs, with uptime and in-flight requests."""
from __future__ import annotations

import shlex
from datetime import datetime, timezone
from typing import Any


def uptime(started_at: Any, now: datetime | None = None) -> str:
    """`1h 02m`, `3m 05s` or `12s` since an ISO time (or epoch seconds); empty when unknown."""
    if started_at is None:
        return ""
    try:
        began = (datetime.fromtimestamp(started_at, timezone.utc) if isinstance(started_at, (int, float))
                 else datetime.fromisoformat(str(started_at)))
    except (ValueError, OverflowError, OSError):
        return ""
    if began.tzinfo is None:
        began = began.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - began).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def running_rows(backends: list[dict[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per backend the proxy runs: name, pid, port, uptime, in-flight requests, state, argv."""
    rows = []
    for backend in backends:
        state = ("stopping" if backend.get("stopping") else f"stale: {backend['stale_reason']}"
                 if backend.get("stale_reason") else "ready" if backend.get("ready") else "starting")
        rows.append({"name": backend.get("name", ""), "pid": backend.get("pid"), "port": backend.get("port"),
                     "uptime": uptime(backend.get("started_at"), now), "in flight": backend.get("in_flight", 0),
                     "state": state, "argv": shlex.join(str(a) for a in backend.get("argv") or [])})
    return rows
