"""settings.json: defaults, profile overrides, clear errors, and the one writer."""
from __future__ import annotations

import json

import pytest

from modelreg.errors import BadInput
from modelreg.registry import Registry
from modelreg.settings import Settings, load_settings, save_setting


def test_defaults_without_a_file(tmp_path):
    assert load_settings(tmp_path) == Settings()


def test_profile_overrides_apply_to_the_active_profile(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps(
        {"gpu_memory": "24GiB", "profiles": {"rtx4080": {"gpu_memory": "16GiB"}}}))
    assert Registry(tmp_path).settings.gpu_memory == "24GiB"
    assert Registry(tmp_path, profile="rtx4080").settings.gpu_memory == "16GiB"


def test_bad_settings_name_file_line_and_setting(tmp_path):
    (tmp_path / "settings.json").write_text('{\n  "gpu_memory_utilization": 2\n}\n')
    with pytest.raises(BadInput, match=r"settings.json: setting 'gpu_memory_utilization'"):
        load_settings(tmp_path)
    (tmp_path / "settings.json").write_text('{\n  "port_range": [1, 2],\n}\n')
    with pytest.raises(BadInput, match=r"settings.json:3:1: invalid JSON"):
        load_settings(tmp_path)


def test_save_setting_keeps_other_keys_and_validates(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"model_roots": ["~/models"], "profiles": {"a": {}}}))
    save_setting(tmp_path, "active_profile", "a")
    assert json.loads((tmp_path / "settings.json").read_text()) == {
        "model_roots": ["~/models"], "profiles": {"a": {}}, "active_profile": "a"}
    assert Registry(tmp_path).profile == "a"
    with pytest.raises(BadInput, match="gpu_memory_utilization"):
        save_setting(tmp_path, "gpu_memory_utilization", 5)
    with pytest.raises(BadInput, match="unknown setting 'gpu'"):
        save_setting(tmp_path, "gpu", 1)
    assert json.loads((tmp_path / "settings.json").read_text())["active_profile"] == "a"


def test_save_setting_never_overwrites_a_broken_file(tmp_path):
    (tmp_path / "settings.json").write_text("{oops")
    with pytest.raises(BadInput, match="invalid JSON"):
        save_setting(tmp_path, "active_profile", "a")
    assert (tmp_path / "settings.json").read_text() == "{oops"
