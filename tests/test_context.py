"""One place for the context: the context field and the backend's context flag may not disagree silently."""
from __future__ import annotations

import pytest

from modelreg.launch.advice.fit import CONTEXT_FIELD, context_places
from modelreg.launch.planning.plan import context_conflict


@pytest.mark.parametrize("backend, args", [
    ("llama.cpp", ["--ctx-size", "512"]),
    ("llama.cpp", ["-c", "512"]),
    ("vllm", ["--max-model-len", "512"]),
    ("llama-cpp-python", ["--n_ctx", "512"]),
])
def test_each_backends_context_flag_is_a_place(backend, args):
    entry = {"name": "m", "backend": backend, "backend_config": {"extra_args": args}}
    assert list(context_places(entry).values()) == [512]
    assert context_conflict("m", entry) is None  # one place only
    entry["generation_defaults"] = {"context_window": 512}
    assert context_conflict("m", entry) is None  # they agree
    entry["generation_defaults"] = {"context_window": 1024}
    message = context_conflict("m", entry)
    assert message and f"{CONTEXT_FIELD} is 1024" in message and " is 512" in message


def test_the_field_alone_is_the_one_place():
    entry = {"name": "m", "backend": "vllm", "generation_defaults": {"context_window": 4096}}
    assert context_places(entry) == {CONTEXT_FIELD: 4096}
    assert context_conflict("m", entry) is None


def test_fit_reports_the_context_from_either_place():
    from modelreg.launch.advice.fit import estimate
    entry = {"name": "m", "backend": "llama.cpp", "generation_defaults": {"context_window": 1024},
             "metadata": {"architecture": {"context_length": 2048}}}
    assert estimate(entry, "16GiB", 0.9)["configured_context"] == 1024
    entry = {"name": "m", "backend": "llama.cpp", "backend_config": {"extra_args": ["-c", "512"]},
             "metadata": {"architecture": {"context_length": 2048}}}
    assert estimate(entry, "16GiB", 0.9)["configured_context"] == 512


def test_fits_apply_writes_where_the_context_lives():
    from modelreg.views.fit import context_change
    field_only = {"name": "m", "backend": "llama.cpp", "generation_defaults": {"context_window": 1024}}
    assert context_change(field_only, 2048) == {CONTEXT_FIELD: 2048}
    flag = {"name": "m", "backend": "llama.cpp", "backend_config": {"extra_args": ["-c", "512"]}}
    assert context_change(flag, 2048) == {"backend_config.extra_args": ["-c", "2048"]}
