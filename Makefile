# Developer entry points. `make install` is also what .ci/run uses to build the venv, so a
# green CI means this exact install works on a fresh machine.

VENV   ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY     := $(VENV)/bin/python

.PHONY: install dev test lint infra-up infra-down infra-status

# Re-installed whenever the lock or the project metadata changes; `dev` and `test` depend on
# it, so the README's two commands work on a fresh clone.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

dev: install
	$(VENV)/bin/kjs dev

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

infra-up:
	$(PY) -m infra up

infra-down:
	$(PY) -m infra down

infra-status:
	$(PY) -m infra status
