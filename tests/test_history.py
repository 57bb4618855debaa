"""Curated history: each version stored once per entry (compressed), every kept version restored byte for byte, and
the folder bounded by count and by total size."""
from __future__ import annotations

import json
import subprocess

import pytest

from modelreg.errors import BadInput
from modelreg.history import CuratedHistory
from modelreg.registry import Registry
from modelreg.store import dumps, revision_of
from support.gui_servers import modelreg
from support.layers import discovered_model, write_layers


def history_bytes(folder) -> int:
    return sum(p.stat().st_size for p in (folder / ".history").iterdir())


def big_registry(folder, models: int = 300):
    """Curated entries of about 2 KB each, so that a whole copy per write would show."""
    curated = [{"name": f"m{i}", "backend": "vllm", "generation_defaults": {f"k{j}": j for j in range(60)}}
               for i in range(models)]
    write_layers(folder, [discovered_model(f"m{i}", f"/m/{i}") for i in range(models)], curated)
    return Registry(folder)


def test_a_write_keeps_only_what_it_changed_and_every_version_restores_exactly(tmp_path):
    registry = big_registry(tmp_path)
    size = registry.curated_path.stat().st_size
    versions = []
    for i in range(12):
        versions.append(registry.curated_path.read_bytes())
        registry.set_value(f"m{i * 7}", "backend_config.port", 8000 + i)
    assert history_bytes(tmp_path) < size  # twelve versions in less than one plain copy
    items = registry.history_items()
    assert len(items) == 12
    for item, version in zip(reversed(items), versions):
        assert item.revision == revision_of(version)
        assert registry.history.raw(item.id) == version


def test_history_is_bounded_by_count_and_by_size(tmp_path):
    registry = big_registry(tmp_path, models=60)
    registry.history = CuratedHistory(tmp_path, limit=5)
    for i in range(9):
        registry.set_value(f"m{i}", "backend_config.port", 8000 + i)
    assert len(registry.history_items()) == 5
    bound = history_bytes(tmp_path)
    registry.history = CuratedHistory(tmp_path, limit=50, max_bytes=bound)
    for i in range(6):
        registry.set_value(f"m{i}", "generation_defaults", {"temperature": i / 10, "text": "x" * 3000})
        assert history_bytes(tmp_path) <= bound
    items = registry.history_items()
    assert 1 <= len(items) < 11
    for item in items:
        assert revision_of(registry.history.raw(item.id)) == item.revision
    before = registry.curated_path.read_bytes()
    registry.history = CuratedHistory(tmp_path, limit=50, max_bytes=1)
    registry.set_value("m1", "roles", ["chat"])
    (kept,) = registry.history_items()  # the newest version stays, whatever its size
    assert registry.history.raw(kept.id) == before


def test_a_file_formatted_by_hand_is_kept_whole_and_compressed(tmp_path):
    registry = big_registry(tmp_path, models=40)
    hand = json.dumps(json.loads(registry.curated_path.read_bytes()), separators=(",", ":")).encode()
    registry.curated_path.write_bytes(hand)
    registry.set_value("m3", "backend_config.port", 8003)
    (item,) = registry.history_items()
    assert registry.history.raw(item.id) == hand
    assert history_bytes(tmp_path) < len(hand) / 3
    assert registry.curated_path.read_bytes() != hand  # written as `dumps` writes a list
    registry.restore(item.id)
    assert registry.curated_path.read_bytes() == dumps(json.loads(hand))


def test_versions_the_old_format_kept_whole_are_listed_restored_and_pruned(tmp_path):
    registry = big_registry(tmp_path, models=10)
    old_text = registry.curated_path.read_text()
    record = {"id": "20200101T000000000000-aaaaaaaa", "saved_at": "2020-01-01T00:00:00+00:00", "reason": "old",
              "revision": revision_of(old_text.encode()), "text": old_text}
    (tmp_path / ".history").mkdir()
    (tmp_path / ".history" / f"{record['id']}.json").write_bytes(dumps(record))
    registry.set_value("m1", "backend_config.port", 8001)
    assert [i.reason for i in registry.history_items()] == ["m1: set backend_config.port", "old"]
    assert registry.history.raw(record["id"]) == old_text.encode()
    registry.history = CuratedHistory(tmp_path, limit=1)
    registry.set_value("m2", "backend_config.port", 8002)
    assert [i.reason for i in registry.history_items()] == ["m2: set backend_config.port"]


def test_a_damaged_pack_is_reported_and_nothing_is_written(tmp_path):
    registry = big_registry(tmp_path, models=10)
    registry.set_value("m1", "backend_config.port", 8001)
    (item,) = registry.history_items()
    pack = tmp_path / ".history" / f"{item.id}.pack"
    pack.write_bytes(pack.read_bytes()[:-20])
    before = registry.curated_path.read_bytes()
    with pytest.raises(BadInput, match=item.id):
        registry.restore(item.id)
    assert registry.curated_path.read_bytes() == before


def history_cli(folder) -> tuple[int, list[dict]]:
    done = subprocess.run(modelreg(folder, "history", "--json"), capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_truncated_oldest_pack_only_damages_versions_that_need_its_entries(tmp_path):
    registry = big_registry(tmp_path, models=10)
    originals = [registry.curated_path.read_bytes()]
    for name in ("m9", "m0", "m5"):  # the oldest pack holds every entry, m9's original last
        registry.set_value(name, "display_name", f"edited {name}")
        originals.append(registry.curated_path.read_bytes())
    newest, middle, oldest = registry.history_items()  # each the file as a write found it
    pack = tmp_path / ".history" / f"{oldest.id}.pack"
    pack.write_bytes(pack.read_bytes()[:-12])  # loses the tail of the original m9, which only the oldest needs
    code, listed = history_cli(tmp_path)
    assert code == 0 and [i["id"] for i in listed] == [newest.id, middle.id, oldest.id]
    assert [i["damage"] is None for i in listed] == [True, True, False]
    assert f"{pack} is damaged" in listed[2]["damage"]
    for item, expected in ((middle, originals[1]), (newest, originals[2])):
        assert registry.history.raw(item.id) == expected  # restored from the intact part of the oldest pack
    with pytest.raises(BadInput, match=f"{oldest.id}.*{pack.name} is damaged"):
        registry.restore(oldest.id)
    registry.restore(middle.id)
    assert registry.curated_path.read_bytes() == originals[1]


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"id": 1}\n'])
def test_damaged_manifest_is_named_and_the_others_still_listed(tmp_path, damage):
    registry = big_registry(tmp_path, models=4)
    for port in (8001, 8002, 8003):
        registry.set_value("m1", "backend_config.port", port)
    newest, middle, oldest = registry.history_items()
    manifest = tmp_path / ".history" / f"{middle.id}.json"
    manifest.write_bytes(damage)
    code, listed = history_cli(tmp_path)
    assert code == 0 and [i["id"] for i in listed] == [newest.id, middle.id, oldest.id]
    assert listed[0]["damage"] is None and listed[2]["damage"] is None
    assert str(manifest) in listed[1]["damage"]
    text = subprocess.run(modelreg(tmp_path, "history"), capture_output=True, text=True, timeout=60).stdout
    rows = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert f"DAMAGED: {manifest}" in rows[middle.id] and text.count("restorable") == 2
    (tmp_path / ".history" / f"{newest.id}.json").write_bytes(b"")  # the newest damaged: exit 1
    assert history_cli(tmp_path)[0] == 1
