# modelreg: `make run` starts the app on the demo registry, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS := .cache/backends

.PHONY: run test typecheck bench docs setup backends browser strace clean

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

# The demo: tiny real model files in .cache/demo-models and a copy of configs/ scanned over them in
# .cache/demo-registry (both git-ignored), so the demo's facts are its files' and a Rescan changes nothing. Made again
# when configs/ changes (the demo's own edits are then replaced).
DEMO_MODELS := .cache/demo-models
DEMO_REGISTRY := .cache/demo-registry
CONFIG_DIR ?= $(DEMO_REGISTRY)
$(DEMO_REGISTRY)/.made: tests/support/demo_models.py tests/support/tiny_gguf.py $(wildcard configs/*.json) $(VENV)/.installed-app
	PYTHONPATH=tests $(PY) -m support.demo_models $(DEMO_MODELS) $(DEMO_REGISTRY)
	touch $@

# The proxy and the GUI together on the demo registry (Ctrl-C stops both and every backend they started).
run: $(VENV)/.installed-app $(DEMO_REGISTRY)/.made
	$(VENV)/bin/modelreg --config-dir $(CONFIG_DIR) up

# Debian's strace for the tests that SIGKILL a command at an exact write point (fault injection).
strace:
	@command -v strace >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace) \
	  || echo "WARNING: could not install Debian's strace; the kill-at-a-write-point tests will be skipped"; }

# The linter first (pyflakes, import order, line length), then every test. pytest runs from the venv's bin (not
# `python -m`), so the repo root is not on sys.path: the code is imported by its installed name only.
test: setup backends browser strace
	$(VENV)/bin/ruff check core gui tests bench
	$(MAKE) --no-print-directory typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# mypy over core/ and gui/ as the one package `modelreg` they install as: through a tree of links, since mypy cannot
# follow the editable install's import hook.
TYPECHECK := .cache/typecheck
typecheck: setup
	rm -rf $(TYPECHECK)/modelreg && mkdir -p $(TYPECHECK)/modelreg
	ln -s $(CURDIR)/core/* $(TYPECHECK)/modelreg/ && ln -s $(CURDIR)/gui $(TYPECHECK)/modelreg/gui
	cd $(TYPECHECK) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml -p modelreg

bench: setup backends browser
	$(PY) -m bench

# The generated references, docs/reference/cli.md and settings.md, from the argument parser and the settings model.
docs: $(VENV)/.installed-app
	$(PY) -m modelreg.cli.docs

clean:
	rm -rf $(VENV) build *.egg-info
