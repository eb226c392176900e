# The two commands a newcomer needs are `make run` and `make test`; both install into .venv first.
# `make run` installs the runtime dependencies only, exactly as locked (the image does the same);
# `make test` adds the dev dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench fuzz clean reliability soak edge lock

$(RUNTIME): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(RUNTIME)
	$(BIN)/klaviyo-destination serve

# After a dependency change in pyproject.toml: both locks, from what `make test` installed.
lock: $(STAMP)
	$(BIN)/python -m support.lock runtime > requirements.lock
	$(BIN)/python -m support.lock dev > requirements-dev.lock

lint: $(STAMP)
	$(BIN)/ruff check src tests bench reliability support
	$(BIN)/ruff format --check src tests bench reliability support

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# Long fuzz runs; `make test` runs the same tests with a few examples each.
FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider \
		tests/test_fuzz_mapping.py tests/test_schemathesis.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Fault matrix: 2,000 mixed events per fault kind through the real servers (docs/reliability.md).
reliability: $(STAMP)
	$(BIN)/python -m reliability.fault_matrix

# Two minutes of 500 events/s; prints throughput and the service's RSS every 10 s.
soak: $(STAMP)
	$(BIN)/python -m reliability.soak

# Hostile connections: a 128 MB header, 19,000 half-sent requests, stalled bodies (~35 s).
edge: $(STAMP)
	$(BIN)/python -m reliability.edge

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
