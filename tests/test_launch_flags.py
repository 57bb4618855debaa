"""Flag catalogues read from the backends' help, and extra_args read the way each backend's own parser reads them."""
from __future__ import annotations

import sys
from importlib.util import find_spec

import pytest

from modelreg.launch import catalogue as catalogues
from modelreg.launch.backends import LLAMA_CPP, LLAMA_CPP_PYTHON, SPECS, VLLM
from modelreg.launch.catalogue import (
    MANY,
    NONE,
    ONE,
    OPTIONAL,
    TWO,
    Flag,
    catalogue_for,
    committed_catalogue,
    parse_argparse_help,
    parse_llama_help,
)
from modelreg.launch.flags import flag_value, parse_extra_args
from support.real_backends import LLAMA_SERVER, require
from support.real_backends import VLLM as VLLM_PROGRAM

needs_llama_cpp_python = pytest.mark.skipif(find_spec("llama_cpp") is None,
                                            reason="llama-cpp-python is not installed (make setup installs it)")

# Lines as `vllm serve --help=all` (vLLM 0.32, Python 3.11 argparse) prints them, help text and group text included.
VLLM_HELP = """\
usage: vllm serve [model_tag] [options]

options:
  --api-server-count API_SERVER_COUNT, -asc API_SERVER_COUNT
                        How many API server processes to run. Defaults to
                        data_parallel_size if not specified. (default: None)
  --enable-log-requests, --no-enable-log-requests
                        Enable logging request information, dependent on log
                        - INFO: Request ID, parameters and LoRA request.
  -h, --help            show this help message and exit
  --api-key API_KEY [API_KEY ...]
  --config-format ['auto', 'hf', 'mistral']
  --hf-token [HF_TOKEN]
  --host HOST           Host name. (default: None)
  --kda-decode-backend {auto,native,flashinfer,triton}

ModelConfig:
  Configuration for the model.

  --max-model-len MAX_MODEL_LEN
"""
# Lines as `llama-server --help` prints them (common/arg.cpp: 40 columns for the flags, then the help).
LLAMA_HELP = """\
----- common params -----

-h,    --help, --usage                  print usage and exit
--version                               show version and build info
-t,    --threads N                      number of CPU threads to use during generation (default: -1)
                                        (env: LLAMA_ARG_THREADS)
-c,    --ctx-size N                     size of the prompt context (default: 4096, 0 = loaded from model)
--mmap, --no-mmap                       whether to memory-map model (default: enabled)
-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', default: 'auto')
--lora-scaled FNAME SCALE               path to LoRA adapter with user defined scaling (can be repeated to use
--control-vector-layer-range START END
                                        layer range to apply the control vector(s) to, start and end inclusive
"""


def test_argparse_help_gives_every_spelling_and_how_many_values():
    flags = {f.name: f for f in parse_argparse_help(VLLM_HELP)}
    assert flags == {
        "--api-server-count": Flag("--api-server-count", ("--api-server-count", "-asc"), ONE),
        "--enable-log-requests": Flag("--enable-log-requests", ("--enable-log-requests", "--no-enable-log-requests"),
                                      NONE),
        "--api-key": Flag("--api-key", ("--api-key",), MANY),
        "--config-format": Flag("--config-format", ("--config-format",), ONE),  # a list-shaped metavar is one value
        "--hf-token": Flag("--hf-token", ("--hf-token",), OPTIONAL),
        "--host": Flag("--host", ("--host",), ONE),
        "--kda-decode-backend": Flag("--kda-decode-backend", ("--kda-decode-backend",), ONE),
        "--max-model-len": Flag("--max-model-len", ("--max-model-len",), ONE),
    }


def test_llama_help_gives_every_spelling_and_how_many_values():
    flags = {f.name: f for f in parse_llama_help(LLAMA_HELP)}
    assert flags == {
        "--version": Flag("--version", ("--version",), NONE),
        "--threads": Flag("--threads", ("-t", "--threads"), ONE),
        "--ctx-size": Flag("--ctx-size", ("-c", "--ctx-size"), ONE),
        "--mmap": Flag("--mmap", ("--mmap", "--no-mmap"), NONE),
        "--flash-attn": Flag("--flash-attn", ("-fa", "--flash-attn"), ONE),
        "--lora-scaled": Flag("--lora-scaled", ("--lora-scaled",), TWO),
        "--control-vector-layer-range": Flag("--control-vector-layer-range", ("--control-vector-layer-range",), TWO),
    }


@pytest.mark.parametrize("token, flag, how, attached", [
    ("--max-model-len", "--max-model-len", "exact", None),
    ("--max_model_len", "--max-model-len", "underscore", None),
    ("--max-model", "--max-model-len", "prefix", None),            # argparse takes an unambiguous prefix
    ("--max_model=256", "--max-model-len", "prefix", "256"),
    ("--hos", "--host", "prefix", None),
    ("--no-enforce", "--enforce-eager", "prefix", None),
    ("-asc", "--api-server-count", "exact", None),
    ("-O3", "--optimization-level", "attached", "3"),              # vLLM rewrites -O3 itself
    ("--compilation-config.mode", "--compilation-config", "dotted", None),
])
def test_vllm_resolves_spellings_as_its_parser_does(token, flag, how, attached):
    found = committed_catalogue(VLLM).resolve(token)
    assert (found.flag.name, found.how, found.attached) == (flag, how, attached)


