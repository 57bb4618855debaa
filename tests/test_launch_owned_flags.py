"""The launcher owns where a backend listens and what it loads: no spelling in extra_args and no environment variable
can change it. Proven against the real llama-cpp-python server, whose argparse takes prefixes (`--hos`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from modelreg.errors import BadInput
from modelreg.launch.planning.plan import launch_plan
from modelreg.launch.running.launch_test import launch_test
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.store import CURATED_FILE
from support import free_port
from support.gui_servers import modelreg
from support.tiny_gguf import tiny_entry

HOSTILE = [
    (["--hos", "0.0.0.0"], "--host", "backend_config.host"),
    (["--host=0.0.0.0"], "--host", "backend_config.host"),
    (["--h", "0.0.0.0"], None, None),                      # could be --host or --hf_...: refused as ambiguous
    (["--por", "9"], "--port", "backend_config.port"),
    (["--po=9"], "--port", "backend_config.port"),
    (["--mode", "/other.gguf"], None, None),               # --model or --model_alias: refused as ambiguous
    (["--model_a=x"], "--model_alias", "served_model_id"),
    (["--hf_model_r", "org/other"], "--hf_model_repo_id", "backend_config.model_path"),  # loads another model
]


@pytest.mark.parametrize("args, flag, field", HOSTILE)
def test_every_spelling_of_a_launcher_flag_is_refused(tiny_model, args, flag, field):
    with pytest.raises(BadInput) as refused:
        launch_plan(tiny_entry(tiny_model, extra_args=args), Settings())
    message = str(refused.value)
    if flag is None:
        assert "could be any of" in message and "write the whole flag" in message
    else:
        assert f"`{flag}`" in message and f"is set by the launcher from {field}" in message


@pytest.mark.parametrize("backend, args, flag, instead", [
    ("vllm", ["--config", "x.yaml"], "--config", "put each setting in extra_args as a flag"),  # `uds:` in it
    ("vllm", ["--config=x.yaml"], "--config", "put each setting in extra_args as a flag"),
    ("llama-cpp-python", ["--config_f", "evil.json"], "--config_file", "put each setting in extra_args as a flag"),
    ("vllm", ["--api_key=sk-1"], "--api-key", "use backend_config.api_key_env"),
    ("vllm", ["--api-k", "sk-1"], "--api-key", "use backend_config.api_key_env"),
    ("llama.cpp", ["--api-key", "sk-1"], "--api-key", "use backend_config.api_key_env"),
    ("llama.cpp", ["--api-key-file", "/k"], "--api-key-file", "use backend_config.api_key_env"),
    ("llama-cpp-python", ["--api_k", "sk-1"], "--api_key", "use backend_config.api_key_env"),
    ("llama.cpp", ["-hft", "hf_x"], "--hf-token", "export HF_TOKEN"),
    ("llama.cpp", ["-hfd", "org/draft"], "--spec-draft-hf", "--spec-draft-model"),
    ("llama.cpp", ["-hff", "x.gguf"], "--hf-file", "backend_config.model_path"),
])
def test_config_file_and_secret_flags_in_extra_args_are_refused(tiny_model, backend, args, flag, instead):
    with pytest.raises(BadInput) as refused:
        launch_plan({**tiny_entry(tiny_model, extra_args=args), "backend": backend}, Settings())
    assert f"`{flag}`" in str(refused.value) and instead in str(refused.value)


@pytest.mark.parametrize("value", ["-nan", "nan", "-inf", "inf", "Infinity", "-1e999"])
def test_non_finite_numbers_as_flag_values_are_refused(tiny_model, value):
    with pytest.raises(BadInput, match=f"`--temp` is given `{value}`, which is not a finite number"):
        launch_plan(tiny_entry(tiny_model, extra_args=["--temp", value], backend="llama.cpp"), Settings())
    plan = launch_plan(tiny_entry(tiny_model, extra_args=["--temp", "-0.5"], backend="llama.cpp"), Settings())
    assert plan.argv[-2:] == ["--temp", "-0.5"]  # a negative number is still a value
    with pytest.raises(BadInput, match="`-1e-3`, which llama_cpp.server .argparse. reads as a flag"):
        launch_plan(tiny_entry(tiny_model, extra_args=["--n_threads", "-1e-3"]), Settings())
    launch_plan(tiny_entry(tiny_model, extra_args=["--temp", "-1e-3"], backend="llama.cpp"), Settings())  # C++ parser


def test_set_refuses_them_and_writes_nothing(tiny_model, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    scanned = subprocess.run(modelreg(folder, "scan", str(tiny_model.parent), "--json"), capture_output=True,
                             text=True, timeout=120)
    name = json.loads(scanned.stdout)["stubs"][0]
    Registry(folder).set_value(name, "backend", "llama-cpp-python")
    before = (folder / CURATED_FILE).read_bytes()
    for args in ('["--hos", "0.0.0.0"]', "--por 9", '["--max-model-len", "4096"]'):
        done = subprocess.run(modelreg(folder, "set", name, "backend_config.extra_args", "--", args),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stdout
        assert f"model {name!r}: backend_config.extra_args: " in done.stderr
        assert (folder / CURATED_FILE).read_bytes() == before


@pytest.mark.server
def test_the_real_server_listens_only_where_the_plan_says(tiny_model, tmp_path, monkeypatch):
    """llama_cpp.server's uvicorn.run reads HOST and PORT over its argv, and CONFIG_FILE replaces its argv: the
    launcher passes none of them on. The running server listens on the plan's host and port, nothing else."""
    config = tmp_path / "evil.json"
    config.write_text(json.dumps({"host": "0.0.0.0", "port": free_port(), "models": [{"model": str(tiny_model)}]}))
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", str(free_port()))
    monkeypatch.setenv("CONFIG_FILE", str(config))
    entry = tiny_entry(tiny_model)
    plan = launch_plan(entry, Settings())
    seen: dict[str, set] = {}

    def record(backend) -> None:
        group = [p for p in psutil.process_iter() if _same_group(p, backend.pid)]
        seen["listening"] = {(c.laddr.ip, c.laddr.port) for p in group for c in p.net_connections(kind="tcp")
                             if c.status == psutil.CONN_LISTEN}

    result = launch_test(entry, Settings(), tmp_path / "logs", timeout=120, on_ready=record)
    assert result.ok, result.error
    assert seen["listening"] == {(plan.host, plan.port)} == {("127.0.0.1", entry["backend_config"]["port"])}
    assert sys.executable == result.argv[0]


def _same_group(process: psutil.Process, pid: int) -> bool:
    try:
        return os.getpgid(process.pid) == os.getpgid(pid)
    except (ProcessLookupError, psutil.Error):
        return False
