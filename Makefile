# radhe — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into .venv; a stamp file makes re-runs cost seconds.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.radhe-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-all test-floor lint docs bench bench-validity clean browser

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
	# docs: tests/test_docs_site.py builds the site (mkdocs --strict) in the default test run
	$(PIP) install -q -e ".[dev,distributed,dicom,docs,mlflow]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/radhe demo

test: $(STAMP) browser
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Headless Chromium renders the HTML report in its test (which skips with a reason without it).
browser:
	@sh tools/install_browser.sh

test-all: $(STAMP) test-floor
	$(PY) -m pytest $(PYTEST_ARGS)

# The oldest scikit-learn and imbalanced-learn radhe supports (the floors in pyproject.toml: keep
# them equal). They are installed, without dependencies, into their own folder that shadows .venv's
# copies through PYTHONPATH; everything else (numpy, pandas, radhe itself) is .venv's. The stamp's
# name holds the versions, so changing a floor reinstalls. The check refuses to run the tests at
# any other version (e.g. a folder that failed to shadow .venv's copies).
SKLEARN_FLOOR := 1.6.0
IMBLEARN_FLOOR := 0.13.0
FLOOR := .venv-floor
FLOOR_STAMP := $(FLOOR)/.installed-sklearn-$(SKLEARN_FLOOR)-imblearn-$(IMBLEARN_FLOOR)
FLOOR_TESTS ?= tests/test_estimator_checks.py tests/test_selection.py tests/test_model_selection.py \
	tests/test_stacking.py tests/test_pipeline.py tests/test_evaluation.py tests/test_baselines.py \
	tests/test_compat.py
FLOOR_CHECK := PYTHONPATH=$(FLOOR) $(PY) -c "import sklearn, imblearn; \
	found = (sklearn.__version__, imblearn.__version__); \
	assert found == ('$(SKLEARN_FLOOR)', '$(IMBLEARN_FLOOR)'), f'floor folder not used: {found}'; \
	print('scikit-learn', found[0], 'imbalanced-learn', found[1], 'from', sklearn.__file__)"

$(FLOOR_STAMP): $(STAMP)
	rm -rf $(FLOOR)
	$(PIP) install -q --no-deps --target $(FLOOR) "scikit-learn==$(SKLEARN_FLOOR)" "imbalanced-learn==$(IMBLEARN_FLOOR)"
	$(FLOOR_CHECK)
	touch $@

test-floor: $(FLOOR_STAMP)
	$(FLOOR_CHECK)
	PYTHONPATH=$(FLOOR) $(PY) -m pytest -m "not slow" $(FLOOR_TESTS) $(PYTEST_ARGS)

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
	rm -rf $(VENV) $(FLOOR) build *.egg-info .pytest_cache
