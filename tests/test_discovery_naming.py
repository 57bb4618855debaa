"""Stable names: `<slug>_(<QUANT>)`, the upstream registry's spelling, deterministic clash suffixes."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.discovery.naming import assign_names, candidate_name, display_name, slug, strip_quant_suffix


@pytest.mark.parametrize("raw, quant, name", [
    # the upstream registry's own names for these models
    ("Qwen2.5-VL-7B-Instruct-AWQ", "awq", "qwen2.5-vl-7b-instruct_(AWQ)"),
    ("Qwen3-VL-8B-Instruct-FP8", "fp8", "qwen3-vl-8b-instruct_(FP8)"),
    ("Huihui-Qwen3-VL-8B-Instruct-abliterated-fp8", "fp8", "huihui-qwen3-vl-8b-instruct-abliterated_(FP8)"),
    ("gpt-oss-20b", "mxfp4", "gpt-oss-20b_(MXFP4)"),
    ("llama3.1-local:latest", "q5_k_m", "llama3.1-local-latest_(Q5_K_M)"),
    ("aqualaguna/gemma-3-27b-it-abliterated-GGUF:q3_k_m", "q3_k_m", "aqualaguna-gemma-3-27b-it-abliterated_(Q3_K_M)"),
    ("Florence-2-large", "fp16", "florence-2-large_(FP16)"),
    # others
    ("Llama-3.1-8B-Instruct-Q4_K_M-00001-of-00003", "q4_k_m", "llama-3.1-8b-instruct_(Q4_K_M)"),
    ("Meta-Llama-3.1-8B-Instruct-GPTQ-INT4", "gptq", "meta-llama-3.1-8b-instruct_(GPTQ)"),
    ("GGUF", None, "gguf"),
])
def test_candidate_names(raw, quant, name):
    assert candidate_name(raw, quant) == name


def test_display_name_keeps_the_case():
    assert display_name("Qwen2.5-VL-7B-Instruct-AWQ", "awq") == "Qwen2.5-VL-7B-Instruct (AWQ)"
    assert strip_quant_suffix("x-Q8_0") == "x" and slug("A b/c:d") == "a-b-c-d"


def test_kept_names_win_and_clashes_get_a_path_hash():
    names = assign_names({"/a/m": "m", "/b/m": "m", "/c/n": "n", "/d/old": "z"}, {"/d/old": "kept"}, ["n"])
    assert names["/d/old"] == "kept"
    assert names["/a/m"] == "m" and names["/b/m"].startswith("m-") and len(names["/b/m"]) == len("m-") + 6
    assert names["/c/n"].startswith("n-")  # `n` belongs to another entry
    assert len(set(names.values())) == len(names)


@given(st.lists(st.sampled_from(["llama", "qwen", "mistral"]), min_size=1, max_size=12), st.randoms())
def test_names_do_not_depend_on_the_order_models_were_found(candidates, rnd: random.Random):
    found = {f"/models/{i}": c for i, c in enumerate(candidates)}
    shuffled = dict(rnd.sample(list(found.items()), len(found)))
    assert assign_names(found, {}, []) == assign_names(shuffled, {}, [])
    assert len(set(assign_names(found, {}, []).values())) == len(found)
