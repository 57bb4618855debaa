"""The exports: llama-swap's config.yaml for one host (field by field against a fixture in llama-swap's documented
format, commands equal to `modelreg launch-cmd`), and the LiteLLM config built from the hosts' model lists."""
from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelreg.errors import BadInput
from modelreg.hosts.litellm import NO_KEY, litellm_config, litellm_yaml
from modelreg.hosts.llama_swap import PORT_MACRO, llama_swap_config, llama_swap_yaml
from modelreg.hosts.status import HostModel, HostStatus
from modelreg.registry import Registry
from modelreg.settings import Host
from support.layers import SWAP_HOST, SWAP_PORTS, SWAP_PROFILE, registry_for_llama_swap

FIXTURE = Path(__file__).parent / "support" / "llama_swap_expected.yaml"
# The fields llama-swap v250 documents in config.example.yaml (per model, per group, at the top level).
DOCUMENTED_MODEL_FIELDS = {"macros", "cmd", "name", "description", "env", "proxy", "checkEndpoint", "ttl",
                           "unloadTimeout", "compat", "useModelName", "filters", "aliases", "metadata",
                           "concurrencyLimit", "sendLoadingState", "timeouts", "capabilities", "unlisted", "cmdStop"}
DOCUMENTED_GROUP_FIELDS = {"swap", "exclusive", "persistent", "members"}
DOCUMENTED_CAPABILITIES = {"in", "out", "tools", "reranker", "context"}


