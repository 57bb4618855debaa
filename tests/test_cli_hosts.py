"""`modelreg hosts` and `modelreg export`: what a user sees when hosts are missing, down or misconfigured, and how
an export is written (atomically, only when it changed, again on every change with --watch)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modelreg.errors import BadInput
from modelreg.hosts.export import watch_export, write_if_changed
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, dumps
from support import free_port, wait_for
from support.layers import SWAP_HOST, SWAP_PROFILE, registry_for_llama_swap


def modelreg(config_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def with_hosts(config_dir: Path, hosts: dict) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "settings.json").write_text(json.dumps({"hosts": hosts}))
    (config_dir / CURATED_FILE).write_bytes(dumps([]))
    return config_dir


def test_without_hosts_the_commands_say_how_to_add_one(tmp_path):
    config_dir = with_hosts(tmp_path / "configs", {})
    listed = modelreg(config_dir, "hosts")
    assert listed.returncode == 0 and "no hosts" in listed.stdout and '"hosts"' in listed.stdout
    exported = modelreg(config_dir, "export", "litellm")
    assert exported.returncode == 2 and "no hosts" in exported.stderr
    assert json.loads(modelreg(config_dir, "hosts", "--json").stdout) == []


def test_a_host_that_does_not_answer_is_reported_and_nothing_is_exported(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    config_dir = with_hosts(tmp_path / "configs", {"gpu-b": {"url": down}})
    listed = modelreg(config_dir, "hosts", "--json", "--timeout", "2")
    assert listed.returncode == 1
    [host] = json.loads(listed.stdout)
    assert host["name"] == "gpu-b" and not host["reachable"] and "not reachable" in host["error"]
    out = tmp_path / "litellm.yaml"
    exported = modelreg(config_dir, "export", "litellm", "--out", str(out))
    assert exported.returncode == 2 and "host gpu-b" in exported.stderr and "nothing written" in exported.stderr
    assert not out.exists()


def test_a_missing_api_key_variable_is_named(tmp_path):
    config_dir = with_hosts(tmp_path / "configs",
                            {"gpu-b": {"url": "http://127.0.0.1:9", "api_key_env": "NO_SUCH_KEY"}})
    listed = modelreg(config_dir, "hosts", "--json")
    assert "$NO_SUCH_KEY (its api_key_env) is not set" in json.loads(listed.stdout)[0]["error"]


def test_a_bad_hosts_setting_names_the_file_and_field(tmp_path):
    """`up` and the proxy only warn of a bad host entry; the commands about hosts refuse it, so no list or export
    silently leaves a host out."""
    config_dir = with_hosts(tmp_path / "configs", {"gpu b": {"url": "http://gpu-b:8100"}})
    proc = modelreg(config_dir, "hosts")
    assert proc.returncode == 2 and "settings.json" in proc.stderr and "('gpu b')" in proc.stderr
    assert "host name" in proc.stderr
    with_hosts(config_dir, {"gpu-b": {"url": "gpu-b:8100"}})
    for command in (["hosts"], ["export", "litellm"], ["export", "llama-swap", "--host", "gpu-b"]):
        proc = modelreg(config_dir, *command)
        assert proc.returncode == 2 and "('gpu-b')" in proc.stderr and "url:" in proc.stderr, command
        assert "http://gpu-b:8100" in proc.stderr, command
    with_hosts(config_dir, {"gpu-b": {"url": "http://gpu-b:8100", "key_env": "X"}})
    proc = modelreg(config_dir, "hosts")
    assert proc.returncode == 2 and "key_env" in proc.stderr


def test_llama_swap_export_for_an_unknown_host_lists_the_known_ones(tmp_path):
    config_dir = registry_for_llama_swap(tmp_path / "configs")
    proc = modelreg(config_dir, "export", "llama-swap", "--host", "gpu-z")
    assert proc.returncode == 2 and "unknown host 'gpu-z'; known: gpu-b" in proc.stderr


def test_export_out_writes_once_and_then_reports_it_up_to_date(tmp_path):
    config_dir = registry_for_llama_swap(tmp_path / "configs")
    out = tmp_path / "swap" / "config.yaml"
    first = modelreg(config_dir, "export", "llama-swap", "--host", SWAP_HOST, "--out", str(out))
    assert first.returncode == 0 and f"wrote {out}" in first.stderr
    stamp = out.stat().st_mtime_ns
    second = modelreg(config_dir, "export", "llama-swap", "--host", SWAP_HOST, "--out", str(out))
    assert second.returncode == 0 and "up to date" in second.stderr and out.stat().st_mtime_ns == stamp
    assert modelreg(config_dir, "export", "llama-swap", "--host", SWAP_HOST).stdout == out.read_text()
    assert modelreg(config_dir, "export", "llama-swap", "--watch").returncode == 2


def test_watch_rewrites_on_a_curated_change_and_keeps_the_file_when_the_registry_breaks(tmp_path):
    from modelreg.hosts.llama_swap import llama_swap_config, llama_swap_yaml
    config_dir = registry_for_llama_swap(tmp_path / "configs")
    registry = Registry(config_dir, SWAP_PROFILE)
    out, lines, ran = tmp_path / "config.yaml", [], tmp_path / "restarted"
    stop = threading.Event()
    worker = threading.Thread(target=watch_export, daemon=True, args=(
        lambda: llama_swap_yaml(llama_swap_config(registry), SWAP_HOST, SWAP_PROFILE), out, 0.05, lines.append,
        ["touch", str(ran)], stop))
    worker.start()
    try:
        wait_for(out.exists, 10, "the first write")
        registry.set_value("tiny-embed", "model_aliases", ["embedder"])
        wait_for(lambda: "embedder" in out.read_text(), 10, "the rewrite after a curated change")
        assert ran.exists()
        good = out.read_text()
        (config_dir / CURATED_FILE).write_text("[{not json")
        wait_for(lambda: any("kept as it is" in line for line in lines), 10, "the refused render")
        assert out.read_text() == good
    finally:
        stop.set()
        worker.join(5)
    assert sum("wrote" in line for line in lines) == 2


def test_write_if_changed_leaves_an_identical_file_alone(tmp_path):
    path = tmp_path / "out.yaml"
    assert write_if_changed(path, "a: 1\n") and not write_if_changed(path, "a: 1\n")
    assert write_if_changed(path, "a: 2\n") and path.read_text() == "a: 2\n"


def test_llama_swap_refuses_an_exclusive_group_named_like_the_independent_group(tmp_path):
    from modelreg.hosts.llama_swap import INDEPENDENT_GROUP, llama_swap_config
    registry = Registry(registry_for_llama_swap(tmp_path / "configs"), SWAP_PROFILE)
    registry.set_value("tiny-embed", "backend_config.exclusive_group", INDEPENDENT_GROUP)
    with pytest.raises(BadInput, match="rename that exclusive_group"):
        llama_swap_config(registry)
