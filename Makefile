# `make demo` runs the whole example; `make test` runs the test suite. Both work on a fresh
# machine: they create .venv (and .venv-feast for the Feast comparisons) and install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FEAST_VENV := .venv-feast
SCALE ?= 1

.PHONY: demo test lint install feast bench clean

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

feast: $(FEAST_VENV)/.installed
$(FEAST_VENV)/.installed: tests/feast_requirements.txt
	$(PYTHON) -m venv $(FEAST_VENV)
	$(FEAST_VENV)/bin/pip install --quiet --upgrade pip
	$(FEAST_VENV)/bin/pip install --quiet -r tests/feast_requirements.txt
	touch $@

demo: install
	$(BIN)/python feature_repo/generate.py --scale $(SCALE)
	$(BIN)/featurestore apply --repo feature_repo
	$(BIN)/featurestore list --repo feature_repo
	$(BIN)/featurestore train --repo feature_repo --service fraud_v1 \
		--entities feature_repo/data/transactions.parquet --label is_fraud --out artifacts/fraud_v1
	@# fraud_v2: fraud_v1's features and one computed at request time from the transaction's
	@# amount (compare the two validation AUCs); the demo serves it.
	$(BIN)/featurestore training-set --repo feature_repo --service fraud_v2 \
		--entities feature_repo/data/transactions.parquet --out feature_repo/data/train_fraud_v2.parquet \
		--label is_fraud
	$(BIN)/featurestore train --repo feature_repo --service fraud_v2 \
		--entities feature_repo/data/transactions.parquet --label is_fraud --out artifacts/fraud_v2
	$(BIN)/featurestore models describe artifacts/fraud_v2 --repo feature_repo
	@# Materialize and look a few entities up: Redis at 127.0.0.1:6379/15 if one answers, else SQLite.
	$(BIN)/python feature_repo/online_demo.py
	@# Serve the model over HTTP (the repo's own online store), ask it, stop it; then the log.
	$(BIN)/python feature_repo/serve_demo.py
	$(BIN)/featurestore log show --repo feature_repo
	@# Reports: clean, then a stale online store and a shifted feature, each caught.
	$(BIN)/python feature_repo/reports_demo.py

test: install feast
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	FEATURESTORE_FEAST_PYTHON=$(FEAST_VENV)/bin/python $(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(FEAST_VENV) feature_repo/data artifacts
