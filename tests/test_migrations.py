"""The migration runner: applies sql/ in order, once, and refuses edited history."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from engine.errors import MigrationError
from engine.migrations import MIGRATIONS_DIR, load_migrations, migrate

ALL = [m.name for m in load_migrations()]
# The migrations before auctions remembered whether they were ever public.
BEFORE_PUBLICATION = [name for name in ALL if name < "0016"]


async def _recorded(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
        )
        return rows
    finally:
        await conn.close()


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of sql/ that a test may edit."""
    copy = tmp_path / "sql"
    shutil.copytree(MIGRATIONS_DIR, copy)
    return copy


def test_migration_files_load_in_version_order() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert ALL[0] == "0001_schema.sql"


async def test_applies_every_file_in_order_and_records_it(blank_database_url: str) -> None:
    applied = await migrate(blank_database_url)

    assert applied == ALL
    rows = await _recorded(blank_database_url)
    assert [row["name"] for row in rows] == ALL
    expected = {m.version: m.checksum for m in load_migrations()}
    assert {row["version"]: row["checksum"] for row in rows} == expected
    assert all(row["applied_at"] is not None for row in rows)


async def test_second_run_is_a_no_op(blank_database_url: str) -> None:
    await migrate(blank_database_url)
    before = await _recorded(blank_database_url)

    assert await migrate(blank_database_url) == []
    assert await _recorded(blank_database_url) == before


async def test_concurrent_runners_all_succeed_and_apply_each_file_once(
    blank_database_url: str,
) -> None:
    results = await asyncio.gather(*(migrate(blank_database_url) for _ in range(4)))

    assert sorted(name for result in results for name in result) == sorted(ALL)
    assert results.count(ALL) == 1
    assert [row["name"] for row in await _recorded(blank_database_url)] == ALL


async def test_changed_file_is_refused_before_anything_is_applied(
    blank_database_url: str, sql_copy: Path
) -> None:
    await migrate(blank_database_url, directory=sql_copy)
    edited = sql_copy / "0001_schema.sql"
    edited.write_text(edited.read_text() + "\n-- an edit after the fact\n")
    (sql_copy / "0900_new.sql").write_text("CREATE TABLE should_not_exist (id INT);")

    with pytest.raises(MigrationError, match=r"0001_schema\.sql changed after it was applied"):
        await migrate(blank_database_url, directory=sql_copy)
    assert [row["name"] for row in await _recorded(blank_database_url)] == ALL


async def test_new_file_is_applied_after_the_existing_ones(
    blank_database_url: str, sql_copy: Path
) -> None:
    await migrate(blank_database_url, directory=sql_copy)
    (sql_copy / "0900_add_column.sql").write_text("ALTER TABLE users ADD COLUMN nickname TEXT;")

    assert await migrate(blank_database_url, directory=sql_copy) == ["0900_add_column.sql"]
    assert [row["name"] for row in await _recorded(blank_database_url)] == [
        *ALL,
        "0900_add_column.sql",
    ]