def test_unknown_and_ambiguous_flags_say_what_they_could_be():
    vllm = committed_catalogue(VLLM)
    unknown = vllm.resolve("--max-model-length")
    assert (unknown.flag, unknown.how, unknown.candidates) == (None, "unknown", ("--max-model-len",))
    ambiguous = vllm.resolve("--max")
    assert ambiguous.how == "ambiguous" and "--max-model-len" in ambiguous.candidates
    llama = committed_catalogue(LLAMA_CPP)
    assert llama.resolve("--ctx").how == "unknown"                 # llama.cpp takes no prefixes
    assert llama.resolve("--n_gpu_layers").flag.name == "--gpu-layers"  # `-ngl, --gpu-layers, --n-gpu-layers`
    assert llama.resolve("--ctx-size=8").flag is None              # nor `--flag=value`
    python = committed_catalogue(LLAMA_CPP_PYTHON)
    assert python.resolve("--n-ctx").flag is None and python.resolve("--n-ctx").candidates == ("--n_ctx",)


@pytest.mark.parametrize("args, messages", [
    (["4096"], ["`4096` is a value with no flag before it; put the flag in front of it or remove it"]),
    (["--enforce-eager=true"], ["`--enforce-eager` takes no value, but `--enforce-eager=true` gives one"]),
    (["--max-model-length", "4096", "--enforce-eager"],
     ["`--max-model-length` is not a flag of vllm serve 0.32.0+cpu (did you mean `--max-model-len`?)"]),
    (["--max-model-len", "-1"], []),                                 # a negative number is a value
    (["--api-key", "a", "b", "--enforce-eager"], []),               # nargs + takes every value up to the next flag
])
def test_extra_args_problems(args, messages):
    parsed = parse_extra_args(args, committed_catalogue(VLLM), SPECS[VLLM].owned)
    assert [p.message for p in parsed.errors] == messages


def test_two_value_flags_need_both():
    parsed = parse_extra_args(["--control-vector-layer-range", "1"], committed_catalogue(LLAMA_CPP))
    assert [p.message for p in parsed.errors] == [
        "`--control-vector-layer-range` takes two values but has only one (at the end of extra_args); add it after "
        "the flag or remove the flag"]


def test_notes_say_which_flag_a_spelling_is_read_as():
    parsed = parse_extra_args(["--max_model_len", "8", "--enforce"], committed_catalogue(VLLM))
    assert not parsed.errors
    assert [p.message for p in parsed.notes] == ["`--max_model_len` is read as `--max-model-len`",
                                                 "`--enforce` is read as `--enforce-eager` (a prefix of it)"]


def test_flag_value_finds_a_flag_in_any_spelling():
    assert flag_value(["--enforce-eager", "--max_model=512"], "--max-model-len", VLLM) == "512"
    assert flag_value(["-c", "384"], "--ctx-size", LLAMA_CPP) == "384"


def test_a_missing_program_is_checked_against_the_committed_catalogue():
    found = catalogue_for(VLLM, "/no/such/vllm")
    assert found == committed_catalogue(VLLM)
    assert "/no/such/vllm is not installed here" in found.notes[0]


@needs_llama_cpp_python
def test_the_installed_program_is_read_once_and_cached(tmp_path, monkeypatch):
    """llama-cpp-python is installed in the test venv: its catalogue is read from it, then from the per-user cache."""
    monkeypatch.setenv("MODELREG_CACHE", str(tmp_path))
    monkeypatch.setattr(catalogues, "_memo", {})
    read = catalogue_for(LLAMA_CPP_PYTHON, sys.executable)
    assert read.source.endswith("-m llama_cpp.server --help") and not read.notes
    assert list((tmp_path / "flags").glob("llama-cpp-python-*.json"))
    monkeypatch.setattr(catalogues, "_memo", {})
    monkeypatch.setattr(catalogues, "read_catalogue", lambda *a: pytest.fail("read again instead of cached"))
    assert catalogue_for(LLAMA_CPP_PYTHON, sys.executable) == read


@pytest.mark.parametrize("backend", [
    pytest.param(VLLM, marks=pytest.mark.vllm), pytest.param(LLAMA_CPP, marks=pytest.mark.llama_server),
    pytest.param(LLAMA_CPP_PYTHON, marks=needs_llama_cpp_python)])
def test_committed_catalogues_are_what_the_installed_programs_say(backend):
    """Regenerate with `.ci/flag_catalogues.py` when this fails after a backend upgrade."""
    executable = {VLLM: lambda: require(VLLM_PROGRAM), LLAMA_CPP: lambda: require(LLAMA_SERVER),
                  LLAMA_CPP_PYTHON: lambda: sys.executable}[backend]()
    installed, committed = catalogue_for(backend, executable), committed_catalogue(backend)
    assert (installed.version, installed.flags) == (committed.version, committed.flags)


def test_this_interpreters_llama_cpp_python_version_is_read_without_starting_it(monkeypatch):
    """Planning a launch asks the version of the program behind each backend; for llama-cpp-python on this very
    interpreter (the default setting) that must not start a Python (tens of ms in every `modelreg list`)."""
    import importlib.metadata

    expected = importlib.metadata.version("llama_cpp_python")
    monkeypatch.setattr(catalogues, "_start", lambda argv: pytest.fail(f"started {argv}"))
    assert catalogues.program_version(LLAMA_CPP_PYTHON, sys.executable) == expected
