"""Diagnosis rules, each fed real log lines quoted from public vLLM / llama.cpp issue threads (source above each)."""
from __future__ import annotations

import json

import pytest

from modelreg.launch.advice.diagnose import diagnose, reported_context_size


def vllm_entry(extra_args=None, **fields) -> dict:
    return {"name": "qwen2.5-vl-7b-instruct_(AWQ)", "backend": "vllm",
            "backend_config": {"port": 24001, "model_path": "/m", "extra_args": extra_args or []}, **fields}


def llama_entry(backend="llama.cpp", extra_args=None) -> dict:
    return {"name": "gemma_(Q4_K_M)", "backend": backend,
            "backend_config": {"port": 24002, "model_path": "/m.gguf", "extra_args": extra_args or []}}


def rules(findings) -> list[str]:
    return [f.rule for f in findings]


def suggested_args(finding) -> list[str]:
    """The extra_args in the `modelreg set ... backend_config.extra_args '[...]'` command a suggestion gives."""
    return json.loads(finding.suggestion.rsplit(" '", 1)[1].rstrip("'"))


# https://github.com/QwenLM/Qwen3/issues/295
KV_OLD = ("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be "
          "stored in KV cache (7344). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
          "initializing the engine.")
# https://github.com/vllm-project/vllm/issues/34076
KV_V1_ESTIMATE = ("(EngineCore_DP0 pid=1094) ValueError: To serve at least one request with the models's max seq len "
                  "(262144), (24.0 GiB KV cache is needed, which is larger than the available KV cache memory "
                  "(3.18 GiB). Based on the available memory, the estimated maximum model length is 34736. Try "
                  "increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")
# https://github.com/vllm-project/vllm/issues/16118
KV_V1 = ("ERROR 04-05 01:12:55 [core.py:390] ValueError: To serve at least one request with the models's max seq "
         "len (1048576), (24.00 GiB KV cache is needed, which is larger than the available KV cache memory "
         "(9.97 GiB). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
         "engine.")
# https://github.com/gpustack/gpustack/issues/1269 (llama.cpp)
KV_LLAMA = """3.02.199.202 E ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4480.00 MiB on device 3: \
cudaMalloc failed: out of memory
3.02.199.205 E llama_kv_cache_init: failed to allocate buffer for kv cache
3.02.199.208 E llama_init_from_model: llama_kv_cache_init() failed for self-attention cache"""


def test_kv_cache_too_small_suggests_the_kv_capacity_as_max_model_len():
    [finding] = diagnose(KV_OLD, vllm_entry(["--enforce-eager"]))
    assert finding.rule == "kv_cache_too_small"
    assert "32768" in finding.summary and "7344" in finding.summary
    assert suggested_args(finding) == ["--enforce-eager", "--max-model-len", "7168"]
    assert finding.evidence == KV_OLD


def test_kv_cache_v1_message_uses_vllms_own_estimate_and_replaces_the_current_value():
    [finding] = diagnose(KV_V1_ESTIMATE, vllm_entry(["--max-model-len", "262144"]))
    assert finding.rule == "kv_cache_too_small"
    assert "24.0 GiB" in finding.summary and "3.18 GiB" in finding.summary
    assert suggested_args(finding) == ["--max-model-len", "34560"]
    assert "backend's own estimate" in finding.suggestion


def test_kv_cache_without_an_estimate_falls_back_to_the_fit_estimate():
    [finding] = diagnose(KV_V1, vllm_entry(), fit_max_context=40000)
    assert suggested_args(finding) == ["--max-model-len", "39936"]
    assert "fit estimate" in finding.suggestion
    [bare] = diagnose(KV_V1, vllm_entry())
    assert "modelreg fit" in bare.suggestion


def test_a_smaller_context_is_suggested_where_the_context_lives():
    """The field holds the context: the advice sets the field (a --max-model-len beside it would be a second place)."""
    [finding] = diagnose(KV_OLD, vllm_entry(["--enforce-eager"], generation_defaults={"context_window": 32768}))
    assert finding.suggestion.endswith("modelreg set 'qwen2.5-vl-7b-instruct_(AWQ)' "
                                       "generation_defaults.context_window 7168"), finding.suggestion
    assert finding.suggestion.startswith("set context window 7168")


def test_llama_cpp_kv_cache_failure_suggests_ctx_size():
    findings = diagnose(KV_LLAMA, llama_entry())
    assert rules(findings) == ["kv_cache_too_small", "cuda_oom"]
    assert findings[0].evidence == "3.02.199.205 E llama_kv_cache_init: failed to allocate buffer for kv cache"
    assert "--ctx-size" in findings[0].suggestion
    assert "-ngl" in findings[1].suggestion


# https://github.com/vllm-project/vllm/issues/15598
OOM_V1 = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB. GPU 6 has a total capacity of "
          "44.53 GiB of which 448.00 KiB is free.")
