"""Where the running proxy listens: `.proxy.json` in the registry folder, written by `modelreg proxy`."""
from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from modelreg.launch.lifetime import process_alive
from modelreg.settings import PROXY_URL_ENV, Settings
from modelreg.store import atomic_write, dumps

RECORD_NAME = ".proxy.json"


def record_path(config_dir: Path) -> Path:
    return Path(config_dir) / RECORD_NAME


def write_record(config_dir: Path, url: str) -> None:
    """Record this process as the registry folder's proxy, listening on `url`."""
    me = psutil.Process()
    atomic_write(record_path(config_dir), dumps({"url": url, "pid": me.pid, "create_time": me.create_time()}))


def remove_record(config_dir: Path) -> None:
    """Remove the record if it is still this process's (another proxy may have started since)."""
    path = record_path(config_dir)
    record = _read(path)
    if record is not None and record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_url(config_dir: Path) -> str | None:
    """The URL of the proxy recorded for this folder, if its process still runs."""
    record = _read(record_path(config_dir))
    if record is None or not isinstance(record.get("url"), str):
        return None
    pid, started = record.get("pid"), record.get("create_time")
    if not (isinstance(pid, int) and isinstance(started, (int, float)) and process_alive(pid, started)):
        return None
    return record["url"]


def find_proxy_url(config_dir: Path, settings: Settings) -> tuple[str, str]:
    """(URL, where it came from): the running proxy's record, then $MODELREG_PROXY_URL, then the proxy_url setting."""
    url = recorded_url(config_dir)
    if url:
        return url, f"the running proxy's record {record_path(config_dir)}"
    if os.environ.get(PROXY_URL_ENV):
        return os.environ[PROXY_URL_ENV], f"${PROXY_URL_ENV}"
    return settings.proxy_url, "the proxy_url setting"
