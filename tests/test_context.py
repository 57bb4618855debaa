"""One place for the context: the context field and the backend's context flag may not disagree silently."""
from __future__ import annotations

import pytest

from modelreg.launch.planning.plan import CONTEXT_FIELD, context_conflict, context_places


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
