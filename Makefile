# Developer entry points. `make install` is also what .ci/run uses to build the venv, so a
# green CI means this exact install works on a fresh machine.

VENV   ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY     := $(VENV)/bin/python

.PHONY: install dev test lint infra-up infra-down infra-status system-deps

# The machine packages (infra/system-deps.sh: installed with apt-get when missing, or one line
# saying how). The profile is the goal's: `dev` (java, maven, postgres), `test` (those plus kcat,
# promtool and chromium), and for `make install` alone just python3-venv. Make passes a target's
# variables on to its prerequisites, so `make test` checks the `test` profile here.
SYSTEM_DEPS ?= venv
dev: SYSTEM_DEPS = dev
test: SYSTEM_DEPS = test
system-deps:
	KJS_PYTHON=$(PYTHON) bash infra/system-deps.sh $(SYSTEM_DEPS)

# Re-installed whenever the lock or the project metadata changes; `dev` and `test` depend on
# it, so the README's two commands work on a fresh clone. Order-only on system-deps: checked
# on every run, before the venv exists (Debian's python makes no venv without python3-venv),
# without forcing a re-install.
$(VENV)/.installed: requirements.lock pyproject.toml | system-deps
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
	$(VENV)/bin/lint-imports --no-cache

infra-up:
	$(PY) -m infra up

infra-down:
	$(PY) -m infra down

infra-status:
	$(PY) -m infra status
