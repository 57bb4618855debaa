"""`modelreg launch-cmd` and `modelreg launch-test`, and the old system's failure end to end on the real server."""
from __future__ import annotations

import json
import shlex

import pytest

from modelreg.cli.main import main
from modelreg.launch.running.launch_test import launch_test
from modelreg.launch.running.logs import resolve_log_dir
from modelreg.registry import Registry
from modelreg.store import CURATED_FILE, DISCOVERED_FILE
from modelreg.values import parse_value
from support import free_port
from support.layers import upstream_copy, write_layers

AWQ = "qwen2.5-vl-7b-instruct_(AWQ)"
TINY = "tiny-llama_(F32)"


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def upstream_here(folder):
    """The upstream registry with the AWQ model's custom chat template on this machine (upstream's is not)."""
    upstream_copy(folder)
    template = folder.parent / "qwen_template.jinja"
    template.write_text("{{ messages }}")
    Registry(folder).set_value(AWQ, "chat_template.path", str(template))
    return folder


def test_launch_cmd_prints_the_argv(tmp_path, capsys):
    folder = upstream_copy(tmp_path / "configs")
    code, _, err = run(capsys, "--config-dir", folder, "launch-cmd", AWQ)
    assert code == 2 and "chat_template.path /home/stewa/" in err and "does not exist" in err
    upstream_here(folder)
    code, out, _ = run(capsys, "--config-dir", folder, "launch-cmd", AWQ)
    assert code == 0
    argv = shlex.split(out)
    assert argv[:3] == ["vllm", "serve", "/home/stewa/ai-models/weights/Qwen/Qwen2.5-VL-7B-Instruct-AWQ"]
    assert argv[-6:] == ["--chat-template", str(tmp_path / "qwen_template.jinja"),
                         "--max-model-len", "4096", "--enforce-eager", "--trust-remote-code"]
    code, out, _ = run(capsys, "--config-dir", folder, "launch-cmd", AWQ, "--json")
    plan = json.loads(out)
    assert plan["argv"] == argv and plan["ready_url"] == "http://127.0.0.1:24001/health"


def test_launch_cmd_for_ollama_names_the_daemon(tmp_path, capsys):
    folder = upstream_copy(tmp_path / "configs")
    code, out, _ = run(capsys, "--config-dir", folder, "launch-cmd", "qwen3_8b_(Q4_K_M)")
    assert code == 0 and "runs in the Ollama daemon at http://127.0.0.1:11434" in out and "qwen3:8b" in out


@pytest.mark.parametrize("argv, reason", [
    (["launch-cmd", "qwen2.5-vl-7b-instruct"], "did you mean qwen2.5-vl-7b-instruct_(AWQ)"),
    (["launch-test", "nope"], "no model named 'nope'"),
])
def test_unknown_model_exits_2(tmp_path, capsys, argv, reason):
    folder = upstream_copy(tmp_path / "configs")
    run(capsys, "--config-dir", folder, "rebuild")  # the upstream snapshot is not our merge: a warning otherwise
    code, _, err = run(capsys, "--config-dir", folder, *argv)
    assert code == 2 and reason in err and err.count("\n") == 1


