# Two entry points (see README): `make demo` sets everything up and runs the main job,
# `make test` runs the test suite. Each creates the virtual environment when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-compile lint parity docs serve-docs clean

setup: $(VENV)/.installed $(FASHION_MNIST) $(CHROMIUM)

# All extras: torch, jax, keras (tensorflow), eval, inception, test, docs. Re-installs when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[all]'
	touch $@

# The real Fashion-MNIST IDX files, from Debian's package (works offline once installed).
$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

# Debian's chromium: tests/test_site.py opens every page of the site in it (through Playwright,
# which downloads no browser of its own).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium

# The main job: mnist28 (the Flux model) on real Fashion-MNIST, PyTorch on the CPU, about 13
# minutes on 2 cores. Run again, it continues the same run (--resume) instead of starting over.
DEMO_OUT := runs/demo
DEMO_STEPS ?= 2500
demo: setup
	$(BIN)/dcgan train --backend torch --preset mnist28 --batch-size 64 --steps $(DEMO_STEPS) \
		--out $(DEMO_OUT) $$([ -f $(DEMO_OUT)/run.json ] && echo --resume)
	@echo "latest grid: $$(ls $(DEMO_OUT)/samples/*.png | tail -n 1)"

# The tests read the real Fashion-MNIST too, so the dataset is installed as for the demo, and
# tests/test_site.py opens the built site in chromium.
# One xdist worker per core (at most 4: each starts framework processes of 1-3 GB), each
# file's tests on one worker (tests/conftest.py says why). torch.compile's test, most of a
# minute of Inductor compiling C++, runs apart: `make test-compile` (docs/test-suite.md).
test: $(VENV)/.installed $(FASHION_MNIST) $(CHROMIUM)
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile -m "not torch_compile"

test-compile: $(VENV)/.installed
	$(BIN)/python -m pytest -m torch_compile tests/test_compile.py

# ruff's linter and formatter (config in pyproject.toml); CI runs this before the tests.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

parity: $(VENV)/.installed
	$(BIN)/python -m pytest tests/parity

# The documentation site (docs/conf.py; the sources are the repository's root) into site/, from
# scratch every time (-E: with -W, an incremental build would not repeat an unchanged page's
# warnings). A warning fails the build. -j auto: on 2 cores 15-30% faster, same pages and warnings.
# The doctrees go to build/, so site/ holds only the site.
docs: $(VENV)/.installed
	rm -rf site
	$(BIN)/sphinx-build -W --keep-going -q -E -j auto -d build/doctrees -c docs . site

# The site at http://127.0.0.1:$(DOCS_PORT)/, on this machine only, freshly built.
DOCS_PORT ?= 8000
serve-docs: docs
	@echo "serving site/ at http://127.0.0.1:$(DOCS_PORT)/ (Ctrl-C stops)"
	$(BIN)/python -m http.server $(DOCS_PORT) --bind 127.0.0.1 --directory site

clean:
	rm -rf $(VENV) *.egg-info site build/doctrees
