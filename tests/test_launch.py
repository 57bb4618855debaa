"""Launch plans: the argv per backend built from a merged entry, extra_args checks, aliases, Ollama options."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelreg.errors import BadInput
from modelreg.launch.backends import canonical_backend
from modelreg.launch.planning.checks import launch_problems, require_launchable
from modelreg.launch.planning.plan import launch_argv, launch_plan
from modelreg.settings import Settings
from support.layers import UPSTREAM

AWQ = "qwen2.5-vl-7b-instruct_(AWQ)"


UPSTREAM_MODELS = "/home/stewa/ai-models"


def upstream_entries(models: Path | None = None) -> dict[str, dict]:
    """The upstream snapshot's entries; with `models`, their paths point there and the chat template files they
    name exist (upstream's paths are on a machine that is not this one)."""
    text = (UPSTREAM / "model_registry.json").read_text()
    if models is None:
        return {e["name"]: e for e in json.loads(text)}
    entries = {e["name"]: e for e in json.loads(text.replace(UPSTREAM_MODELS, str(models)))}
    for e in entries.values():
        if (e.get("chat_template") or {}).get("path"):
            template = Path(e["chat_template"]["path"])
            template.parent.mkdir(parents=True, exist_ok=True)
            template.write_text("{{ messages }}")
    return entries


def entry(backend="vllm", extra_args=None, **fields) -> dict:
    config = {"port": 24001, "model_path": "/models/m", "extra_args": extra_args or []}
    config.update(fields.pop("backend_config", {}))
    return {"name": "m_(Q4)", "backend": backend, "backend_config": config, **fields}


def test_vllm_argv_for_the_upstream_awq_entry(tmp_path):
    """The AWQ entry's custom chat template reaches vLLM as --chat-template."""
    argv = launch_argv(upstream_entries(tmp_path)[AWQ], Settings())
    model = tmp_path / "weights/Qwen/Qwen2.5-VL-7B-Instruct-AWQ"
    assert argv == ["vllm", "serve", str(model), "--host", "127.0.0.1", "--port", "24001", "--served-model-name", AWQ,
                    "--gpu-memory-utilization", "0.9", "--chat-template", str(model / "qwen_template.jinja"),
                    "--max-model-len", "4096", "--enforce-eager", "--trust-remote-code"]


def test_a_missing_chat_template_file_is_an_error_before_launch():
    with pytest.raises(BadInput, match=r"chat_template.path /home/stewa/.*/qwen_template.jinja does not exist"):
        launch_plan(upstream_entries()[AWQ], Settings())


@pytest.mark.parametrize("backend, flags", [("vllm", ["--chat-template"]),
                                            ("llama.cpp", ["--jinja", "--chat-template-file"])])
def test_a_chat_template_file_becomes_the_backends_flag(tmp_path, backend, flags):
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    argv = launch_argv(entry(backend, chat_template={"source": "external", "path": str(template)}), Settings())
    assert argv[argv.index(flags[-1]) - len(flags) + 1:argv.index(flags[-1]) + 2] == [*flags, str(template)]


def test_llama_cpp_python_has_no_chat_template_file_flag(tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    with pytest.raises(BadInput, match="not supported by backend llama-cpp-python"):
        launch_plan(entry("llama-cpp-python", chat_template={"path": str(template)}), Settings())


SWAP_SPACE = {"huihui-qwen3-vl-8b-instruct-abliterated_(FP8)", "qwen3-vl-8b-instruct-abliterated_(FP8)",
              "qwen3-vl-8b-instruct_(FP8)"}


def test_every_upstream_entry_has_a_plan_or_names_the_flag_its_vllm_lacks(tmp_path):
    """Three upstream entries pass --swap-space, which vLLM 0.32 no longer has: the real vLLM would exit at once."""
    entries = upstream_entries(tmp_path)
    for name in SWAP_SPACE:
        with pytest.raises(BadInput, match=r"`--swap-space` is not a flag of vllm serve 0\.32"):
            launch_plan(entries[name], Settings())
    plans = {name: launch_plan(e, Settings()) for name, e in entries.items() if name not in SWAP_SPACE}
    assert {p.backend for p in plans.values()} == {"vllm", "ollama"}
    for plan in plans.values():
        assert plan.argv == [] if plan.backend == "ollama" else plan.argv[:2] == ["vllm", "serve"]
    # the upstream writer stored the string "None" for a missing id; the entry name is served instead
    assert "--served-model-name" in plans["florence-2-large_(FP16)"].argv
    assert "None" not in plans["florence-2-large_(FP16)"].argv


def test_llama_server_argv_always_passes_port_and_the_context_window():
    plan = launch_plan(entry("llama.cpp", ["-ngl", "99"], generation_defaults={"context_window": 8192}),
                       Settings())
    assert plan.argv == ["llama-server", "-m", "/models/m", "--host", "127.0.0.1", "--port", "24001",
                         "--alias", "m_(Q4)", "-c", "8192", "-ngl", "99"]
    assert plan.ready_url == "http://127.0.0.1:24001/health"


def test_llama_cpp_python_argv_and_readiness_url():
    settings = Settings(executables={"llama-cpp-python": "/venv/bin/python"})
    plan = launch_plan(entry("llama-cpp-python", ["--n_ctx", "512"], served_model_id="tiny"), settings)
    assert plan.argv == ["/venv/bin/python", "-m", "llama_cpp.server", "--model", "/models/m",
                         "--host", "127.0.0.1", "--port", "24001", "--model_alias", "tiny",
                         "--interrupt_requests", "false", "--n_ctx", "512"]
    assert plan.ready_url == "http://127.0.0.1:24001/v1/models"  # it has no /health


def test_llama_cpp_python_keeps_streams_unless_told_otherwise():
    """Its server's default ends a running stream when another request arrives; the launcher turns that off unless
    the entry says otherwise (in any spelling argparse accepts)."""
    for args in (["--interrupt_requests", "true"], ["--interrupt_req=true"]):
        argv = launch_argv(entry("llama-cpp-python", args), Settings())
        assert argv.count("false") == 0 and argv[-len(args):] == args


def test_two_context_places_that_differ_refuse_the_launch_and_agreeing_ones_launch_once():
    with pytest.raises(BadInput, match="context_window is 8192 and backend_config.extra_args --max-model-len is 4096"):
        launch_plan(entry(extra_args=["--max-model-len", "4096"], generation_defaults={"context_window": 8192}),
                    Settings())
    plan = launch_plan(entry(extra_args=["--max-model-len", "4096"], generation_defaults={"context_window": 4096}),
                       Settings())
    assert plan.argv.count("--max-model-len") == 1 and "4096" in plan.argv
    plan = launch_plan(entry(generation_defaults={"context_window": 8192}), Settings())
    assert plan.argv[plan.argv.index("--max-model-len") + 1] == "8192"


@pytest.mark.parametrize("spelling, canonical", [
    ("gguf", "llama.cpp"), ("llama-server", "llama.cpp"), ("LLAMA.CPP", "llama.cpp"), ("vllm", "vllm"),
    ("llama_cpp_python", "llama-cpp-python"), ("ollama", "ollama"),
])
def test_backend_aliases(spelling, canonical):
    assert canonical_backend(spelling) == canonical


def test_gguf_alias_starts_llama_server():
    assert launch_argv(entry("gguf"), Settings())[0] == "llama-server"


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(BadInput, match=r"model 'm_\(Q4\)': unknown backend 'lmdeploy'; use one of: vllm, llama.cpp"):
        launch_plan(entry("lmdeploy"), Settings())


def test_executable_comes_from_the_active_profiles_settings():
    settings = Settings(profiles={"rtx4080": {"executables": {"vllm": "/opt/vllm/bin/vllm"}}})
    assert launch_argv(entry(), settings)[0] == "vllm"
    assert launch_argv(entry(), settings.for_profile("rtx4080"))[0] == "/opt/vllm/bin/vllm"
    assert launch_argv(entry("llama.cpp"), settings.for_profile("rtx4080"))[0] == "llama-server"


def test_host_from_entry_and_clients_connect_to_loopback_for_a_wildcard_bind():
    plan = launch_plan(entry(backend_config={"host": "0.0.0.0"}), Settings())
    assert plan.argv[plan.argv.index("--host") + 1] == "0.0.0.0"
    assert plan.base_url == "http://127.0.0.1:24001"


@pytest.mark.parametrize("args, message", [
    (["--max-model-len", "4096", "--max_model_len", "2048"], r"`--max-model-len` is given twice \(arguments 1 and 3\)"),
    (["--dtype=auto", "--dtype", "half"], "`--dtype` is given twice"),
    (["--port", "9000"], "`--port` is set by the launcher from backend_config.port"),
    (["--host=0.0.0.0"], "`--host` is set by the launcher from backend_config.host"),
    (["--hos", "0.0.0.0"], r"`--hos` \(read as `--host`\) is set by the launcher"),
    (["--por=9"], r"`--por` \(read as `--port`\) is set by the launcher"),
    (["--served_model_name", "x"], r"read as `--served-model-name`\) is set by the launcher from served_model_id"),
    (["--enforce-eager", "--max-model-len"], r"`--max-model-len` takes a value but has none \(at the end"),
    (["--max-model-len", "--enforce-eager"], r"takes a value but has none \(before `--enforce-eager`\)"),
    (["--max-model-length", "4096"], r"`--max-model-length` is not a flag of vllm .*did you mean `--max-model-len`"),
    (["--max", "4096"], r"`--max` could be any of"),
])
def test_vllm_extra_args_refused_with_model_and_flag(args, message):
    with pytest.raises(BadInput, match=r"model 'm_\(Q4\)'.*" + message):
        launch_plan(entry(extra_args=args), Settings())


@pytest.mark.parametrize("backend, args, message", [
    ("llama.cpp", ["-c", "4096", "--ctx-size", "8192"], "`--ctx-size` is given twice"),
    ("llama.cpp", ["--lora", "a.gguf", "--lora", "b.gguf"], "`--lora` is given twice"),  # it would keep only b
    ("llama.cpp", ["-m", "/other.gguf"], r"`-m` \(read as `--model`\) is set by the launcher"),
    ("llama.cpp", ["-ngl"], "`-ngl` takes a value"),
    ("llama.cpp", ["--ctx-sizee", "8"], "did you mean `--ctx-size`"),
    ("llama.cpp", ["--ctx-size=8"], "`--ctx-size=8` is not a flag"),  # llama.cpp has no `--flag=value`
    ("llama-cpp-python", ["--n_gpu_layers"], "`--n_gpu_layers` takes a value"),
    ("llama-cpp-python", ["--model_alias", "x"], "`--model_alias` is set by the launcher"),
    ("llama-cpp-python", ["--hos", "0.0.0.0"], r"`--hos` \(read as `--host`\) is set by the launcher"),
    ("llama-cpp-python", ["--mode", "/other.gguf"], "`--mode` could be any of --model, --model_alias"),
    ("llama-cpp-python", ["--n-ctx", "512"], "did you mean `--n_ctx`"),  # its flags keep the `_`
    ("llama-cpp-python", ["--config_file", "x.json"], "`--config_file` may not be in extra_args"),
])
def test_extra_args_checks_per_backend(backend, args, message):
    with pytest.raises(BadInput, match=message):
        launch_plan(entry(backend, args), Settings())


@pytest.mark.parametrize("backend, args", [
    ("vllm", ["--enforce-eager", "--trust-remote-code"]),              # switches at the end are fine
    ("vllm", ["--limit-mm-per-prompt", '{"image":1,"video":0}']),
    ("vllm", ["--max_model_len=4096"]),                                  # `_` spelling and `=value`
    ("vllm", ["-O3", "--compilation-config.mode", "3"]),
    ("vllm", ["--middleware", "a.M", "--middleware", "b.M"]),           # its one append flag
    ("llama.cpp", ["--lora", "a.gguf,b.gguf"]),                          # several values: comma-separated
    ("llama.cpp", ["--n_gpu_layers", "99"]),                             # llama.cpp reads `_` as `-` too
    ("llama-cpp-python", ["--n_gpu_layers", "-1", "--verbose", "false"]),  # a negative number is a value
])
def test_extra_args_accepted(backend, args):
    assert launch_argv(entry(backend, args), Settings())[-len(args):] == args


def test_extra_args_must_be_strings():
    with pytest.raises(BadInput, match="must be a list of strings"):
        launch_plan(entry(extra_args=["--max-model-len", 4096]), Settings())


@pytest.mark.parametrize("config, field", [({"port": None}, "backend_config.port"),
                                           ({"model_path": ""}, "backend_config.model_path")])
def test_missing_fields_say_how_to_set_them(config, field):
    with pytest.raises(BadInput, match=rf"model 'm_\(Q4\)'.*{field}.*modelreg set m_\(Q4\) {field}"):
        launch_plan(entry(backend_config=config), Settings())


def test_gguf_folder_resolves_to_its_one_model_file(tmp_path):
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    (tmp_path / "mmproj-model-f16.gguf").write_bytes(b"GGUF")
    plan = launch_plan(entry("llama.cpp", backend_config={"model_path": str(tmp_path)}), Settings())
    assert plan.argv[plan.argv.index("-m") + 1] == str(tmp_path / "model-Q4_K_M.gguf")
    (tmp_path / "model-Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(BadInput, match="folder with 2 model .gguf files"):
        launch_plan(entry("llama.cpp", backend_config={"model_path": str(tmp_path)}), Settings())


def test_ollama_plan_runs_in_the_daemon_with_options_from_the_entry():
    upstream = upstream_entries()["aqualaguna-gemma-3-27b-it-abliterated_(Q3_K_M)"]
    plan = launch_plan(upstream, Settings(ollama_host="http://127.0.0.1:11500"))
    assert plan.argv == [] and not plan.is_process
    assert plan.base_url == "http://127.0.0.1:11500"
    assert plan.ollama_model == "aqualaguna/gemma-3-27b-it-abliterated-GGUF:q3_k_m"
    # `--num-ctx 4096 --num-gpu 35` from extra_args, sampling defaults from generation_defaults
    assert plan.ollama_options == {"num_ctx": 4096, "num_gpu": 35, "temperature": 0.95, "top_p": 0.95, "top_k": 64}


def test_ollama_unknown_option_is_refused():
    with pytest.raises(BadInput, match="--num-cxt is not an Ollama option"):
        launch_plan(entry("ollama", ["--num-cxt", "4096"]), Settings())


def test_signature_changes_only_when_the_launch_changes():
    base = launch_plan(entry(extra_args=["--max-model-len", "4096"]), Settings())
    same = launch_plan(entry(extra_args=["--max-model-len", "4096"], display_name="renamed"), Settings())
    changed = launch_plan(entry(extra_args=["--max-model-len", "8192"]), Settings())
    assert base.signature == same.signature != changed.signature


@pytest.mark.parametrize("config", [{"port": 70000}, {"extra_args": ["--max-model-len"]}, {"api_key_env": "sk 1"}])
def test_set_and_the_launcher_refuse_the_same_configuration(config):
    """One check: what launch_plan refuses, `set`, `validate` and the editor report, on the same field."""
    bad = entry(backend_config=config)
    with pytest.raises(BadInput) as refused:
        launch_plan(bad, Settings())
    problems = [p for p in launch_problems(bad, Settings()) if p.error]
    assert [p.message for p in problems] == [str(refused.value)]
    assert problems[0].field == "backend_config." + next(iter(config)) and require_launchable(entry(), Settings()) == []
    ollama = {"name": "o", "backend": "ollama", "backend_config": {"extra_args": ["--bogus", "1"]}}
    assert "not an Ollama option" in launch_problems(ollama, Settings())[0].message