@pytest.mark.parametrize("args, reason", [
    ('["--enforce-eager","--port","1"]', "`--port` is set by the launcher from backend_config.port"),
    ("--max-model-length 4096", "`--max-model-length` is not a flag of vllm serve 0.32.0+cpu (did you mean "
                                "`--max-model-len`?)"),
    ("--max-model-len", "`--max-model-len` takes a value but has none"),
])
def test_bad_extra_args_exit_2_naming_model_and_flag(tmp_path, capsys, args, reason):
    """`set` refuses them (nothing written); written into curated by hand, `launch-cmd` and `validate` refuse them."""
    folder = upstream_here(tmp_path / "configs")
    curated = (folder / CURATED_FILE).read_bytes()
    code, _, err = run(capsys, "--config-dir", folder, "set", AWQ, "backend_config.extra_args", "--", args)
    assert code == 2 and f"model '{AWQ}': backend_config.extra_args: {reason}" in err and err.count("\n") == 1
    assert (folder / CURATED_FILE).read_bytes() == curated
    entries = json.loads(curated)
    entry = next(e for e in entries if e["name"] == AWQ and "profile" not in e)
    entry["backend_config"]["extra_args"] = parse_value(args, "args")
    (folder / CURATED_FILE).write_text(json.dumps(entries))
    assert run(capsys, "--config-dir", folder, "rebuild")[0] == 0
    for command in ("launch-cmd", "validate"):
        code, _, err = run(capsys, "--config-dir", folder, *([command, AWQ] if command == "launch-cmd" else [command]))
        assert code == 2 and reason in err


def test_set_notes_a_spelling_read_as_another_flag(tmp_path, capsys):
    folder = upstream_here(tmp_path / "configs")
    code, _, err = run(capsys, "--config-dir", folder, "set", AWQ, "backend_config.extra_args", "--",
                       "--max_model_len 4096 --enforce")
    assert code == 0
    assert "note: " in err and "`--max_model_len` is read as `--max-model-len`" in err
    assert "`--enforce` is read as `--enforce-eager` (a prefix of it)" in err


def standin_folder(tmp_path, standin_vllm, port: int):
    folder = upstream_here(tmp_path / "configs")
    (folder / "settings.json").write_text(json.dumps({"executables": {"vllm": str(standin_vllm)}}))
    Registry(folder).set_value(AWQ, "backend_config.port", port)
    return folder


def test_launch_test_failure_exits_1_with_diagnosis(tmp_path, capsys, standin_vllm, monkeypatch):
    # https://github.com/vllm-project/vllm/issues/5244
    line = ("ValueError: Loading /models/huggingface/Phi-3-small-128k-instruct/ requires you to execute the "
            "configuration file in that repo on your local machine. Make sure you have read the code there to avoid "
            "malicious use, then set the option `trust_remote_code=True` to remove this error.")
    (tmp_path / "replay.log").write_text(line + "\n")
    monkeypatch.setenv("STANDIN_FAIL_LOG", str(tmp_path / "replay.log"))
    folder = standin_folder(tmp_path, standin_vllm, free_port())
    code, out, err = run(capsys, "--config-dir", folder, "launch-test", AWQ)
    assert code == 1
    assert "ok: NO" in out and "diagnosis [trust_remote_code]" in out and "--trust-remote-code" in out
    assert line in err  # the log was streamed to stderr while it ran
    assert (tmp_path / "logs").is_dir()  # logs go next to the config folder, not into the repo


