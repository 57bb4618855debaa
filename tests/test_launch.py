"""Launch plans: the argv per backend built from a merged entry, extra_args checks, aliases, Ollama options."""
from __future__ import annotations

import json

import pytest

from modelreg.errors import BadInput
from modelreg.launch.backends import canonical_backend
from modelreg.launch.flags import check_extra_args
from modelreg.launch.plan import launch_argv, launch_plan
from modelreg.settings import Settings
from support.layers import UPSTREAM

AWQ = "qwen2.5-vl-7b-instruct_(AWQ)"


def upstream_entries() -> dict[str, dict]:
    return {e["name"]: e for e in json.loads((UPSTREAM / "model_registry.json").read_text())}


def entry(backend="vllm", extra_args=None, **fields) -> dict:
    config = {"port": 24001, "model_path": "/models/m", "extra_args": extra_args or []}
    config.update(fields.pop("backend_config", {}))
    return {"name": "m_(Q4)", "backend": backend, "backend_config": config, **fields}


def test_vllm_argv_for_the_upstream_awq_entry():
    argv = launch_argv(upstream_entries()[AWQ], Settings())
    assert argv == ["vllm", "serve", "/home/stewa/ai-models/weights/Qwen/Qwen2.5-VL-7B-Instruct-AWQ",
                    "--host", "127.0.0.1", "--port", "24001", "--served-model-name", AWQ,
                    "--gpu-memory-utilization", "0.9",
                    "--max-model-len", "4096", "--enforce-eager", "--trust-remote-code"]


def test_every_upstream_entry_has_a_plan():
    plans = {name: launch_plan(e, Settings()) for name, e in upstream_entries().items()}
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
                         "--host", "127.0.0.1", "--port", "24001", "--model_alias", "tiny", "--n_ctx", "512"]
    assert plan.ready_url == "http://127.0.0.1:24001/v1/models"  # it has no /health


def test_extra_args_context_wins_over_the_generation_default():
    plan = launch_plan(entry(extra_args=["--max-model-len", "4096"], generation_defaults={"context_window": 8192}),
                       Settings())
    assert plan.argv.count("--max-model-len") == 1 and "4096" in plan.argv and "8192" not in plan.argv
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
    (["--max-model-len", "4096", "--max_model_len", "2048"], r"gives --max-model-len twice \(arguments 1 and 3\)"),
    (["--dtype=auto", "--dtype", "half"], "gives --dtype twice"),
    (["--port", "9000"], "extra_args sets --port, which the launcher sets itself"),
    (["--host=0.0.0.0"], "extra_args sets --host"),
    (["--served-model-name", "x"], "extra_args sets --served-model-name"),
    (["--enforce-eager", "--max-model-len"], r"--max-model-len takes a value but has none \(at the end"),
    (["--max-model-len", "--enforce-eager"], r"takes a value but has none \(before --enforce-eager\)"),
])
def test_vllm_extra_args_refused_with_model_and_flag(args, message):
    with pytest.raises(BadInput, match=r"model 'm_\(Q4\)'.*" + message):
        launch_plan(entry(extra_args=args), Settings())


@pytest.mark.parametrize("backend, args, message", [
    ("llama.cpp", ["-c", "4096", "--ctx-size", "8192"], "gives --ctx-size twice"),
    ("llama.cpp", ["-m", "/other.gguf"], "extra_args sets -m"),
    ("llama.cpp", ["-ngl"], "-ngl takes a value"),
    ("llama-cpp-python", ["--n_gpu_layers"], "--n_gpu_layers takes a value"),
    ("llama-cpp-python", ["--model_alias", "x"], "extra_args sets --model_alias"),
])
def test_extra_args_checks_per_backend(backend, args, message):
    with pytest.raises(BadInput, match=message):
        launch_plan(entry(backend, args), Settings())


@pytest.mark.parametrize("backend, args", [
    ("vllm", ["--enforce-eager", "--trust-remote-code"]),              # switches at the end are fine
    ("vllm", ["--limit-mm-per-prompt", '{"image":1,"video":0}']),
    ("llama.cpp", ["--lora", "a.gguf", "--lora", "b.gguf"]),            # repeatable flag
    ("llama-cpp-python", ["--n_gpu_layers", "-1", "--verbose", "false"]),  # a negative number is a value
])
def test_extra_args_accepted(backend, args):
    assert launch_argv(entry(backend, args), Settings())[-len(args):] == args


def test_extra_args_must_be_strings():
    with pytest.raises(BadInput, match="must be a list of strings"):
        check_extra_args("m", "vllm", ["--max-model-len", 4096])


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
