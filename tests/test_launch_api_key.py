"""backend_config.api_key_env in the launch plan: the backend's own variable, the key read from the environment only
for the started process (never in argv); the field's validation."""
from __future__ import annotations

import pytest

from modelreg.entry_model import BackendConfig
from modelreg.errors import BadInput
from modelreg.launch.planning.plan import launch_plan
from modelreg.settings import Host, Settings


def entry(backend: str, **config) -> dict:
    return {"name": "m", "backend": backend,
            "backend_config": {"port": 24001, "model_path": "/models/m.gguf", "extra_args": [], **config}}


@pytest.mark.parametrize("backend, variable", [("llama-cpp-python", "API_KEY"), ("llama.cpp", "LLAMA_API_KEY"),
                                               ("vllm", "VLLM_API_KEY")])
def test_the_key_goes_in_the_backends_own_variable_never_in_argv(backend, variable, monkeypatch):
    """Any local user reads a process's argv (/proc/<pid>/cmdline, ps), and only its own user its environment: the
    key is never an argument, not even a placeholder the start replaces."""
    monkeypatch.setenv("MY_BACKEND_KEY", "sk-secret")
    plan = launch_plan(entry(backend, api_key_env="MY_BACKEND_KEY"), Settings())
    assert not [a for a in plan.argv if "api" in a.lower() or "KEY" in a] and "sk-secret" not in plan.signature
    assert plan.process_env() == {variable: "sk-secret"}
    assert plan.auth_headers() == {"Authorization": "Bearer sk-secret"}


def test_no_key_without_the_field():
    plan = launch_plan(entry("vllm"), Settings())
    assert plan.api_key() is None and plan.auth_headers() == {} and plan.process_env() == {}


def test_an_unset_variable_is_named_when_the_key_is_needed(monkeypatch):
    monkeypatch.delenv("MY_BACKEND_KEY", raising=False)
    plan = launch_plan(entry("llama-cpp-python", api_key_env="MY_BACKEND_KEY"), Settings())  # planning works
    with pytest.raises(BadInput, match=r"\$MY_BACKEND_KEY, which is not set"):
        plan.process_env()


def test_a_key_instead_of_a_name_and_a_key_in_extra_args_too_are_refused():
    with pytest.raises(BadInput, match="not an environment variable name"):
        launch_plan(entry("vllm", api_key_env="sk-12 34"), Settings())
    with pytest.raises(BadInput, match="`--api-key` may not be in extra_args: .*use backend_config.api_key_env"):
        launch_plan(entry("vllm", api_key_env="K", extra_args=["--api-key", "sk-1"]), Settings())
    for where in (lambda: BackendConfig(api_key_env="sk-live-1234"),  # the layers, settings' hosts, the launcher
                  lambda: Host(url="http://gpu-b:8100", api_key_env="sk-live-1234"),
                  lambda: launch_plan(entry("vllm", api_key_env="sk-live-1234"), Settings())):
        with pytest.raises((ValueError, BadInput), match="'sk-live-1234' is not an environment variable name"):
            where()
    with pytest.raises(ValueError):
        BackendConfig(max_concurrency=0)
    assert BackendConfig(api_key_env="OPENAI_KEY", max_concurrency=4).max_concurrency == 4