def test_launch_test_timeout_option(tmp_path, capsys, standin_vllm, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_SECONDS", "60")
    folder = standin_folder(tmp_path, standin_vllm, free_port())
    code, out, _ = run(capsys, "--config-dir", folder, "launch-test", AWQ, "--timeout", "1", "--json", "--quiet")
    result = json.loads(out)
    assert code == 1 and not result["ok"] and "not ready after 1 s" in result["error"]


@pytest.mark.server
def test_old_failure_curated_args_reach_the_real_server(tmp_path, capsys, tiny_model):
    """Discovered has `extra_args: []` (a legacy layer); curated sets `--n_ctx 512`; the server runs with 512."""
    folder = write_layers(tmp_path / "configs", discovered=[{
        "name": TINY, "backend": "llama-cpp-python", "size_bytes": tiny_model.stat().st_size,
        "backend_config": {"port": free_port(), "model_path": str(tiny_model), "extra_args": []}}])
    assert run(capsys, "--config-dir", folder, "set", TINY, "backend_config.extra_args", '["--n_ctx","512"]')[0] == 0

    registry = Registry(folder)
    seen = {}

    def read_process(backend):
        seen["cmdline"] = open(f"/proc/{backend.pid}/cmdline").read().split("\0")[:-1]

    result = launch_test(registry.entry(TINY), registry.settings, resolve_log_dir(folder, registry.settings),
                         on_ready=read_process, timeout=120)
    assert result.ok, result.error
    cmdline = seen["cmdline"]
    assert cmdline[cmdline.index("--n_ctx") + 1] == "512"  # the process's own command line
    assert result.context_size == 512  # and the server's own report (its default is 2048)

    code, out, _ = run(capsys, "--config-dir", folder, "launch-test", TINY, "--json", "--quiet", "--timeout", "120")
    cli_result = json.loads(out)
    assert code == 0 and cli_result["ok"] and cli_result["context_size"] == 512
    assert cli_result["argv"][-2:] == ["--n_ctx", "512"] and cli_result["reply"]
    # the machine-written layer still says what it said: nothing curated leaked into it
    discovered = json.loads((folder / DISCOVERED_FILE).read_text())
    assert discovered[0]["backend_config"]["extra_args"] == []


def test_profile_overriding_one_executable_keeps_the_others(tmp_path, capsys):
    """Settings merge deeply: a profile's `executables.vllm` leaves the user's llama.cpp path in place."""
    folder = tmp_path / "configs"
    write_layers(folder, [], [
        {"name": "big", "backend": "vllm", "backend_config": {"port": 24001, "model_path": "/m/big"}},
        {"name": "small", "backend": "llama.cpp", "backend_config": {"port": 24002, "model_path": "/m/s.gguf"}}])
    (folder / "settings.json").write_text(json.dumps({
        "executables": {"vllm": "/opt/vllm/bin/vllm", "llama.cpp": "/opt/llama/llama-server"},
        "profiles": {"gpu2": {"executables": {"vllm": "/opt/vllm-nightly/bin/vllm"}}}}))
    for profile, vllm in ((None, "/opt/vllm/bin/vllm"), ("gpu2", "/opt/vllm-nightly/bin/vllm")):
        chosen = ["--profile", profile] if profile else []
        assert shlex.split(run(capsys, "--config-dir", folder, *chosen, "launch-cmd", "big")[1])[0] == vllm
        small = shlex.split(run(capsys, "--config-dir", folder, *chosen, "launch-cmd", "small")[1])
        assert small[0] == "/opt/llama/llama-server"


def test_two_context_places_that_differ_exit_2_naming_both(tmp_path, capsys):
    """`set` refuses a context field that disagrees with the context flag (nothing written); written by hand,
    `validate` exits 2 naming both places and values; when they agree, both accept it."""
    folder = upstream_here(tmp_path / "configs")
    assert run(capsys, "--config-dir", folder, "set", AWQ, "backend_config.extra_args", "--",
               "--max-model-len 512")[0] == 0
    curated = (folder / CURATED_FILE).read_bytes()
    code, _, err = run(capsys, "--config-dir", folder, "set", AWQ, "generation_defaults.context_window", "1024")
    both = "generation_defaults.context_window is 1024 and backend_config.extra_args --max-model-len is 512"
    assert code == 2 and both in err
    assert (folder / CURATED_FILE).read_bytes() == curated
    entries = json.loads(curated)
    entry = next(e for e in entries if e["name"] == AWQ and "profile" not in e)
    entry.setdefault("generation_defaults", {})["context_window"] = 1024
    (folder / CURATED_FILE).write_text(json.dumps(entries))
    assert run(capsys, "--config-dir", folder, "rebuild")[0] == 0
    code, _, err = run(capsys, "--config-dir", folder, "validate")
    assert code == 2 and both in err
    assert run(capsys, "--config-dir", folder, "set", AWQ, "generation_defaults.context_window", "512")[0] == 0
    code, _, err = run(capsys, "--config-dir", folder, "validate")
    assert both not in err and "two places set the context" not in err, err
