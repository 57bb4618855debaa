"""Writing an exported config: atomically and only when its text changed; with --watch, again on every change."""
from __future__ import annotations

import shlex
import subprocess
import threading
from pathlib import Path
from typing import Callable

from modelreg.errors import RegistryError
from modelreg.store import atomic_write


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` (temp file, fsync, rename) unless the file already holds it; True when written."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def watch_export(render: Callable[[], str], out: Path, interval: float, report: Callable[[str], None],
                 then: list[str] | None = None, stop: threading.Event | None = None) -> None:
    """Render every `interval` seconds and rewrite `out` when the text changed, then run `then` (for example the
    command that restarts the gateway). A render that fails keeps the last file and is reported once."""
    stop = stop or threading.Event()
    last_error = None
    while not stop.is_set():
        try:
            text = render()
        except RegistryError as exc:
            if str(exc) != last_error:
                report(f"{out} kept as it is: {exc}")
                last_error = str(exc)
        else:
            last_error = None
            if write_if_changed(out, text):
                report(f"wrote {out}")
                if then:
                    try:
                        report(f"ran {shlex.join(then)}: exit {subprocess.run(then, check=False).returncode}")
                    except OSError as exc:
                        report(f"could not run {then[0]}: {exc}")
        stop.wait(interval)
