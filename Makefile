# Two entry points for a fresh machine: `make demo` and `make test`.
# The demo needs only dicomml with its [seg] and [viz] extras; the tests add the [test] extra.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[seg,viz]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install servers demo test bench docs
install: $(VENV)/.test-installed

# Orthanc with its DICOMweb plugin (apt), which the tests start on 127.0.0.1; does nothing once installed.
servers:
	bash scripts/install_servers.sh

demo: $(VENV)/.demo-installed
	bash scripts/demo.sh $(BIN)

test: $(VENV)/.test-installed servers
	$(BIN)/python -m ruff check dicomml tests benchmarks
	$(BIN)/python -m ruff format --check dicomml tests benchmarks scripts notebooks
	$(BIN)/python -m mypy dicomml
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict
	$(BIN)/python -m pytest -q -n 2 tests

docs: $(VENV)/.test-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

bench: $(VENV)/.test-installed servers
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done
