"""Rebuild of a synthetic 10,000-entry registry of upstream-shaped entries: modelreg vs the same merge in jq."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import best_of, side_by_side
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE, dumps

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-registry"
JQ_MERGE = """
($c[0] | map(select(.profile == null)) | map({key: .name, value: .}) | from_entries) as $cm
| [$d[0][] | . as $e | $e * ($cm[$e.name] // {})] | sort_by(.name)
"""


def synthetic_registry(folder: Path, count: int = 10_000) -> None:
    """`count` discovered entries cloned from the upstream corpus, and a curated override for every other one."""
    discovered = json.loads((UPSTREAM / DISCOVERED_FILE).read_text())
    curated = {e["name"]: e for e in json.loads((UPSTREAM / CURATED_FILE).read_text())}
    out_d, out_c = [], []
    for i in range(count):
        template = discovered[i % len(discovered)]
        entry = copy.deepcopy(template)
        entry["name"] = f"{template['name']}-{i:05d}"
        out_d.append(entry)
        if i % 2 == 0 and template["name"] in curated:
            over = copy.deepcopy(curated[template["name"]])
            over["name"] = entry["name"]
            out_c.append(over)
    (folder / DISCOVERED_FILE).write_bytes(dumps(out_d))
    (folder / CURATED_FILE).write_bytes(dumps(out_c))


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="modelreg-bench-"))
    try:
        synthetic_registry(folder)
        registry = Registry(folder)

        def ours() -> None:
            registry.snapshot_path.unlink(missing_ok=True)
            registry.rebuild()

        ours_s = best_of(3, ours)
        jq = shutil.which("jq")
        jq_s = 0.0
        if jq:
            def reference() -> None:
                with open(folder / "jq.json", "wb") as out:
                    subprocess.run([jq, "-n", "--slurpfile", "d", str(folder / DISCOVERED_FILE), "--slurpfile", "c",
                                    str(folder / CURATED_FILE), JQ_MERGE], stdout=out, check=True)
            jq_s = best_of(3, reference)
        size_mb = sum((folder / f).stat().st_size for f in (DISCOVERED_FILE, CURATED_FILE)) / 1e6
        side_by_side("rebuild: 10,000 upstream-shaped entries", [
            ("merge + write snapshot", ours_s, "jq" if jq else "jq missing", jq_s, "s")],
            note=f"inputs {size_mb:.0f} MB; modelreg also validates every entry and computes per-field provenance; "
                 "goal: ratio <= 1.00")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
