# Two entry points (see README): `make demo` sets everything up and runs the main job,
# `make test` runs the test suite. Each creates the virtual environment when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test parity clean

setup: $(VENV)/.installed $(FASHION_MNIST)

# All extras: torch, jax, keras (tensorflow), test. Re-installs when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[all]'
	touch $@

# The real Fashion-MNIST IDX files, from Debian's package (works offline once installed).
$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

demo: setup
	$(BIN)/dcgan describe --preset dcgan64
	$(BIN)/dcgan describe --preset dcgan64 --backend torch

test: $(VENV)/.installed
	$(BIN)/python -m pytest

parity: $(VENV)/.installed
	$(BIN)/python -m pytest tests/parity

clean:
	rm -rf $(VENV) *.egg-info
