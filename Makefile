# modelreg: `make run` starts the app on the demo registry, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
LITELLM_VENV := .venv-litellm
PY := $(VENV)/bin/python
WHEELS := .cache/wheels
LLAMA_CPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
CONFIG_DIR ?= configs

.PHONY: run test bench setup browser clean

setup: $(VENV)/.installed-test $(LITELLM_VENV)/.installed

# The app alone: what `make run` needs.
$(VENV)/.installed-app: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[gui]"
	touch $@

# llama-cpp-python compiles llama.cpp (minutes on 2 cores): build its wheel once into a git-ignored cache.
$(WHEELS)/.built:
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PYTHON) -m pip wheel --no-deps -w $(WHEELS) "llama-cpp-python>=0.3.0"
	touch $@

# The tests' extras: pytest, hypothesis, Playwright, and the real llama-cpp-python server from the cached wheel.
$(VENV)/.installed-test: $(VENV)/.installed-app $(WHEELS)/.built
	$(PY) -m pip install -q --find-links $(WHEELS) -e ".[gui,test]"
	touch $@

# The real LiteLLM proxy, the gateway of the several-hosts tests and benchmark, in a venv of its own: it pins
# huggingface-hub below 2 (modelreg needs 2.4). 1.110 moved the proxy into a separate litellm-proxy distribution that
# the package index here does not serve; 1.107.0 was a compromised release, so nothing below 1.108.
$(LITELLM_VENV)/.installed:
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install -q "litellm[proxy]>=1.108,<1.110"
	touch $@

# Debian's Chromium for the Playwright browser tests (Playwright's own browser download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "WARNING: could not install Debian's chromium; browser tests will be skipped"; }

run: $(VENV)/.installed-app
	$(VENV)/bin/modelreg --config-dir $(CONFIG_DIR) gui

# The linter first (pyflakes, import order, line length), then every test. pytest runs from the venv's bin (not
# `python -m`), so the repo root is not on sys.path: the code is imported by its installed name only.
test: setup browser
	$(VENV)/bin/ruff check core gui tests bench
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup browser
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(LITELLM_VENV) build *.egg-info