# https://github.com/vllm-project/vllm/issues/2140
OOM_OLD = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has a total capacty of "
           "23.69 GiB of which 3.09 GiB is free. Including non-PyTorch memory, this process has 20.57 GiB memory in "
           "use.")


@pytest.mark.parametrize("line", [OOM_V1, OOM_OLD])
def test_cuda_out_of_memory(line):
    [finding] = diagnose("INFO loading weights\n" + line + "\n", vllm_entry(["--gpu-memory-utilization", "0.95"]))
    assert finding.rule == "cuda_oom"
    assert finding.evidence == line
    assert "--gpu-memory-utilization is 0.95" in finding.suggestion and "--max-model-len" in finding.suggestion


# https://github.com/vllm-project/vllm/issues/10517 (the engine config line; no --max-model-len was given)
ENGINE_128K = ("Initializing an LLM engine (v0.5.4) with config: model='/mnt/models/models--meta-llama--llama-3-1-70b-"
               "instruct', speculative_config=None, tokenizer='/mnt/models/models--meta-llama--llama-3-1-70b-instruct',"
               " skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, rope_scaling=None, rope_theta=None, "
               "tokenizer_revision=None, trust_remote_code=False, dtype=torch.float16, max_seq_len=131072, "
               "download_dir=None, load_format=LoadFormat.AUTO, tensor_parallel_size=2")
# https://github.com/vllm-project/vllm-ascend/pull/7098
ENGINE_TIMEOUT = "TimeoutError: Timed out waiting for engines to send initial message on input socket."


def test_start_timeout_with_the_128k_default_context():
    [finding] = diagnose(ENGINE_128K + "\n", vllm_entry(), timed_out=True, fit_max_context=12000)
    assert finding.rule == "long_default_context"
    assert "131072" in finding.summary
    assert "max_seq_len=131072" in finding.evidence and finding.evidence.startswith("...")
    assert suggested_args(finding) == ["--max-model-len", "11776"]


def test_engine_timeout_line_counts_as_a_timeout():
    findings = diagnose(ENGINE_128K + "\n" + ENGINE_TIMEOUT + "\n", vllm_entry())
    assert rules(findings) == ["long_default_context"]


def test_no_long_context_finding_when_the_context_is_set_or_short():
    assert diagnose(ENGINE_128K, vllm_entry(["--max-model-len", "8192"]), timed_out=True) == []
    assert diagnose(ENGINE_128K.replace("131072", "4096"), vllm_entry(), timed_out=True) == []
    assert diagnose(ENGINE_128K, vllm_entry()) == []  # no timeout: the long context alone is no failure


def test_native_context_from_the_entry_when_the_log_says_nothing():
    entry = vllm_entry(metadata={"architecture": {"context_length": 131072}})
    [finding] = diagnose("INFO starting\n", entry, timed_out=True)
    assert finding.rule == "long_default_context" and "131072" in finding.summary


# https://github.com/vllm-project/vllm/issues/5244
REMOTE_CODE = ("ValueError: Loading /models/huggingface/Phi-3-small-128k-instruct/ requires you to execute the "
               "configuration file in that repo on your local machine. Make sure you have read the code there to "
               "avoid malicious use, then set the option `trust_remote_code=True` to remove this error.")
# https://github.com/runpod-workers/worker-vllm/issues/43
REMOTE_CODE_PROMPT = ("2024-02-08T08:40:56.161725757Z You can avoid this prompt in future by passing the argument "
                      "`trust_remote_code=True`.")


@pytest.mark.parametrize("line", [REMOTE_CODE, REMOTE_CODE_PROMPT])
def test_missing_trust_remote_code(line):
    [finding] = diagnose(line, vllm_entry(["--max-model-len", "4096"]))
    assert finding.rule == "trust_remote_code"
    assert suggested_args(finding) == ["--max-model-len", "4096", "--trust-remote-code"]
    assert finding.evidence == line


# https://github.com/vllm-project/vllm/issues/22231
VLLM_ARCH = ("ValueError: Model architectures ['Qwen3ForCausalLM'] are not supported for now. Supported "
             "architectures: ['AquilaModel', 'AquilaForCausalLM', 'ArcticForCausalLM']")
# https://github.com/abetlen/llama-cpp-python/issues/1994
LLAMA_ARCH = ("llama_model_load: error loading model: error loading model architecture: unknown model architecture: "
              "'llama4'")


def test_unknown_architecture_vllm():
    [finding] = diagnose(VLLM_ARCH, vllm_entry())
    assert finding.rule == "unknown_architecture"
    assert "Qwen3ForCausalLM" in finding.summary and "upgrade vllm" in finding.suggestion


def test_unknown_architecture_llama_cpp():
    [finding] = diagnose(LLAMA_ARCH + "\nllama_model_load_from_file_impl: failed to load model\n",
                         llama_entry("llama-cpp-python"))
    assert finding.rule == "unknown_architecture" and "llama4" in finding.summary
    assert finding.evidence == LLAMA_ARCH


