"""Fixtures for tests that need a real PostgreSQL.

One embedded PostgreSQL server runs for the whole session, started the first
time a test asks for one of these fixtures (importing this file starts nothing).
The migrations are applied once, into a template database; each test then gets
its own database copied from the template, dropped after the test.

- `database_url`: a fresh, migrated database's dsn.
- `pool`: an asyncpg pool on `database_url`, with the pgvector codec.
- `blank_database_url`: a fresh database with nothing applied (for migration tests).
- `postgres_cluster`: the session's server, to make more databases.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest_asyncio

from engine.database import create_pool, dsn_for_database, embedded_server
from engine.migrations import migrate
from tests.redis_server import RedisServer, running_redis

TEMPLATE_DATABASE = "dealer360_template"

# Durability is not under test here, and without fsync each test's database
# is made in a few milliseconds instead of waiting on the disk.
_FAST_UNSAFE_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


@dataclass(frozen=True, slots=True)
class PostgresCluster:
    """The session's PostgreSQL server."""

    admin_dsn: str  # superuser `postgres`, database `postgres`
    template: str  # a database with every migration applied

    def dsn(self, database: str) -> str:
        return dsn_for_database(self.admin_dsn, database)

    async def create_database(self, template: str | None = None) -> str:
        """A new database copied from `template` (default: the migrated one); its dsn."""
        name = f"test_{uuid.uuid4().hex}"
        # Names cannot be query parameters; both are generated here, never input.
        await _admin(
            self.admin_dsn,
            f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(template or self.template)}",
        )
        return self.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        # FORCE: a connection a test forgot to close must not keep its database alive.
        await _admin(
            self.admin_dsn, f"DROP DATABASE IF EXISTS {_quote(dsn_database(dsn))} WITH (FORCE)"
        )


def dsn_database(dsn: str) -> str:
    """The database name in a dsn made by `PostgresCluster`."""
    return dsn.split("?", 1)[0].rsplit("/", 1)[1]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_cluster() -> AsyncIterator[PostgresCluster]:
    # A short path of our own: pytest's tmp dirs can exceed the Unix socket path limit.
    data_dir = Path(tempfile.mkdtemp(prefix="d360-pg-"))
    try:
        async with embedded_server(data_dir) as admin_dsn:
            await _admin(
                admin_dsn,
                *(f"ALTER SYSTEM SET {setting} = off" for setting in _FAST_UNSAFE_SETTINGS),
                "SELECT pg_reload_conf()",
                f"CREATE DATABASE {_quote(TEMPLATE_DATABASE)} TEMPLATE template0",
            )
            await migrate(dsn_for_database(admin_dsn, TEMPLATE_DATABASE))
            yield PostgresCluster(admin_dsn=admin_dsn, template=TEMPLATE_DATABASE)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture
async def database_url(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    dsn = await postgres_cluster.create_database()
    try:
        yield dsn
    finally:
        await postgres_cluster.drop_database(dsn)


@pytest_asyncio.fixture
async def blank_database_url(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    dsn = await postgres_cluster.create_database(template="template0")
    try:
        yield dsn
    finally:
        await postgres_cluster.drop_database(dsn)


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    created = await create_pool(database_url, min_size=1, max_size=5)
    try:
        yield created
    finally:
        try:
            await asyncio.wait_for(created.close(), timeout=10)
        except TimeoutError:
            # A test kept a connection acquired; don't hang the session on it.
            created.terminate()


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own, on a free port."""
    async with running_redis() as server:
        yield server
