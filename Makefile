# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: run test test-browser test-faults demo lint bench clean install install-dev

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "warning needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# The stamp files re-run pip only when pyproject.toml changes. Bytecode is compiled once, in parallel,
# right after installing: where PYTHONDONTWRITEBYTECODE is set (CI, containers) Python would otherwise
# compile every imported module from source at every start (`warning --help` took 2 s instead of 0.15 s).
COMPILE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib warning >/dev/null || true

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --no-compile -e .
	@$(COMPILE)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --no-compile -e '.[dev]'
	@$(COMPILE)
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/warning serve --sample

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# The console in a headless Chromium (Debian's `chromium`; playwright never downloads a browser), with a
# screenshot per step in build/screenshots/. Part of `make test` too; skipped where no chromium exists.
test-browser: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q tests/browser

# The fault suite (issue 10): workers, Redis, Mosquitto and the provider failing under 10,000 deliveries
# (up to ~20 min; `make test` runs a fast subset of it), plus the schemathesis and fuzz tests. Those are
# picked by wildcard, so the target works whichever of them exist yet.
FAULT_TESTS = tests/faults $(wildcard tests/integration/test_schemathesis.py tests/unit/test_fuzz_*.py)
test-faults: $(VENV)/.installed-dev
	WARNING_FAULTS=full WARNING_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest -q $(FAULT_TESTS)

demo: $(VENV)/.installed
	$(BIN)/warning demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check warning tests
	$(BIN)/ruff format --check warning tests
	$(BIN)/mypy

# Each benchmark beside a bare baseline measured in the same run; `make bench ARGS=--quick` for a smoke run.
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
