# The two commands a newcomer needs: `make run` and `make test`.
# Each builds what it needs itself: uv (pinned, from PyPI), a virtual
# environment in .venv holding exactly the versions in uv.lock, and the release
# build of the Rust core (maturin, exactly the crates in Cargo.lock).
# `make lock` upgrades the lock; nothing else changes what is installed.

PYTHON     ?= python3
UV_VERSION := 0.13.9
TOOLS      := .tools
UV         := $(TOOLS)/bin/uv
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
RUST_SOURCES := $(shell find bidcore -name '*.rs' -o -name 'Cargo.toml') Cargo.toml Cargo.lock

# uv uses this machine's Python, never one it would download.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint pytest rust-test system-deps faults soak lock clean

$(TOOLS)/uv-$(UV_VERSION):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $@

# Sync (and so rebuild the core) whenever the lock, the Rust sources or the stub
# change; fail early, and say what to do, when pyproject.toml and uv.lock disagree.
$(STAMP): $(TOOLS)/uv-$(UV_VERSION) pyproject.toml uv.lock bidcore.pyi $(RUST_SOURCES)
	@$(UV) lock --check --quiet 2>/dev/null || { \
		echo "error: uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock" >&2; \
		exit 1; }
	$(UV) sync --locked --extra dev --python $(PYTHON) --quiet
	touch $(STAMP)

# Every locked version to the newest pyproject.toml allows (also after adding a
# dependency there); the next `make run` or `make test` installs it.
lock: $(TOOLS)/uv-$(UV_VERSION)
	$(UV) lock --upgrade --python $(PYTHON)

run: $(STAMP)
	$(PY) -m engine demo

rust-test:
	cargo fmt --all --check
	cargo test --workspace --release --locked --quiet
	cargo clippy --workspace --all-targets --release --locked -- -D warnings

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest bidcore --allowlist .stubtest-allowlist

system-deps:
	tests/system-deps.sh

pytest: $(STAMP) system-deps
	$(PY) -m pytest

# The whole suite: Rust unit tests and clippy, ruff, the import contracts
# (import-linter), mypy (and the stub check), then every Python test.
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
	rm -rf $(VENV) $(TOOLS) target
