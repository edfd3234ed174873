# syntax=docker/dockerfile:1
#
# The auction engine's image, in two stages:
#   build    Python 3.11 + a Rust toolchain + maturin: builds this project's wheel
#            (the `bidcore` extension plus the engine, web, jobs and bench packages)
#            and exports uv.lock's runtime dependencies, with their hashes.
#   runtime  Python 3.11 slim with only the wheel and exactly those locked
#            dependencies installed, run as an unprivileged user.
#
#   docker build -t dealer360/auction-engine .
#   docker run -p 8080:8080 -e DATABASE_URL=... -e JWT_SECRET=... -e INTERNAL_API_TOKEN=... \
#       dealer360/auction-engine
#
# Both stages use the same Debian release, so the wheel's glibc tag matches the runtime.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# --------------------------------------------------------------------------- build
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build

# "stable" builds with the newest Rust; pin a version (e.g. 1.90.0) for byte-identical builds.
ARG RUST_TOOLCHAIN=stable

# curl fetches rustup; gcc and libc6-dev are the linker the extension module needs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/opt/rustup \
    CARGO_HOME=/opt/cargo \
    PATH=/opt/cargo/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
        | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "${RUST_TOOLCHAIN}" \
    && rustc --version

# The versions pyproject.toml pins: maturin (its [build-system]) and uv (the
# Makefile's UV_VERSION), which reads uv.lock.
RUN pip install "maturin==1.16.0" "uv==0.13.9"

WORKDIR /src
COPY . .

# The cache mounts keep downloaded crates and compiled dependencies between builds;
# the wheel goes to /wheels, outside them, so the runtime stage can read it.
# --locked: build exactly the versions in Cargo.lock, or fail.
RUN --mount=type=cache,target=/opt/cargo/registry \
    --mount=type=cache,target=/src/target \
    maturin build --release --locked --out /wheels \
    && ls -l /wheels

# The runtime dependencies exactly as uv.lock has them (no extras), each with its
# hashes; --locked fails the build if uv.lock does not match pyproject.toml.
RUN uv export --locked --no-dev --no-emit-project --format requirements.txt \
        --output-file /wheels/requirements.txt

# --------------------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

ARG PYTHON_VERSION

# ENGINE_DATA_DIR holds the embedded PostgreSQL's data when DATABASE_URL is unset,
# and the bid log's signing key when LOG_SIGNING_KEY is; it is the engine user's
# home, so both work.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/engine \
    PATH=/opt/engine/bin:$PATH \
    ENGINE_DATA_DIR=/var/lib/dealer360

RUN groupadd --system --gid 10001 engine \
    && useradd --system --uid 10001 --gid engine --home-dir /var/lib/dealer360 \
        --create-home --shell /usr/sbin/nologin engine

# The wheel is bind-mounted from the build stage, so it never becomes a layer of
# this image. pip installs the locked dependencies (every hash checked), then
# the wheel alone, and byte-compiles them now, as root, so the unprivileged
# user never needs to write there.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/engine \
    && pip install --require-hashes --no-deps -r /wheels/requirements.txt \
    && pip install --no-deps /wheels/*.whl

# Migrations: engine/migrations.py reads sql/ next to the engine package
# (site-packages/sql/), and the wheel does not carry it unless pyproject's
# [tool.maturin] includes it. Copying it here makes the image right either way.
COPY sql/ /opt/engine/lib/python${PYTHON_VERSION}/site-packages/sql/

# Fail the build, not the first start, if the migrations cannot be found.
RUN python -c "from engine.migrations import MIGRATIONS_DIR, load_migrations; \
assert load_migrations(), f'no migrations in {MIGRATIONS_DIR}'; \
print(len(load_migrations()), 'migrations in', MIGRATIONS_DIR)"

USER engine
WORKDIR /var/lib/dealer360

EXPOSE 8080

# /healthz answers once start-up (migrations, recovery of the core from the
# ledger) is done and the server listens, so start-period covers a slow recovery.
# Python's urllib raises on anything but 2xx, which makes the check fail.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

# Exec form: the engine is PID 1 and gets SIGTERM itself, which stops new bids,
# flushes the ledger and closes the sockets (give it time: stop_grace_period).
CMD ["python", "-m", "engine", "serve", "--host", "0.0.0.0", "--port", "8080"]
