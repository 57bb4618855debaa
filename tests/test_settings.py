"""settings.json: defaults, profile overrides, clear errors, and the one writer."""
from __future__ import annotations

import json
import os
import stat

import pytest

from modelreg.errors import BadInput
from modelreg.registry import Registry
from modelreg.settings import Settings, save_setting
from modelreg.settings_view import _cache_key, load_settings


def test_defaults_without_a_file(tmp_path):
    settings = load_settings(tmp_path)
    assert settings.model_dump() == Settings().model_dump() and settings.registry_folder == tmp_path


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


def test_the_writer_checks_each_setting_and_writes_profile_overrides(tmp_path):
    from modelreg.settings import DEFAULT

    models = tmp_path / "models"
    models.mkdir()
    save_setting(tmp_path, "model_roots", [str(models)])
    with pytest.raises(BadInput, match="is not an existing folder"):
        save_setting(tmp_path, "model_roots", [str(models), str(tmp_path / "nope")])
    with pytest.raises(BadInput, match="listed twice"):
        save_setting(tmp_path, "model_roots", [str(models), str(models) + "/"])
    with pytest.raises(BadInput, match="not a URL like http://127.0.0.1:8100"):
        save_setting(tmp_path, "proxy_url", "127.0.0.1:8100")
    save_setting(tmp_path, "proxy_url", "http://127.0.0.1:8200")
    with pytest.raises(BadInput, match="the first not above the second"):
        save_setting(tmp_path, "port_range", [25000, 24000])
    with pytest.raises(BadInput, match="is not a size"):
        save_setting(tmp_path, "gpu_memory", "lots")
    with pytest.raises(BadInput, match="executable for 'vllm' is empty"):
        save_setting(tmp_path, "executables", {"vllm": " "})
    save_setting(tmp_path, "gpu_memory", "24GiB", profile="big")
    with pytest.raises(BadInput, match="profile 'big': setting 'gpu_memory_utilization'"):
        save_setting(tmp_path, "gpu_memory_utilization", 1.5, profile="big")
    assert json.loads((tmp_path / "settings.json").read_text()) == {
        "model_roots": [str(models)], "proxy_url": "http://127.0.0.1:8200",
        "profiles": {"big": {"gpu_memory": "24GiB"}}}
    assert Registry(tmp_path, "big").settings.gpu_memory == "24GiB"
    assert Registry(tmp_path).settings.gpu_memory == "16GiB"
    save_setting(tmp_path, "gpu_memory", DEFAULT, profile="big")
    save_setting(tmp_path, "proxy_url", DEFAULT)
    assert json.loads((tmp_path / "settings.json").read_text()) == {"model_roots": [str(models)], "profiles": {}}


def test_a_bad_gpu_memory_in_the_file_is_reported_on_load(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"gpu_memory": "sixteen"}))
    with pytest.raises(BadInput, match=r"settings.json: setting 'gpu_memory': .*write it like 16GiB"):
        load_settings(tmp_path)


def test_the_proxy_port_comes_from_proxy_url():
    assert Settings().proxy_port == 8100 and Settings(proxy_url="http://gpu-b:9000/").proxy_port == 9000
    assert Settings(proxy_url="http://gpu-b").proxy_port == 8100  # a hand-written URL without one: the default


SETTINGS_OF_EVERY_KIND = {
    "gpu_memory": "24GiB", "port_range": [25000, 25099], "ready_timeout": "30", "proxy_api_keys": ["k1"],
    "executables": {"llama.cpp": "/opt/llama-server"},
    "hosts": {"b": {"url": " http://gpu-b:8100/v1 ", "profile": "rtx4080"}},
    "profiles": {"rtx4080": {"gpu_memory": "16GiB", "executables": {"vllm": "/opt/vllm"}}}}


def every_setting(settings) -> dict:
    return {name: getattr(settings, name) for name in Settings.model_fields}


def test_settings_from_the_per_user_cache_answer_like_the_model(tmp_path, monkeypatch):
    """The first read validates with the model and fills the cache; the next answers from the cache with the same
    values and types (the port range a pair, hosts as the model's objects, strings coerced as the model does)."""
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "settings.json").write_text(json.dumps(SETTINGS_OF_EVERY_KIND))
    model = Settings.model_validate(SETTINGS_OF_EVERY_KIND)
    first = load_settings(tmp_path)
    assert list((tmp_path / "cache" / "settings").glob("*.json"))
    second = load_settings(tmp_path)
    for settings in (first, second):
        assert every_setting(settings) == every_setting(model)
        assert settings.ready_timeout == 30.0 and settings.port_range == (25000, 25099)
        assert settings.hosts["b"].url == "http://gpu-b:8100" and settings.registry_folder == tmp_path
        assert every_setting(settings.for_profile("rtx4080")) == every_setting(model.for_profile("rtx4080"))
        assert settings.for_profile("rtx4080").executables == {"llama.cpp": "/opt/llama-server", "vllm": "/opt/vllm"}
        assert settings.for_profile("rtx4080").registry_folder == tmp_path
    assert Registry(tmp_path, profile="rtx4080").settings.gpu_memory == "16GiB"
    assert (tmp_path / "cache" / "settings").stat().st_mode & 0o077 == 0  # it holds the proxy's keys