def modelreg(config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelreg", "--config-dir", str(config_dir), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def swap_export(tmp_path_factory):
    config_dir = registry_for_llama_swap(tmp_path_factory.mktemp("swap") / "configs")
    proc = modelreg(config_dir, "export", "llama-swap", "--host", SWAP_HOST)
    assert proc.returncode == 0, proc.stderr
    return config_dir, proc.stdout


def test_llama_swap_export_matches_the_documented_format_field_by_field(swap_export):
    _, text = swap_export
    exported, expected = yaml.safe_load(text), yaml.safe_load(FIXTURE.read_text())
    assert set(exported) == set(expected)
    assert exported["healthCheckTimeout"] == expected["healthCheckTimeout"]
    assert set(exported["models"]) == set(expected["models"])
    for name, fields in expected["models"].items():
        got = exported["models"][name]
        assert set(got) == set(fields), name
        for field, value in fields.items():
            assert got[field] == value, f"{name}.{field}"
        assert set(got) <= DOCUMENTED_MODEL_FIELDS and set(got["capabilities"]) <= DOCUMENTED_CAPABILITIES
    groups = exported["routing"]["router"]["settings"]["groups"]
    assert exported["routing"]["router"]["use"] == "group"
    assert groups == expected["routing"]["router"]["settings"]["groups"]
    assert all(set(g) <= DOCUMENTED_GROUP_FIELDS for g in groups.values())


def test_each_cmd_with_the_port_filled_in_is_the_argv_launch_cmd_prints(swap_export):
    """llama-swap fills `${PORT}` into the string, then splits it POSIX-style: that must be modelreg's argv."""
    config_dir, text = swap_export
    models = yaml.safe_load(text)["models"]
    for name, port in SWAP_PORTS.items():
        proc = modelreg(config_dir, "--profile", SWAP_PROFILE, "launch-cmd", name, "--json")
        assert proc.returncode == 0, proc.stderr
        argv = json.loads(proc.stdout)["argv"]
        assert models[name]["cmd"].count(PORT_MACRO) == 1
        assert shlex.split(models[name]["cmd"].replace(PORT_MACRO, str(port))) == argv, name


def test_models_llama_swap_cannot_start_are_named_in_the_header(swap_export):
    _, text = swap_export
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "profile a6000" in header[0] and "v250" in header[0]
    assert any(line.startswith("# skipped ollama-model: ollama models run in their daemon") for line in header)
    assert any("needs-config" in line and "backend_config.port" in line for line in header)


def test_llama_swap_export_is_deterministic_and_follows_a_curated_change(swap_export, tmp_path):
    config_dir, first = swap_export
    folder = registry_for_llama_swap(tmp_path / "configs")
    registry = Registry(folder, SWAP_PROFILE)
    again = llama_swap_yaml(llama_swap_config(registry), SWAP_HOST, SWAP_PROFILE)
    assert again == first
    registry.set_value("tiny-embed", "model_aliases", ["embedder"])
    changed = yaml.safe_load(llama_swap_yaml(llama_swap_config(registry), SWAP_HOST, SWAP_PROFILE))
    assert changed["models"]["tiny-embed"]["aliases"] == ["embedder"]


def test_an_argument_llama_swap_would_read_as_a_macro_is_refused(tmp_path):
    folder = registry_for_llama_swap(tmp_path / "configs")
    registry = Registry(folder, SWAP_PROFILE)
    registry.set_value("old-model", "backend_config.extra_args", ["--chat-template", "${env.HOME}/t.jinja"])
    export = llama_swap_config(registry)
    assert "old-model" not in export.config["models"]
    assert any(line.startswith("old-model:") and "macro" in line for line in export.skipped)


# ---- LiteLLM ------------------------------------------------------------------------------------------------------

HOSTS = {"a": Host(url="http://10.0.0.1:8100"), "b": Host(url="http://10.0.0.2:8100/", api_key_env="HOST_B_KEY")}


def status(name: str, *models: HostModel) -> HostStatus:
    return HostStatus(name, HOSTS[name].url, None, reachable=True, revision=f"{name}" * 12, models=list(models))


def test_litellm_config_has_a_deployment_per_model_host_and_alias():
    shared_a = HostModel("shared", aliases=("org/shared",), context_length=4096, tools=True)
    shared_b = HostModel("shared", aliases=("org/shared",), context_length=4096, tools=True)
    config = litellm_config([status("b", shared_b, HostModel("big", vision=True, context_length=32768)),
                             status("a", shared_a, HostModel("embed", embedding=True))], HOSTS)
    by_id = {d["model_info"]["id"]: d for d in config["model_list"]}
    assert sorted(by_id) == ["a/embed", "a/org/shared", "a/shared", "a/shared@a", "b/big", "b/org/shared",
                             "b/shared", "b/shared@b"]
    big = by_id["b/big"]
    assert big == {"model_name": "big",
                   "litellm_params": {"model": "openai/big", "api_base": "http://10.0.0.2:8100/v1",
                                      "api_key": "os.environ/HOST_B_KEY"},
                   "model_info": {"id": "b/big", "modelreg_host": "b", "mode": "chat", "supports_vision": True,
                                  "supports_function_calling": False, "max_input_tokens": 32768}}
    assert by_id["a/org/shared"]["litellm_params"] == {"model": "openai/shared", "api_base": "http://10.0.0.1:8100/v1",
                                                       "api_key": NO_KEY}
    assert by_id["a/embed"]["model_info"]["mode"] == "embedding"
    assert "max_input_tokens" not in by_id["a/embed"]["model_info"]
    router = config["router_settings"]
    assert router["fallbacks"] == [{"shared@a": ["shared@b"]}, {"shared@b": ["shared@a"]}]
    assert router["num_retries"] >= 1 and router["allowed_fails"] == 0


def test_litellm_yaml_is_sorted_and_the_same_for_the_same_hosts():
    models = [HostModel(f"m{i}", aliases=(f"alias-{i}",)) for i in range(6)]
    statuses = [status("a", *models[:4]), status("b", *models[2:])]
    first = litellm_yaml(statuses, HOSTS)
    shuffled = [HostStatus(s.name, s.url, None, True, revision=s.revision,
                           models=random.sample(s.models, len(s.models))) for s in reversed(statuses)]
    assert litellm_yaml(shuffled, HOSTS) == first
    names = [d["model_name"] for d in yaml.safe_load(first)["model_list"]]
    assert names == sorted(names)
    assert first.startswith("# LiteLLM proxy config") and "a http://10.0.0.1:8100 revision aaaaaaaaaaaa" in first


def test_an_alias_that_means_different_models_on_two_hosts_is_refused():
    with pytest.raises(BadInput, match=r"'chat' means m1 on a, m2 on b"):
        litellm_config([status("a", HostModel("m1", aliases=("chat",))),
                        status("b", HostModel("m2", aliases=("chat",)))], HOSTS)


def test_host_urls_are_normalised_and_bad_ones_refused():
    assert HOSTS["b"].url == "http://10.0.0.2:8100"
    assert Host(url="http://h:1/v1/").url == "http://h:1"
    with pytest.raises(ValueError, match="not the URL of a modelreg proxy"):
        Host(url="gpu-b:8100")
    with pytest.raises(ValueError, match="not an environment variable name"):
        Host(url="http://h:1", api_key_env="my key")


def test_a_host_serving_another_profile_than_the_setting_says_is_flagged():
    served = HostStatus("b", HOSTS["b"].url, "a6000", reachable=True, revision="r" * 64, served_profile="rtx4080",
                        admin="/admin/status")
    assert served.profile_mismatch and "serves profile rtx4080, the hosts setting says a6000" in served.row()["note"]
    unknown = HostStatus("b", HOSTS["b"].url, "a6000", reachable=True, admin="no admin_token_env")
    assert not unknown.profile_mismatch and "running backends from /v1/models" in unknown.row()["note"]


def test_served_context_is_the_flag_else_the_context_window_else_the_native_context():
    from modelreg.launch.planning.plan import served_context
    native = {"name": "m", "backend": "vllm", "metadata": {"architecture": {"context_length": 131072}}}
    assert served_context(native) == 131072
    assert served_context({**native, "generation_defaults": {"context_window": 8192}}) == 8192
    flagged = {**native, "generation_defaults": {"context_window": 8192},
               "backend_config": {"extra_args": ["--max_model_len=4096"]}}
    assert served_context(flagged) == 4096
    assert served_context({"name": "m", "backend": "no-such-backend"}) is None


ODD_NAMES = ["next\x85line", "line\u2028sep", "para\u2029sep", "tab\tname", "esc\x1bname", "bom\ufeffname"]


def test_model_ids_with_line_separators_survive_the_yaml_round_trip(tmp_path):
    statuses = [status("a", *(HostModel(name, aliases=(f"org/{name}",)) for name in ODD_NAMES))]
    config = litellm_config(statuses, HOSTS)
    text = litellm_yaml(statuses, HOSTS)
    assert yaml.safe_load(text) == config  # PyYAML's own dump turned U+0085 into a space
    names = {d["model_name"] for d in yaml.safe_load(text)["model_list"]}
    assert names == {*ODD_NAMES, *(f"org/{n}" for n in ODD_NAMES)}
    folder = registry_for_llama_swap(tmp_path / "configs")
    registry = Registry(folder, SWAP_PROFILE)
    registry.set_value("tiny-embed", "model_aliases", ODD_NAMES)
    export = llama_swap_config(registry)
    assert yaml.safe_load(llama_swap_yaml(export, SWAP_HOST, SWAP_PROFILE)) == export.config
    assert set(ODD_NAMES) <= set(export.config["models"]["tiny-embed"]["aliases"])
