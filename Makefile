# radhe — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into .venv; a stamp file makes re-runs cost seconds.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.radhe-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-all lint docs bench bench-validity clean browser

install: $(STAMP)

$(STAMP): pyproject.toml setup.cfg tools/build_pyradiomics.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# numpy first: pyradiomics' source archive imports it at build time.
	$(PIP) install -q "numpy>=1.26" versioneer
	# pyradiomics 3.1.0 has no wheel for this Python and its source archive is defective (wrong
	# version label, missing C headers): tools/build_pyradiomics.py repairs and installs it,
	# without build isolation since its setup.py imports numpy.
	$(PIP) install -q PyWavelets pykwalify six SimpleITK
	$(PY) tools/build_pyradiomics.py $(VENV)/sdist
	# The CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,distributed]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/radhe demo

test: $(STAMP) browser
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Headless Chromium renders the HTML report in its test (which skips with a reason without it).
browser:
	@sh tools/install_browser.sh

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

DOCS_STAMP := $(VENV)/.radhe-docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PIP) install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# Builds the documentation site into site/ (offline; warnings are errors).
docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

lint: $(STAMP)
	$(PY) -m ruff check radhe pipelines tests

BENCH_STAMP := $(VENV)/.radhe-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -q -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

# radhe's default against hand-written scikit-learn baselines on real tables and the synthetic cohort
bench-validity: $(BENCH_STAMP)
	$(PY) benchmarks/bench_validity.py --json benchmarks/results/validity.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