def test_a_changed_settings_file_is_validated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    good = tmp_path / "settings.json"
    good.write_text('{"gpu_memory_utilization": 0.5}')
    assert load_settings(tmp_path).gpu_memory_utilization == 0.5
    good.write_text('{\n  "gpu_memory_utilization": 2\n}\n')
    with pytest.raises(BadInput, match=r"settings.json: setting 'gpu_memory_utilization'"):
        load_settings(tmp_path)
    good.write_text('{"profiles": {"p": {"gpu_memory": "lots"}}}')
    assert load_settings(tmp_path).gpu_memory == "16GiB"
    with pytest.raises(BadInput, match="profile 'p'"):
        load_settings(tmp_path).for_profile("p")
    good.unlink()
    assert every_setting(load_settings(tmp_path)) == every_setting(Settings())


def test_a_damaged_settings_cache_is_validated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "settings.json").write_text('{"gpu_memory": "24GiB"}')
    load_settings(tmp_path)
    for cached in (tmp_path / "cache" / "settings").glob("*.json"):
        cached.write_text('{"key": ')
    assert load_settings(tmp_path).gpu_memory == "24GiB"


def test_a_settings_cache_folder_left_open_to_others_is_made_the_users_alone(tmp_path, monkeypatch):
    """The cache holds the proxy's API keys: a folder made before with a wider mode (another tool, an old umask) is
    closed before a key is written into it."""
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "settings"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    (tmp_path / "settings.json").write_text('{"proxy_api_keys": ["sk-local-proxy-key"]}')
    assert load_settings(tmp_path).proxy_api_keys == ["sk-local-proxy-key"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "sk-local-proxy-key" in next(folder.glob("*.json")).read_text()  # cached: closed, not given up


def test_a_settings_cache_entry_another_user_could_have_written_is_not_read(tmp_path, monkeypatch):
    """An entry is taken as validated: one in a folder that is not the user's own (a link to elsewhere, another
    user's), or a file another user left there, would hand out any values (an executable, the proxy's keys)."""
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "settings.json").write_text('{"gpu_memory": "24GiB"}')
    load_settings(tmp_path)
    folder = tmp_path / "cache" / "settings"
    entry = next(folder.glob("*.json"))
    planted = json.loads(entry.read_text())
    planted["profiles"][""]["values"]["gpu_memory"] = "99GiB"
    entry.write_text(json.dumps(planted))
    assert load_settings(tmp_path).gpu_memory == "99GiB"  # the entry as planted is one the cache would answer from
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere)
    assert load_settings(tmp_path).gpu_memory == "24GiB"
    if os.geteuid() != 0:
        return  # handing files to another user needs root
    folder.unlink()
    elsewhere.rename(folder)
    os.chown(folder, 65534, 65534)
    assert load_settings(tmp_path).gpu_memory == "24GiB"
    os.chown(folder, os.getuid(), os.getgid())
    entry.write_text(json.dumps(planted))
    os.chown(entry, 65534, 65534)
    assert load_settings(tmp_path).gpu_memory == "24GiB"


def test_a_link_left_in_the_settings_cache_does_not_get_a_file_overwritten(tmp_path, monkeypatch):
    """A link planted while the folder was open to others, named as the entry a settings file will use: the cache
    would be written through it, over the file it points at (the user's own, e.g. ~/.ssh/authorized_keys)."""
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path / "cache"))
    text = b'{"gpu_memory": "24GiB"}'
    (tmp_path / "settings.json").write_bytes(text)
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA me\n")
    folder = tmp_path / "cache" / "settings"
    folder.mkdir(parents=True)
    (folder / f"{_cache_key(text)[:32]}.json").symlink_to(victim)
    assert load_settings(tmp_path).gpu_memory == "24GiB"
    assert victim.read_text() == "ssh-ed25519 AAAA me\n"
    assert load_settings(tmp_path).gpu_memory == "24GiB"  # the entry is a file of its own now


def test_the_settings_cache_key_covers_the_modules_the_model_validates_with():
    """A change to any module whose code decides how settings validate must change the cache's key (the store only
    writes the file)."""
    import ast
    from pathlib import Path

    import modelreg.settings as model_module
    from modelreg.settings_view import _MODEL_SOURCES

    tree = ast.parse(Path(model_module.__file__).read_text())
    used = {f"{node.module.removeprefix('modelreg.')}.py" for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelreg.")}
    assert used - {"store.py"} <= set(_MODEL_SOURCES) and "settings.py" in _MODEL_SOURCES


def test_a_bad_host_entry_is_a_warning_and_the_good_hosts_stay(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"hosts": {
        "gpu-a": {"url": "http://gpu-a:8100"},
        "gpu-b": {"url": "http://gpu-b:8100", "colour": "red"},
        "bad name": {"url": "http://gpu-c:8100"},
    }, "idle_ttl": 30}))
    settings = load_settings(tmp_path)
    assert list(settings.hosts) == ["gpu-a"]
    assert settings.idle_ttl == 30
    warnings = settings.load_warnings
    assert len(warnings) == 2
    assert "hosts entry 1 ('gpu-b')" in warnings[0] and "colour" in warnings[0]
    assert "hosts entry 2 ('bad name')" in warnings[1] and "host name" in warnings[1]
    assert settings.for_profile(None).load_warnings == warnings
