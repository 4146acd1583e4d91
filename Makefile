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

.PHONY: demo demo-real test test-fast contracts test-system-deps lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[full,dev]"
	touch $(STAMP)

# The main job on the embedded digits data: zoo -> compress -> convert -> bench -> report.
demo: $(STAMP)
	$(BIN)/edgesmith run --plan plans/demo.yaml --out reports/demo

# The same plan on the real data sets (cnn-mnist, dscnn-kws, lstm-kws, transformer-kws/-sms).
demo-real: $(STAMP)
	@test -n "$(EDGESMITH_DATA)" || { echo "set EDGESMITH_DATA to the folder holding mnist/, fsdd/, sms-spam/"; exit 2; }
	$(BIN)/edgesmith run --plan plans/demo-real.yaml --data-dir "$(EDGESMITH_DATA)" --out reports/demo-real

# System packages the runtime tests use: Debian's chromium ships SwiftShader, the software
# Vulkan device that LiteRT's GPU accelerator runs on in CI (the GPU tests point
# VK_ICD_FILENAMES at it themselves), a C compiler builds the test delegate, and
# openssh-server's sshd plays a board on loopback for tests/devices. Installed
# when missing and apt-get is usable as root; elsewhere those tests say what is missing.
SWIFTSHADER_ICD := /usr/lib/chromium/vk_swiftshader_icd.json

test-system-deps:
	@missing=""; \
	[ -f $(SWIFTSHADER_ICD) ] || missing="$$missing chromium"; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc libc6-dev"; \
	[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing="$$missing openssh-server"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing for the runtime tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; } \
	      || echo "warning: could not install$$missing; the tests that need it will say so"; \
	  else \
	    echo "note:$$missing missing and apt-get is not usable as root; the tests that need it will say so"; \
	  fi; \
	fi

# Tests run on every core (pytest-xdist; a test file stays on one worker so that its
# module fixtures are built once). The import contracts run first: a layering violation
# fails the build before any test.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

test: $(STAMP) test-system-deps contracts
	$(PYTEST)

# The inner loop: everything but the tests that train models or build virtual environments.
test-fast: $(STAMP) contracts
	$(PYTEST) -m "not slow and not venv"

contracts: $(STAMP)
	$(BIN)/python tools/check_imports.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
