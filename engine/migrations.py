"""Apply the ordered SQL migrations in sql/ to a database.

Each `sql/NNNN_name.sql` runs once, in version order, in its own transaction,
and is recorded in `schema_migrations` with the sha256 of its text. A file that
was changed after it was applied is refused: a change goes in a new file.
Runs are serialised with an advisory lock, so several engine processes may start
against one database at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from engine.errors import MigrationError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql"

# A fixed advisory-lock key ("D360" "migr" as bytes): advisory locks are per
# database, so this serialises migration runs on one database only.
MIGRATION_LOCK_KEY = 0x4433_3630_6D69_6772

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version     INT PRIMARY KEY,
  name        TEXT NOT NULL,
  checksum    CHAR(64) NOT NULL,
  applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str  # the file name, e.g. "0001_schema.sql"
    sql: str
    checksum: str  # sha256 of the file's bytes, hex


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in `directory`, in version order."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path} is not named like a migration (NNNN_lower_snake.sql); rename it"
            )
        data = path.read_bytes()
        migration = Migration(
            version=int(match.group(1)),
            name=path.name,
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
        if migration.version in found:
            other = found[migration.version].name
            raise MigrationError(f"{other} and {path.name} share version {migration.version}")
        found[migration.version] = migration
    return [found[version] for version in sorted(found)]


async def migrate(
    conn_or_dsn: asyncpg.Connection | str, *, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply every pending migration; return the names of those applied, in order.

    Safe to call again (a no-op when up to date) and from several processes at
    once (they take turns). Raises MigrationError, before applying anything, if an
    applied file has changed or is missing.
    """
    migrations = load_migrations(directory)
    async with _connection(conn_or_dsn) as conn, _migration_lock(conn):
        await conn.execute(_CREATE_TABLE)
        applied = await _applied_checksums(conn)
        _check_history(migrations, applied, directory)
        pending = [m for m in migrations if m.version not in applied]
        for migration in pending:
            await _apply(conn, migration)
        return [m.name for m in pending]


@asynccontextmanager
async def _connection(conn_or_dsn: asyncpg.Connection | str) -> AsyncIterator[asyncpg.Connection]:
    if not isinstance(conn_or_dsn, str):
        if conn_or_dsn.is_in_transaction():
            raise MigrationError(
                "migrate() needs a connection outside any transaction: each migration "
                "commits on its own"
            )
        yield conn_or_dsn
        return
    conn = await asyncpg.connect(conn_or_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def _migration_lock(conn: asyncpg.Connection) -> AsyncIterator[None]:
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        yield
    finally:
        # A closed connection has already released its session's locks.
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _applied_checksums(conn: asyncpg.Connection) -> dict[int, tuple[str, str]]:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {row["version"]: (row["name"], row["checksum"]) for row in rows}


def _check_history(
    migrations: list[Migration], applied: dict[int, tuple[str, str]], directory: Path
) -> None:
    on_disk = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {name} applied, but {directory} has no file "
                f"with version {version:04d}: this code is older than the database"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{directory / migration.name} changed after it was applied (recorded sha256 "
                f"{checksum[:12]}…, file now {migration.checksum[:12]}…): restore the file "
                f"and put the change in a new numbered migration"
            )


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    logger.info("applying migration %s", migration.name)
    try:
        async with conn.transaction():
            # No arguments: the simple query protocol, which runs a file of statements.
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as err:
        raise MigrationError(
            f"{migration.name} failed and was rolled back: {type(err).__name__}: {err}"
        ) from err
