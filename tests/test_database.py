"""open_database: the embedded default, an external DATABASE_URL, and the settings it reads."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from pathlib import Path

import asyncpg
import pytest
from pgvector import Vector

from engine.config import DEV_JWT_SECRET, Settings
from engine.database import EMBEDDED_OS_USER, dsn_for_database, open_database
from engine.errors import ConfigError
from engine.ledger import DEFAULT_BATCH_MAX
from engine.migrations import load_migrations

ALL_MIGRATIONS = [m.name for m in load_migrations()]


def embedded_settings(data_dir: Path) -> Settings:
    return Settings.from_env({"ENGINE_DATA_DIR": str(data_dir)})


def postmaster_owner(pgdata: Path) -> str:
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    return Path(f"/proc/{pid}").owner()


# --- the embedded default -------------------------------------------------------------


async def test_without_database_url_starts_embedded_postgres_migrated(tmp_path: Path) -> None:
    async with open_database(embedded_settings(tmp_path / "data")) as db:
        assert db.embedded
        assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()
        names = await db.pool.fetch("SELECT name FROM schema_migrations ORDER BY version")
        assert [row["name"] for row in names] == ALL_MIGRATIONS
        assert (await db.pool.fetchval("SHOW server_version")).startswith("18")


async def test_embedded_data_survives_a_restart(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data")
    async with open_database(settings) as db:
        await db.pool.execute(
            "INSERT INTO users (email, wallet_balance) VALUES ('keep@example.com', 12.50)"
        )
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists(), "server left running"

    async with open_database(settings) as db:
        balance = await db.pool.fetchval(
            "SELECT wallet_balance FROM users WHERE email = 'keep@example.com'"
        )
    assert str(balance) == "12.50"


async def test_nested_opens_share_one_server_until_the_last_closes(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data")
    async with open_database(settings) as outer:
        async with open_database(settings) as inner:
            assert inner.dsn == outer.dsn
        assert await outer.pool.fetchval("SELECT 1") == 1


async def test_stale_postmaster_pid_from_before_a_reboot_is_ignored(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data")
    async with open_database(settings):
        pass
    pgdata = tmp_path / "data" / "pg"
    # After a reboot the recorded pid may belong to another live program: this one.
    lines = [str(os.getpid()), str(pgdata), "0", "5432", str(pgdata), "", "0 0", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")

    async with open_database(settings) as db:
        assert await db.pool.fetchval("SELECT 1") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
async def test_as_root_runs_as_its_own_user_and_only_opens_ancestors_for_traversal(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    pgdata = private / "data" / "pg"

    async with open_database(embedded_settings(private / "data")) as db:
        assert await db.pool.fetchval("SELECT 1") == 1
        assert postmaster_owner(pgdata) == EMBEDDED_OS_USER

    assert pgdata.owner() == EMBEDDED_OS_USER
    mode = private.stat().st_mode
    assert mode & stat.S_IXOTH, "the server's user must be able to pass through"
    assert not mode & stat.S_IROTH, "nobody else may list a private directory"


# --- an external database --------------------------------------------------------------


async def test_with_database_url_uses_it_and_applies_pending_migrations(
    blank_database_url: str,
) -> None:
    settings = dataclasses.replace(Settings(), database_url=blank_database_url)

    async with open_database(settings) as db:
        assert not db.embedded
        assert db.dsn == blank_database_url
        count = await db.pool.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(ALL_MIGRATIONS)


async def test_a_node_started_with_another_partition_count_refuses_to_start(
    blank_database_url: str,
) -> None:
    first = dataclasses.replace(Settings(), database_url=blank_database_url)
    async with open_database(first) as db:
        assert db.partitions == 64  # fixed by the first start

    other = dataclasses.replace(first, partitions=32)
    with pytest.raises(ConfigError, match="PARTITIONS=32, but this database was set up with 64"):
        async with open_database(other):
            pass
    async with open_database(dataclasses.replace(first, partitions=64)) as db:
        assert db.partitions == 64


async def test_pool_connections_speak_pgvector(database_url: str) -> None:
    settings = dataclasses.replace(Settings(), database_url=database_url)

    async with open_database(settings) as db:
        value = await db.pool.fetchval("SELECT $1::vector(3)", [1.0, 2.0, 3.0])

    assert isinstance(value, Vector)
    assert value.to_list() == [1.0, 2.0, 3.0]


async def test_a_connection_goes_back_to_the_pool_without_a_reset_round_trip(
    database_url: str,
) -> None:
    settings = dataclasses.replace(Settings(), database_url=database_url)
    async with open_database(settings, min_size=1, max_size=1) as db:
        async with db.pool.acquire() as conn:
            raw = conn._con  # the connection itself, which outlives the proxy
            await conn.fetchval("SELECT 1")
            queries = raw._protocol.queries_count
        async with db.pool.acquire() as conn:
            assert conn._con is raw
        # asyncpg's default reset would have sent RESET ALL & co. on release.
        assert raw._protocol.queries_count == queries


async def test_an_open_transaction_is_still_rolled_back_on_release(database_url: str) -> None:
    settings = dataclasses.replace(Settings(), database_url=database_url)
    async with open_database(settings, min_size=1, max_size=1) as db:
        async with db.pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
        async with db.pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None


async def test_template_database_fixture_is_fully_migrated(pool: asyncpg.Pool) -> None:
    names = await pool.fetch("SELECT name FROM schema_migrations ORDER BY version")
    assert [row["name"] for row in names] == ALL_MIGRATIONS


def test_dsn_for_database_replaces_only_the_database() -> None:
    dsn = "postgresql://postgres:@/postgres?host=/tmp/x/pg"
    assert dsn_for_database(dsn, "other") == "postgresql://postgres:@/other?host=/tmp/x/pg"
    tcp = "postgresql://u:p@db.example:5432/engine?sslmode=require"
    assert dsn_for_database(tcp, "t") == "postgresql://u:p@db.example:5432/t?sslmode=require"


# --- settings ---------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.engine_data_dir.name == "dealer360-engine"
    assert settings.ledger_batch_max == DEFAULT_BATCH_MAX
    assert settings.ledger_batch_window_ms == 2
    assert settings.ledger_mode == "writebehind"
    assert (settings.rate_limit_ip_per_min, settings.rate_limit_user_per_min) == (100, 1000)
    assert (settings.ws_bids_per_s, settings.max_body_bytes) == (10, 65536)
    assert (settings.ws_frames_per_s, settings.ws_sockets_per_ip) == (20, 50)
    assert settings.cors_origins == ()
    assert settings.log_level == "INFO"


def test_settings_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@db/engine",
            "ENGINE_DATA_DIR": "/srv/engine",
            "REDIS_URL": "redis://cache:6379/0",
            "JWT_SECRET": "s3cret",
            "INTERNAL_API_TOKEN": "t0ken",
            "CORS_ORIGINS": "https://a.example, https://b.example,,",
            "LOG_LEVEL": "debug",
            "LEDGER_BATCH_MAX": "100",
            "LEDGER_BATCH_WINDOW_MS": "0",
            "LEDGER_MODE": "baseline",
            "WS_BIDS_PER_S": "3",
            "WS_FRAMES_PER_S": "7",
            "WS_SOCKETS_PER_IP": "500",
            "NODE_ID": "node-2.eu:8081",
            "ADVERTISE_URL": "http://10.0.0.2:8081/",
            "PARTITIONS": "128",
            "LEASE_TTL_MS": "5000",
            "OUTAGE_MIN_MS": "7000",
        }
    )

    assert settings.database_url == "postgresql://u@db/engine"
    assert settings.engine_data_dir == Path("/srv/engine")
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.log_level == "DEBUG"
    assert (settings.ledger_batch_max, settings.ledger_batch_window_ms) == (100, 0)
    assert settings.ledger_mode == "baseline"
    assert settings.ws_bids_per_s == 3
    assert (settings.ws_frames_per_s, settings.ws_sockets_per_ip) == (7, 500)
    assert (settings.node_id, settings.advertise_url) == ("node-2.eu:8081", "http://10.0.0.2:8081")
    assert (settings.partitions, settings.lease_ttl_ms) == (128, 5000)
    assert settings.outage_min_ms == 7000
    assert not settings.uses_dev_secrets


def test_empty_variable_counts_as_unset() -> None:
    assert Settings.from_env({"DATABASE_URL": "", "LEDGER_BATCH_MAX": " "}).database_url is None


def test_defaulted_secrets_are_labelled_and_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.config"):
        settings = Settings.from_env({})

    assert settings.jwt_secret == DEV_JWT_SECRET
    assert "dev-only" in settings.jwt_secret and "dev-only" in settings.internal_api_token
    assert settings.uses_dev_secrets
    assert "JWT_SECRET is not set" in caplog.text
    assert "INTERNAL_API_TOKEN is not set" in caplog.text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LEDGER_BATCH_MAX", "lots", "LEDGER_BATCH_MAX='lots' is not a whole number"),
        ("LEDGER_BATCH_MAX", "0", "LEDGER_BATCH_MAX=0 is too small"),
        ("LEDGER_BATCH_WINDOW_MS", "-1", "LEDGER_BATCH_WINDOW_MS=-1 is too small"),
        ("LEDGER_BATCH_WINDOW_MS", "2.5", "LEDGER_BATCH_WINDOW_MS='2.5' is not a whole number"),
        ("RATE_LIMIT_IP_PER_MIN", "-5", "RATE_LIMIT_IP_PER_MIN=-5 is too small"),
        ("RATE_LIMIT_USER_PER_MIN", "x", "RATE_LIMIT_USER_PER_MIN='x'"),
        ("WS_BIDS_PER_S", "-1", "WS_BIDS_PER_S=-1"),
        ("WS_FRAMES_PER_S", "0", "WS_FRAMES_PER_S=0 is too small"),
        ("WS_SOCKETS_PER_IP", "many", "WS_SOCKETS_PER_IP='many' is not a whole number"),
        ("MAX_BODY_BYTES", "64k", "MAX_BODY_BYTES='64k'"),
        ("LEDGER_MODE", "eventually", "LEDGER_MODE='eventually' is not one of"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='LOUD' is not one of"),
        ("NODE_ID", "two words", "NODE_ID='two words' is not a node id"),
        ("ADVERTISE_URL", "node-2:8081", "ADVERTISE_URL='node-2:8081' is not an http(s) URL"),
        ("PARTITIONS", "0", "PARTITIONS=0 is too small"),
        ("PARTITIONS", "5000", "PARTITIONS=5000 is too large"),
        ("LEASE_TTL_MS", "100", "LEASE_TTL_MS=100 is too small"),
    ],
)
def test_bad_setting_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert message in str(raised.value)