# https://github.com/chatdoc-com/OCRFlux/issues/73
NO_VLLM = "FileNotFoundError: [Errno 2] No such file or directory: 'vllm'"
# https://github.com/Center-for-AI-Innovation/LLMFlux/issues/59 (a cache folder, not the executable)
NO_CACHE_DIR = ("(APIServer pid=387076) ERROR 02-25 14:06:41 [registry.py:711] FileNotFoundError: [Errno 2] No such "
                "file or directory: '/u/minum/.cache/vllm'")
# https://github.com/joryirving/home-ops/pull/9561
NO_LLAMA_SERVER = 'exec: "llama-server": executable file not found in $PATH'


def test_missing_executable():
    [finding] = diagnose(NO_VLLM, vllm_entry(), argv=["vllm", "serve", "/m"])
    assert finding.rule == "missing_executable"
    assert '"executables": {"vllm": "/path/to/vllm"}' in finding.suggestion
    [finding] = diagnose(NO_LLAMA_SERVER, llama_entry(), argv=["llama-server", "-m", "/m.gguf"])
    assert finding.rule == "missing_executable" and "'llama-server'" in finding.summary


def test_a_missing_data_path_is_not_a_missing_executable():
    assert diagnose(NO_CACHE_DIR, vllm_entry(), argv=["vllm", "serve", "/m"]) == []
    assert diagnose(NO_CACHE_DIR, vllm_entry()) == []


# https://github.com/vllm-project/vllm/issues/7514
VLLM_PORT = "error while attempting to bind on address ('0.0.0.0', 8000): address already in use"
# https://github.com/PiDanShouRouZhouXD/Sakura_Launcher_GUI/issues/71 (llama-server)
LLAMA_PORT = "main: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080"


@pytest.mark.parametrize("line, entry", [(VLLM_PORT, vllm_entry()), (LLAMA_PORT, llama_entry())])
def test_port_in_use(line, entry):
    [finding] = diagnose(line, entry)
    assert finding.rule == "port_in_use"
    assert str(entry["backend_config"]["port"]) in finding.summary
    assert "backend_config.port" in finding.suggestion and finding.evidence == line


# https://github.com/vllm-project/vllm/issues/17972 (a healthy server)
HEALTHY = """DEBUG 05-11 18:07:16 [async_llm.py:467] Called check_health.
INFO:     10.101.56.92:35104 - "GET /health HTTP/1.1" 200 OK"""


def test_a_healthy_log_has_no_findings():
    assert diagnose(HEALTHY, vllm_entry()) == []


def test_reported_context_size():
    assert reported_context_size("llama_context: n_ctx                 = 512\n"
                                 "llama_context: n_ctx_seq             = 512") == 512
    assert reported_context_size(ENGINE_128K) == 131072
    assert reported_context_size(HEALTHY) is None


# The texts the real vLLM 0.32 (CPU) and llama-server print, measured on these machines (tests/test_real_*.py make
# the real servers print them; these keep the rules honest where the suite does not start a server).
@pytest.mark.parametrize("log, entry, rule, advice", [
    ("vllm: error: unrecognized arguments: --max-model-length 4096",
     vllm_entry(["--max-model-length", "4096"]), "unknown_flag", "did you mean --max-model-len?"),
    ("error: invalid argument: --ctx-sizee", llama_entry(extra_args=["--ctx-sizee", "8"]), "unknown_flag",
     "did you mean --ctx-size?"),
    ('error while handling argument "-c": expected value for argument', llama_entry(extra_args=["-c"]),
     "missing_value", "add the value after -c"),
    ("ValueError: User-specified max_model_len (99999) is greater than the derived max_model_len "
     "(max_position_embeddings=2048.0 or model_max_length=None in model's config.json).",
     vllm_entry(["--max-model-len", "99999"]), "context_above_model", "--max-model-len 2048"),
    ("huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name' or 'namespace/repo_name': "
     "'/m'. Use `repo_type` argument if needed.", vllm_entry(), "model_not_found", "backend_config.model_path"),
    ("gguf_init_from_file_impl: failed to open GGUF file '/m.gguf' (No such file or directory)\n"
     "main: exiting due to model loading error", llama_entry(), "model_not_found", "modelreg scan"),
    ("OSError: [Errno 98] Address already in use", vllm_entry(), "port_in_use", "backend_config.port"),
    ("couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 24002\nmain: exiting due to HTTP server error",
     llama_entry(), "port_in_use", "backend_config.port"),
    ('error while handling argument "--chat-template-file": error: failed to open file \'/t.jinja\'',
     llama_entry(), "chat_template_missing", "chat_template.path"),
])
def test_the_real_servers_own_error_texts(log, entry, rule, advice):
    finding = next(f for f in diagnose(log, entry) if f.rule == rule)
    assert advice in finding.suggestion
