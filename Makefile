# Every target is a thin wrapper around one `echomask` command (SPEC §2).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ECHOMASK := $(VENV)/bin/echomask
DATA ?= synthetic
PART ?= all
AUDIO ?=

.PHONY: install test test-slow demo data-synthetic train-evaluator train-vqvae train-generator evaluate generate bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

data-synthetic: install
	$(ECHOMASK) synth-data --out data/synthetic

clean:
	rm -rf logs outputs data/cache data/synthetic
