# Two commands matter: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgesmith-installed

# The real data sets sit beside the checkout in this repository's CI; users point
# EDGESMITH_DATA at their own copy.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/README.md),)
export EDGESMITH_DATA ?= $(SHARED_DATA)
endif

DEMO_MODELS := cnn-digits lstm-digits transformer-digits

.PHONY: demo test lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[full,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgesmith zoo train $(DEMO_MODELS) --report reports/demo/zoo.md

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
