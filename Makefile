# The two commands a newcomer needs are `make run` and `make test`; both install into .venv first.
# `make run` installs the runtime dependencies only, exactly as locked (the image does the same);
# `make test` installs the dev lock instead: runtime and dev tools, every wheel checked against
# its hash. Both then add the package itself, editable, with --no-deps: an edit to src/ is what
# the next run or pytest sees, with no build step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-replicas fuzz clean reliability soak edge amplify lock

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): requirements.lock pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUNTIME)

$(STAMP): requirements-dev.lock pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP) $(RUNTIME)

run: $(RUNTIME)
	$(BIN)/klaviyo-destination serve

# After a dependency change in pyproject.toml: both locks, resolved by uv (pinned in the dev lock)
# for CPython 3.11 on Linux, with the hash of every file the index lists for each version. uv
# keeps the versions of the lock it rewrites unless pyproject.toml rules them out (add
# `--upgrade-package NAME` to move one), and its hashes too: so it is handed a copy without
# them, and writes them all anew. The dev lock is constrained by the runtime lock, so the two
# agree on every package they share. The patch level is the oldest the project runs on (this
# machine's 3.11.7; the image has 3.11.16): redis-py wants async-timeout only below 3.11.3.
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-version 3.11.7 --python-platform linux --custom-compile-command 'make lock'
UNHASHED := sed -e '/--hash=/d' -e 's/ \\$$//'
lock: $(STAMP)
	$(UNHASHED) requirements.lock > $(VENV)/requirements.lock
	$(UV_COMPILE) --output-file $(VENV)/requirements.lock
	mv $(VENV)/requirements.lock requirements.lock
	$(UNHASHED) requirements-dev.lock > $(VENV)/requirements-dev.lock
	$(UV_COMPILE) --extra dev --constraint requirements.lock \
		--output-file $(VENV)/requirements-dev.lock
	mv $(VENV)/requirements-dev.lock requirements-dev.lock

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
		tests/mapping/test_fuzz_mapping.py tests/api/test_schemathesis.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

# 1-3 serve processes on one account, with and without REDIS_URL (~4 min); rewrites only its
# own section of docs/benchmarks.md, which `make bench` keeps.
bench-replicas: $(STAMP)
	$(BIN)/python bench/bench_replicas.py

# Fault matrix: 2,000 mixed events per fault kind through the real servers (docs/reliability.md).
reliability: $(STAMP)
	$(BIN)/python -m reliability.fault_matrix

# Two minutes of 500 events/s; prints throughput and the service's RSS every 10 s.
soak: $(STAMP)
	$(BIN)/python -m reliability.soak

# Hostile connections: a 128 MB header, 19,000 half-sent requests, stalled bodies (~35 s).
edge: $(STAMP)
	$(BIN)/python -m reliability.edge

# Small protocol requests with large answers, before and after (docs/reliability.md).
amplify: $(STAMP)
	$(BIN)/python -m reliability.amplify

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
