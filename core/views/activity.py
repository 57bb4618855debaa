"""The Activity page as plain data: a table of recent proxied requests and each model's tokens per second over
time."""
from __future__ import annotations

from datetime import datetime
from typing import Any


def _when(at: str) -> datetime | None:
    try:
        return datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return None


def activity_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per request, newest first: when, model, path, status (`cancelled` when the client left), time to
    first token, duration, tokens and speed."""
    rows = []
    for record in reversed(records):
        when = _when(record.get("at", ""))
        rows.append({"time": when.astimezone().strftime("%H:%M:%S") if when else "", "model": record.get("model", ""),
                     "path": record.get("path", ""),
                     "status": "cancelled" if record.get("cancelled") else str(record.get("status", "")),
                     "first token ms": record.get("ttft_ms"), "duration ms": record.get("duration_ms"),
                     "prompt tokens": record.get("prompt_tokens"),
                     "completion tokens": record.get("completion_tokens"),
                     "tokens/s": record.get("tokens_per_second")})
    return rows


def speed_points(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`{"time", "model", "tokens/s"}` for every request whose speed is known, oldest first (a line per model)."""
    points = []
    for record in records:
        when, speed = _when(record.get("at", "")), record.get("tokens_per_second")
        if when is not None and isinstance(speed, (int, float)) and not record.get("cancelled"):
            points.append({"time": when, "model": record.get("model", ""), "tokens/s": float(speed)})
    return points


def activity_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests, cancelled ones, completion tokens and the mean speed over the records."""
    speeds = [p["tokens/s"] for p in speed_points(records)]
    return {"requests": len(records), "cancelled": sum(1 for r in records if r.get("cancelled")),
            "completion tokens": sum(r.get("completion_tokens") or 0 for r in records),
            "mean tokens/s": round(sum(speeds) / len(speeds), 1) if speeds else None}
