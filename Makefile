# The two commands a newcomer needs: `make run` and `make test`.
# Each builds what it needs itself: a virtual environment in .venv, the release
# build of the Rust core (maturin), and the pinned dependencies from PyPI.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUST_SOURCES := $(shell find bidcore -name '*.rs' -o -name 'Cargo.toml') Cargo.toml Cargo.lock

.PHONY: run test lint pytest rust-test system-deps faults soak clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall (and so rebuild the core) whenever the Rust sources or the
# dependency list change.
$(STAMP): $(VENV)/bin/python pyproject.toml bidcore.pyi $(RUST_SOURCES)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m engine demo

rust-test:
	cargo fmt --all --check
	cargo test --workspace --release --quiet
	cargo clippy --workspace --all-targets --release -- -D warnings

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest bidcore --allowlist .stubtest-allowlist

system-deps:
	tests/system-deps.sh

pytest: $(STAMP) system-deps
	$(PY) -m pytest

# The whole suite: Rust unit tests and clippy, ruff, mypy (and the stub check),
# then every Python test.
test: rust-test lint pytest

# tests/README.md's table, rows 1–6a, with their figures printed (-s).
faults: $(STAMP) system-deps
	$(PY) -m pytest -q -s tests/test_faults_kill.py tests/test_faults_pg.py \
		tests/test_faults_redis.py tests/test_faults_end.py tests/test_faults_slow.py \
		tests/test_soak.py

# Row 6b: one hour at a moderate steady load.
soak: $(STAMP)
	$(PY) -m bench soak --minutes 60

clean:
	rm -rf $(VENV) target
