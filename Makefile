# The front door: CI and developers use the same targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test unit integration lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(VENV)/bin/corral up

test: install
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

integration: install
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