async def test_failed_file_is_rolled_back_whole_and_not_recorded(
    blank_database_url: str, sql_copy: Path
) -> None:
    await migrate(blank_database_url, directory=sql_copy)
    (sql_copy / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id INT);\nSELECT no_such_function();\n"
    )

    with pytest.raises(MigrationError, match=r"0900_broken\.sql failed and was rolled back"):
        await migrate(blank_database_url, directory=sql_copy)
    conn = await asyncpg.connect(blank_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()
    assert len(await _recorded(blank_database_url)) == len(ALL)


async def test_applied_file_missing_from_disk_is_refused(
    blank_database_url: str, sql_copy: Path
) -> None:
    await migrate(blank_database_url, directory=sql_copy)
    (sql_copy / ALL[-1]).unlink()

    with pytest.raises(MigrationError, match="older than the database"):
        await migrate(blank_database_url, directory=sql_copy)


def test_badly_named_file_is_refused(sql_copy: Path) -> None:
    (sql_copy / "add_users.sql").write_text("SELECT 1;")

    with pytest.raises(MigrationError, match="not named like a migration"):
        load_migrations(sql_copy)


def test_two_files_with_one_version_are_refused(sql_copy: Path) -> None:
    (sql_copy / "0001_again.sql").write_text("SELECT 1;")

    with pytest.raises(MigrationError, match="share version 1"):
        load_migrations(sql_copy)


async def test_runs_on_a_given_connection_and_releases_its_lock(blank_database_url: str) -> None:
    conn = await asyncpg.connect(blank_database_url)
    try:
        assert await migrate(conn) == ALL
        held = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert held == 0
    finally:
        await conn.close()


async def test_refuses_a_connection_inside_a_transaction(blank_database_url: str) -> None:
    conn = await asyncpg.connect(blank_database_url)
    try:
        async with conn.transaction():
            with pytest.raises(MigrationError, match="outside any transaction"):
                await migrate(conn)
    finally:
        await conn.close()


def test_migrate_command_prints_what_it_applied(blank_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": blank_database_url, "JWT_SECRET": "x"}
    env["INTERNAL_API_TOKEN"] = "y"
    command = [sys.executable, "-m", "engine", "migrate"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    assert first.stdout.splitlines() == [f"applied {name}" for name in ALL]
    assert again.stdout.strip() == "nothing to apply: the database is up to date"


def test_migrate_command_reports_a_bad_setting(blank_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": blank_database_url, "LEDGER_BATCH_MAX": "-1"}
    command = [sys.executable, "-m", "engine", "migrate"]

    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    assert result.returncode == 2
    assert "LEDGER_BATCH_MAX=-1 is too small" in result.stderr


async def test_publication_backfill_keeps_public_auctions_public_and_drafts_private(
    blank_database_url: str, tmp_path: Path
) -> None:
    before = tmp_path / "sql"
    before.mkdir()
    for name in BEFORE_PUBLICATION:
        shutil.copy(MIGRATIONS_DIR / name, before / name)
    await migrate(blank_database_url, directory=before)
    # status, then the audit rows of the auction's history (action, its old status)
    history: dict[str, tuple[str, list[tuple[str, str]]]] = {
        "draft": ("draft", []),
        "rejected draft": ("cancelled", [("reject", "draft")]),
        "cancelled draft": ("cancelled", [("cancel", "draft")]),
        "cancelled when scheduled": ("cancelled", [("approve", "draft"), ("cancel", "scheduled")]),
        "cancelled when live": ("cancelled", [("cancel", "live")]),
        "voided": ("cancelled", [("void", "pending_settlement")]),
        "cancelled, no audit row": ("cancelled", []),
        **{status: (status, []) for status in ("scheduled", "live", "ended", "settled", "unsold")},
        "relisted": ("relisted", []),
    }
    conn = await asyncpg.connect(blank_database_url)
    try:
        staff = await conn.fetchval(
            "INSERT INTO users (email, role) VALUES ('m@example.test', 'manager') RETURNING id"
        )
        ids = {}
        for n, (case, (status, audits)) in enumerate(history.items()):
            vehicle = await conn.fetchval(
                "INSERT INTO vehicles (vin, year, make, model, listed_by)"
                " VALUES ($1, 2019, 'Toyota', 'Camry', $2) RETURNING id",
                f"JTD{n:014d}",
                staff,
            )
            ids[case] = await conn.fetchval(
                "INSERT INTO auctions (vehicle_id, created_by, status, start_price, start_time,"
                " end_time, created_at) VALUES ($1, $2, $3, 1000, now(), now() + interval '1 h',"
                " now() - $4 * interval '1 day') RETURNING id",
                vehicle,
                staff,
                status,
                n,
            )
            for action, old_status in audits:
                await conn.execute(
                    "INSERT INTO admin_audit_log (admin_id, action, target_type, target_id,"
                    " old_value)"
                    " VALUES ($1, $2, 'auction', $3, jsonb_build_object('status', $4::text))",
                    staff,
                    action,
                    ids[case],
                    old_status,
                )

        await migrate(blank_database_url)

        rows = await conn.fetch("SELECT id, created_at, published_at FROM auctions")
    finally:
        await conn.close()
    found = {row["id"]: row for row in rows}
    private = {"draft", "rejected draft", "cancelled draft"}
    for case, auction_id in ids.items():
        row = found[auction_id]
        expected = None if case in private else row["created_at"]
        assert row["published_at"] == expected, case
