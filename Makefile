# Two commands for a new machine: `make demo` and `make test` (see README.md).
# The venv lives outside the checkout, keyed by a hash of pyproject.toml and constraints.txt,
# so that every clone on this machine reuses it; a new machine builds it with the same command.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV_KEY := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/liveinference/venv-$(VENV_KEY)
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/python:$(CURDIR)/expansion:$(CURDIR)
export PATH := $(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv test demo bench clean-venv

venv: $(VENV)/.ready

$(VENV)/.ready:
	rm -rf "$(VENV)" $(filter-out $(VENV),$(wildcard $(dir $(VENV))venv-*))
	$(PYTHON) -m venv "$(VENV)"
	"$(PY)" -m pip install --quiet --upgrade pip
	"$(PY)" -m pip install --quiet -c constraints.txt '.[all,test]'
	"$(PY)" -m pip uninstall --quiet --yes liveinference
	touch "$@"

test: venv
	"$(PY)" -m pytest -q -p no:cacheprovider

demo: venv
	"$(PY)" examples/demo.py

bench: venv
	"$(PY)" benchmarks/throughput.py

clean-venv:
	rm -rf "$(VENV)"
