"""Per-model program and environment (backend_config.executable and backend_config.env): validation, `$NAME`
references read only at launch, masking in previews and logs, and the real llama-server started with both."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from modelreg.errors import BadInput
from modelreg.launch.planning.checks import launch_problems
from modelreg.launch.planning.plan import backend_catalogue, launch_plan
from modelreg.launch.running.supervisor import BackendStartError, Supervisor
from modelreg.registry import Registry
from modelreg.schema import check_entry
from modelreg.settings import Settings
from modelreg.values import env_references, env_value_problem, resolve_env_value, shown_env_value
from support.gui_servers import modelreg
from support.real_backends import LLAMA_SERVER, clean_llama_env, require
from support.tiny_gguf import tiny_entry, write_tiny_gguf


def entry(**config) -> dict:
    return {"name": "m", "backend": "llama.cpp",
            "backend_config": {"port": 24001, "model_path": "/models/m.gguf", **config}}


# ---- references -------------------------------------------------------------------------------------------------
def test_references_are_read_from_the_environment_given_and_dollar_dollar_is_a_dollar():
    environ = {"HOME": "/home/u", "GPU": "1"}
    assert env_references("${HOME}/x:$GPU:$$HOME") == ["HOME", "GPU"]
    assert resolve_env_value("${HOME}/x:$GPU:$$HOME", environ) == "/home/u/x:1:$HOME"
    assert resolve_env_value("0,1", environ) == "0,1"
    with pytest.raises(KeyError, match="MISSING"):
        resolve_env_value("$MISSING", environ)


@pytest.mark.parametrize("value", ["cost $5", "${}", "${1X}", "a$", 7])
def test_a_dollar_that_starts_no_reference_or_a_non_text_value_is_refused(value):
    assert env_value_problem(value)


def test_secret_looking_values_are_masked_and_references_are_shown_as_written():
    assert shown_env_value("HF_TOKEN", "hf_abcdef") == "***"
    assert shown_env_value("OPENAI_API_KEY", "whatever") == "***"
    assert shown_env_value("SOMETHING", "sk-123456") == "***"  # a key format, whatever the name
    assert shown_env_value("HF_TOKEN", "$HF_TOKEN") == "$HF_TOKEN"  # a name, not the value
    assert shown_env_value("HF_TOKEN", "prefix-$HF_TOKEN") == "***"  # part of it is written out
    assert shown_env_value("CUDA_VISIBLE_DEVICES", "0,1") == "0,1"
    assert shown_env_value("HTTPS_PROXY", "http://me:hunter2@proxy.lan:3128") == "***"  # a password in a URL
    assert shown_env_value("HTTPS_PROXY", "http://proxy.lan:3128") == "http://proxy.lan:3128"
    assert shown_env_value("HTTPS_PROXY", "http://$PROXY_USER:$PROXY_PASS@proxy.lan:3128") == "***"


# ---- validation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("config", "words"), [
    ({"env": ["CUDA_VISIBLE_DEVICES=0"]}, "instance of dict"),
    ({"env": {"1BAD": "x"}}, "not an environment variable name"),
    ({"env": {"CUDA_VISIBLE_DEVICES": 0}}, "not text"),
    ({"env": {"X": "costs $5"}}, "write $$ for a literal $"),
    ({"executable": ""}, "at least 1 character"),
    ({"executable": 5}, "valid string"),
])
def test_the_schema_names_the_field_and_says_what_to_write(config, words):
    problems = check_entry(entry(**config), 0).problems
    assert problems and words in problems[0], problems
    field = "backend_config.env" if "env" in config else "backend_config.executable"
    assert f"field {field!r}" in problems[0]
    assert ("e.g." in problems[0]) if "env" in config else ("settings' program" in problems[0])


def test_variables_the_launcher_owns_are_refused_by_the_launch_check():
    problems = launch_problems(entry(env={"LLAMA_ARG_PORT": "1", "CUDA_VISIBLE_DEVICES": "0"}), Settings())
    assert [p.field for p in problems if p.error] == ["backend_config.env"]
    assert "LLAMA_ARG_PORT is set by modelreg" in problems[0].message
    vllm = {**entry(env={"VLLM_API_KEY": "$K"}), "backend": "vllm"}
    assert any("api_key_env" in p.message for p in launch_problems(vllm, Settings()) if p.error)
    ollama = {"name": "o", "backend": "ollama", "backend_config": {"env": {"A": "1"}, "executable": "/bin/ollama"}}
    assert len([p for p in launch_problems(ollama, Settings()) if p.error]) == 2


def test_a_missing_executable_is_a_note_not_an_error():
    problems = launch_problems(entry(executable="/nowhere/llama-server-ec9e0301"), Settings())
    notes = [p for p in problems if p.field == "backend_config.executable"]
    assert notes and not notes[0].error and "/nowhere/llama-server-ec9e0301" in notes[0].message


# ---- the plan -----------------------------------------------------------------------------------------------------
def test_the_plan_keeps_references_and_only_the_process_environment_has_values(monkeypatch):
    monkeypatch.setenv("MY_HF", "hf_secretsecret")
    plan = launch_plan(entry(executable="~/bin/llama-server-b1", env={
        "CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "$MY_HF", "API_KEY": "sk-literal"}), Settings())
    assert plan.argv[0] == os.path.expanduser("~/bin/llama-server-b1")
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "$MY_HF", "API_KEY": "sk-literal"}
    shown = json.dumps(plan.to_dict()) + plan.command_line()
    assert "hf_secretsecret" not in shown and "sk-literal" not in shown
    assert plan.to_dict()["env"] == {"CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "$MY_HF", "API_KEY": "***"}
    assert plan.command_line().startswith("CUDA_VISIBLE_DEVICES=0,1 HF_TOKEN=\"$MY_HF\" API_KEY='***' ")
    assert plan.process_env() == {"CUDA_VISIBLE_DEVICES": "0,1", "HF_TOKEN": "hf_secretsecret", "API_KEY": "sk-literal"}
    monkeypatch.delenv("MY_HF")
    with pytest.raises(BadInput, match=r"backend_config.env.HF_TOKEN refers to \$MY_HF, which is not set"):
        plan.process_env()


def test_a_changed_environment_changes_the_signature():
    one = launch_plan(entry(env={"CUDA_VISIBLE_DEVICES": "0"}), Settings())
    two = launch_plan(entry(env={"CUDA_VISIBLE_DEVICES": "1"}), Settings())
    assert one.signature != two.signature


# ---- the real llama-server ----------------------------------------------------------------------------------------
@pytest.fixture
def pinned_build(tmp_path):
    """A registry whose settings name no installed llama-server, and one model pinned to a build of its own (a link
    to the real llama-server under another name, as llama-swap configs pin `llama-server-ec9e0301`)."""
    pinned = tmp_path / "bin" / "llama-server-ec9e0301"
    pinned.parent.mkdir()
    pinned.symlink_to(require(LLAMA_SERVER))
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "log_dir": str(tmp_path / "logs"), "stop_grace": 2,
        "executables": {"llama.cpp": str(tmp_path / "not-installed" / "llama-server")}}))
    model = {**tiny_entry(write_tiny_gguf(tmp_path / "tiny.gguf"), name="tiny", extra_args=["-c", "512"]),
             "backend": "llama.cpp"}
    model["backend_config"].update(executable=str(pinned), env={
        "CUDA_VISIBLE_DEVICES": "1", "HF_TOKEN": "${TEST_PINNED_TOKEN}", "MODELREG_TEST_LITERAL_KEY": "sk-written"})
    (folder / "model_registry.curated.json").write_text(json.dumps([model]))
    return folder, pinned


@pytest.mark.llama_server
def test_the_real_llama_server_runs_from_the_models_program_with_its_environment(pinned_build, monkeypatch):
    folder, pinned = pinned_build
    monkeypatch.setenv("TEST_PINNED_TOKEN", "hf_fromtheproxyenv")
    for key in [k for k in os.environ if k.startswith("LLAMA_ARG_")]:
        monkeypatch.delenv(key)
    registry = Registry(folder)
    entry = registry.entry("tiny")
    # the flags are read from the model's program: the settings' program is not installed, which would leave only
    # the committed catalogue (with a note saying so)
    catalogue = backend_catalogue("llama.cpp", registry.settings, entry)
    assert catalogue is not None and not catalogue.notes
    assert backend_catalogue("llama.cpp", registry.settings).notes
    supervisor = Supervisor.for_registry(registry)
    backend = supervisor.start_ready(launch_plan(entry, registry.settings))
    try:
        pid = backend.pid
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert environ["CUDA_VISIBLE_DEVICES"] == "1"
        assert environ["HF_TOKEN"] == "hf_fromtheproxyenv"
        assert environ["MODELREG_TEST_LITERAL_KEY"] == "sk-written"
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == str(pinned).encode()
        assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(require(LLAMA_SERVER))
        written = backend.log_path.read_text() + supervisor.state_path("tiny").read_text()
        assert "hf_fromtheproxyenv" not in written and "sk-written" not in written
        # the snapshot holds the entry as written: the reference, never its value
        snapshot = (folder / "model_registry.json").read_text()
        assert "${TEST_PINNED_TOKEN}" in snapshot and "hf_fromtheproxyenv" not in snapshot
        assert 'HF_TOKEN="${TEST_PINNED_TOKEN}"' in backend.log_path.read_text()
    finally:
        supervisor.stop(backend)
    preview = subprocess.run(modelreg(folder, "launch-cmd", "tiny"), capture_output=True, text=True, timeout=60,
                             env={**clean_llama_env(), "TEST_PINNED_TOKEN": "hf_fromtheproxyenv"})
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith("CUDA_VISIBLE_DEVICES=1 HF_TOKEN=\"${TEST_PINNED_TOKEN}\" "
                                     f"MODELREG_TEST_LITERAL_KEY='***' {pinned} -m ")


def test_a_models_own_program_that_is_missing_fails_the_start_and_says_which_field(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    plan = launch_plan(entry(executable=str(tmp_path / "llama-server-gone"), model_path=str(model)), Settings())
    with pytest.raises(BackendStartError) as caught:
        Supervisor(tmp_path / "logs").start(plan)
    assert "cannot run" in str(caught.value)
    [finding] = caught.value.diagnosis
    assert finding.rule == "missing_executable" and "backend_config.executable" in finding.suggestion


def test_set_takes_one_variable_as_text_and_refuses_a_list(pinned_build):
    folder, _ = pinned_build
    done = subprocess.run(modelreg(folder, "set", "tiny", "backend_config.env.CUDA_VISIBLE_DEVICES", "0"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Registry(folder).entry("tiny")["backend_config"]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    before = (folder / "model_registry.curated.json").read_bytes()
    done = subprocess.run(modelreg(folder, "set", "tiny", "backend_config.env", '["CUDA_VISIBLE_DEVICES=0"]'),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "backend_config.env" in done.stderr
    assert (folder / "model_registry.curated.json").read_bytes() == before


@pytest.mark.parametrize(("config", "field", "words"), [
    ({"backend_config": {"ready_timeout": 0}}, "backend_config.ready_timeout", "seconds above 0"),
    ({"backend_config": {"idle_ttl": -1}}, "backend_config.idle_ttl", "0 or more"),
    ({"backend_config": {"exclusive_group": 3}}, "backend_config.exclusive_group", "group's name"),
    ({"model_aliases": "gpt-4o-mini"}, "model_aliases", "list of names"),
])
def test_the_fields_the_llama_swap_import_sets_have_hints(config, field, words):
    [problem] = check_entry({"name": "m", **config}, 0).problems
    assert f"field {field!r}" in problem and words in problem
