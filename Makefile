# Two set-up commands: `make demo` and `make test`. Both create .venv and install from requirements.lock.
PYTHON ?= python3
# Optional extra wheel index for torch, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for the
# CPU build on a machine whose pip has no local copy of it (the Dockerfile always uses that index).
# Empty by default: an unreachable index would make pip retry for every package of the lock.
TORCH_INDEX ?=
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := demo_out

.PHONY: install test demo lint format bench lock clean default-model

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=77" wheel
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh $(DEMO)

# Rebuild the shipped default model (facekp_cli/model/shipped/) from synthetic faces only; ~47 min
# on 2 CPU cores (96 px). Work files go to build/default_model (git-ignored).
default-model: install
	$(BIN)/python scripts/build_default_model.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash benchmarks/run_all.sh

# Re-pin every package after changing pyproject.toml (torch stays the CPU build on disk).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0 -e ".[dev]"
	(head -2 requirements.lock; .venv-lock/bin/pip freeze --exclude-editable | grep -iv '^facekp' \
	  | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/' | sort -f) > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
