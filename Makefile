# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/dicomml: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install demo test bench docs
install: $(BIN)/dicomml

demo: install
	bash scripts/demo.sh $(BIN)

test: install
	$(BIN)/python -m mypy dicomml
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict
	$(BIN)/python -m pytest -q -n 2 tests

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done
