# modelreg: `make run` starts the app on the demo registry, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS := .cache/backends
CONFIG_DIR ?= configs

.PHONY: run test bench setup backends browser clean

setup: $(VENV)/.installed-test

# The app alone: what `make run` needs.
$(VENV)/.installed-app: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[gui]"
	touch $@

# The tests' extras: pytest, hypothesis, Playwright, and the real llama-cpp-python server. Its wheel compiles llama.cpp
# (minutes on 2 cores), so .ci/backends.sh builds it once per user and version, outside the clone.
$(VENV)/.installed-test: $(VENV)/.installed-app .ci/backends.sh
	wheel=$$(.ci/backends.sh llama) && $(PY) -m pip install -q "$$wheel" -e ".[gui,test]"
	touch $@

# Real vLLM (CPU), llama.cpp's llama-server and the LiteLLM proxy for the tests, cached per user; linked as
# $(BACKENDS)/bin/vllm, $(BACKENDS)/bin/llama-server and $(BACKENDS)/bin/litellm. Seconds when cached.
backends:
	.ci/backends.sh links $(BACKENDS)

# Debian's Chromium for the Playwright browser tests (Playwright's own browser download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "WARNING: could not install Debian's chromium; browser tests will be skipped"; }

run: $(VENV)/.installed-app
	$(VENV)/bin/modelreg --config-dir $(CONFIG_DIR) gui

# The linter first (pyflakes, import order, line length), then every test. pytest runs from the venv's bin (not
# `python -m`), so the repo root is not on sys.path: the code is imported by its installed name only.
test: setup backends browser
	$(VENV)/bin/ruff check core gui tests bench
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup backends browser
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
