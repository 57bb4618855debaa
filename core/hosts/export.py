"""Writing an exported config: atomically and only when its text changed; with --watch, again on every change."""
from __future__ import annotations

import shlex
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from modelreg.errors import BadInput, RegistryError
from modelreg.store import atomic_write


def exact_yaml(config: dict[str, Any]) -> str:
    """YAML that reads back as exactly `config`: a string holding a character that is not printable (U+0085, which
    PyYAML writes raw in a quoted scalar and reads back as a space; U+2028, controls) is written double-quoted, with
    escapes. BadInput naming what could still not be kept, rather than a config that says something else."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=None if value.isprintable() else '"')

    Dumper.add_representer(str, text)
    body = yaml.dump(config, Dumper=Dumper, sort_keys=True, allow_unicode=True, width=120)
    if yaml.safe_load(body) != config:
        lost = sorted({repr(v) for v in _strings(config)} - {repr(v) for v in _strings(yaml.safe_load(body))})
        raise BadInput(f"the export cannot keep {', '.join(lost[:3]) or 'every value'} exactly in YAML; rename it")
    return body


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*_strings(key), *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


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
