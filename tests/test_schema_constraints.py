"""The schema refuses what the rules forbid, whatever code writes the row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from pgvector import Vector

SYSTEM_USER_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
CLOSED_STATUSES = ["settled", "unsold", "cancelled", "relisted"]
OPEN_STATUSES = ["draft", "scheduled", "live", "ended", "pending_settlement"]

_vin_serial = iter(range(10**6))


def new_vin() -> str:
    return f"JTD{next(_vin_serial):014d}"


async def add_user(conn: Any, wallet: str = "0", role: str = "user") -> uuid.UUID:
    user_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO users (email, role, wallet_balance, kyc_status) "
        "VALUES ($1, $2, $3, 'approved') RETURNING id",
        f"{uuid.uuid4().hex}@example.com",
        role,
        Decimal(wallet),
    )
    return user_id


async def add_vehicle(conn: Any, vin: str | None = None, **columns: Any) -> uuid.UUID:
    vehicle_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO vehicles (vin, year, make, model, body_type, listed_by) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        new_vin() if vin is None else vin,
        columns.get("year", 2018),
        columns.get("make", "Toyota"),
        columns.get("model", "Camry"),
        columns.get("body_type", "sedan"),
        columns.get("listed_by"),
    )
    return vehicle_id


async def add_auction(
    conn: Any, vehicle_id: uuid.UUID, created_by: uuid.UUID, status: str = "scheduled", **over: Any
) -> uuid.UUID:
    auction_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO auctions (vehicle_id, created_by, status, start_price, start_time, end_time,"
        " deposit_pct, bid_increment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        vehicle_id,
        created_by,
        status,
        over.get("start_price", Decimal("1500000.00")),
        over.get("start_time", START),
        over.get("end_time", START + timedelta(hours=1)),
        over.get("deposit_pct", Decimal("20.00")),
        over.get("bid_increment", Decimal("50000.00")),
    )
    return auction_id


async def add_bid(
    conn: Any, auction_id: uuid.UUID, user_id: uuid.UUID, seq: int, client_bid_id: str | None
) -> None:
    await conn.execute(
        "INSERT INTO bids (auction_id, user_id, amount, seq, client_bid_id) "
        "VALUES ($1, $2, $3, $4, $5)",
        auction_id,
        user_id,
        Decimal("1500000.00") + seq,
        seq,
        client_bid_id,
    )


@pytest.fixture
async def conn(pool: Any) -> Any:
    async with pool.acquire() as connection:
        yield connection


@pytest.fixture
async def dealer(conn: Any) -> uuid.UUID:
    return await add_user(conn, role="dealer")


# --- users and wallets ---------------------------------------------------------------


async def test_negative_wallet_balance_is_refused(conn: Any) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="users_wallet_balance_nonnegative"):
        await add_user(conn, wallet="-0.01")


async def test_debit_past_zero_is_refused(conn: Any) -> None:
    user_id = await add_user(conn, wallet="100.00")

    with pytest.raises(asyncpg.CheckViolationError, match="users_wallet_balance_nonnegative"):
        await conn.execute(
            "UPDATE users SET wallet_balance = wallet_balance - $2 WHERE id = $1",
            user_id,
            Decimal("100.01"),
        )


async def test_wallet_balance_defaults_to_zero_and_is_never_null(conn: Any) -> None:
    user_id = await conn.fetchval("INSERT INTO users (email) VALUES ('a@example.com') RETURNING id")
    assert await conn.fetchval("SELECT wallet_balance FROM users WHERE id = $1", user_id) == 0

    with pytest.raises(asyncpg.NotNullViolationError):
        await conn.execute("UPDATE users SET wallet_balance = NULL WHERE id = $1", user_id)


async def test_platform_system_user_exists(conn: Any) -> None:
    row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", SYSTEM_USER_ID)

    assert row["role"] == "system"
    assert row["kyc_status"] == "approved"
    assert row["email"] == "reserve-protection@system.dealer360.invalid"
    assert row["display_name"] == "Reserve protection"


async def test_unknown_role_is_refused(conn: Any) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="users_role_valid"):
        await add_user(conn, role="superuser")


# --- vehicles --------------------------------------------------------------------------


async def test_duplicate_vin_is_refused(conn: Any) -> None:
    await add_vehicle(conn, vin="JTDBR32E720012345")

    with pytest.raises(asyncpg.UniqueViolationError, match="vehicles_vin_key"):
        await add_vehicle(conn, vin="JTDBR32E720012345")


@pytest.mark.parametrize(
    "vin",
    [
        "jtdbr32e720012345",  # lower case: the API upper-cases on entry
        "JTDBR32E72001234",  # 16 characters
        "JTDBI32E720012345",  # I
        "JTDBO32E720012345",  # O
        "JTDBQ32E720012345",  # Q
        "JTDBR32E72001234-",
        "",
    ],
)
async def test_malformed_vin_is_refused(conn: Any, vin: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="vehicles_vin_format"):
        await add_vehicle(conn, vin=vin)


async def test_vin_longer_than_17_characters_is_refused(conn: Any) -> None:
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await add_vehicle(conn, vin="JTDBR32E7200123456")


async def test_vehicle_without_vin_is_refused(conn: Any) -> None:
    with pytest.raises(asyncpg.NotNullViolationError):
        await conn.execute("INSERT INTO vehicles (year) VALUES (2018)")


# --- auctions --------------------------------------------------------------------------


@pytest.mark.parametrize("first_status", OPEN_STATUSES)
async def test_second_open_auction_for_a_vehicle_is_refused(
    conn: Any, dealer: uuid.UUID, first_status: str
) -> None:
    vehicle_id = await add_vehicle(conn)
    await add_auction(conn, vehicle_id, dealer, status=first_status)

    with pytest.raises(asyncpg.UniqueViolationError, match="auctions_one_open_per_vehicle"):
        await add_auction(conn, vehicle_id, dealer, status="draft")


@pytest.mark.parametrize("closed_status", CLOSED_STATUSES)
async def test_new_auction_allowed_once_the_first_is_closed(
    conn: Any, dealer: uuid.UUID, closed_status: str
) -> None:
    vehicle_id = await add_vehicle(conn)
    first = await add_auction(conn, vehicle_id, dealer, status="live")
    await conn.execute("UPDATE auctions SET status = $2 WHERE id = $1", first, closed_status)

    await add_auction(conn, vehicle_id, dealer, status="scheduled")

    count = await conn.fetchval("SELECT count(*) FROM auctions WHERE vehicle_id = $1", vehicle_id)
    assert count == 2


async def test_reopening_a_closed_auction_beside_an_open_one_is_refused(
    conn: Any, dealer: uuid.UUID
) -> None:
    vehicle_id = await add_vehicle(conn)
    first = await add_auction(conn, vehicle_id, dealer, status="unsold")
    await add_auction(conn, vehicle_id, dealer, status="scheduled")

    with pytest.raises(asyncpg.UniqueViolationError, match="auctions_one_open_per_vehicle"):
        await conn.execute("UPDATE auctions SET status = 'live' WHERE id = $1", first)


@pytest.mark.parametrize(
    ("override", "constraint"),
    [
        ({"end_time": START}, "auctions_end_after_start"),
        ({"start_price": Decimal("0")}, "auctions_start_price_positive"),
        ({"bid_increment": Decimal("0")}, "auctions_bid_increment_positive"),
        ({"deposit_pct": Decimal("100.01")}, "auctions_deposit_pct_range"),
        ({"deposit_pct": Decimal("-1")}, "auctions_deposit_pct_range"),
    ],
)
async def test_auction_with_impossible_terms_is_refused(
    conn: Any, dealer: uuid.UUID, override: dict[str, Any], constraint: str
) -> None:
    vehicle_id = await add_vehicle(conn)

    with pytest.raises(asyncpg.CheckViolationError, match=constraint):
        await add_auction(conn, vehicle_id, dealer, **override)


async def test_auction_engine_defaults(conn: Any, dealer: uuid.UUID) -> None:
    auction_id = await add_auction(conn, await add_vehicle(conn), dealer)
    row = await conn.fetchrow("SELECT * FROM auctions WHERE id = $1", auction_id)

    assert row["anti_snipe_window_ms"] == 120_000
    assert row["anti_snipe_extension_ms"] == 120_000
    assert (row["epoch"], row["last_seq"], row["bid_count"], row["bidder_count"]) == (0, 0, 0, 0)
    assert row["current_price"] is None
    assert row["auction_type"] == "timed"


@pytest.mark.parametrize(
    ("statuses", "published"),
    [
        (["draft"], False),
        (["draft", "cancelled"], False),  # rejected before approval: never public
        (["scheduled"], True),
        (["draft", "scheduled"], True),
        (["draft", "scheduled", "live", "cancelled"], True),
        (["draft", "live"], True),
        (["draft", "scheduled", "live", "ended", "pending_settlement", "cancelled"], True),
    ],
)
async def test_an_auction_is_published_the_first_time_it_leaves_draft_and_stays_so(
    conn: Any, dealer: uuid.UUID, statuses: list[str], published: bool
) -> None:
    """Whatever code moves the row: the public reads rely on this fact alone."""
    auction_id = await add_auction(conn, await add_vehicle(conn), dealer, status=statuses[0])
    read = "SELECT published_at FROM auctions WHERE id = $1"
    first = None
    for status in statuses[1:]:
        first = first or await conn.fetchval(read, auction_id)
        await conn.execute("UPDATE auctions SET status = $2 WHERE id = $1", auction_id, status)
    first = first or await conn.fetchval(read, auction_id)

    assert (first is not None) == published
    assert await conn.fetchval(read, auction_id) == first


# --- bids ------------------------------------------------------------------------------


@pytest.fixture
async def auction(conn: Any, dealer: uuid.UUID) -> uuid.UUID:
    return await add_auction(conn, await add_vehicle(conn), dealer, status="live")


async def test_duplicate_client_bid_id_for_one_bidder_is_refused(
    conn: Any, auction: uuid.UUID
) -> None:
    bidder = await add_user(conn)
    await add_bid(conn, auction, bidder, seq=1, client_bid_id="b-1")

    with pytest.raises(asyncpg.UniqueViolationError, match="bids_client_bid_id_key"):
        await add_bid(conn, auction, bidder, seq=2, client_bid_id="b-1")


async def test_same_client_bid_id_from_another_bidder_is_allowed(
    conn: Any, auction: uuid.UUID
) -> None:
    await add_bid(conn, auction, await add_user(conn), seq=1, client_bid_id="b-1")
    await add_bid(conn, auction, await add_user(conn), seq=2, client_bid_id="b-1")


async def test_platform_bids_without_client_bid_id_never_collide(
    conn: Any, auction: uuid.UUID
) -> None:
    await add_bid(conn, auction, SYSTEM_USER_ID, seq=1, client_bid_id=None)
    await add_bid(conn, auction, SYSTEM_USER_ID, seq=2, client_bid_id=None)


async def test_one_bid_per_room_event_seq(conn: Any, auction: uuid.UUID) -> None:
    await add_bid(conn, auction, await add_user(conn), seq=7, client_bid_id="a")

    with pytest.raises(asyncpg.UniqueViolationError, match="bids_auction_seq_key"):
        await add_bid(conn, auction, await add_user(conn), seq=7, client_bid_id="b")


async def test_bid_amount_must_be_positive(conn: Any, auction: uuid.UUID) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="bids_amount_positive"):
        await conn.execute(
            "INSERT INTO bids (auction_id, user_id, amount, seq) VALUES ($1, $2, 0, 1)",
            auction,
            await add_user(conn),
        )


# --- transactions, outbox, audit log ---------------------------------------------------


async def add_credit(conn: Any, user_id: uuid.UUID, amount: str, key: str | None) -> None:
    await conn.execute(
        "INSERT INTO transactions (user_id, type, amount, status, idempotency_key) "
        "VALUES ($1, 'deposit', $2, 'completed', $3)",
        user_id,
        Decimal(amount),
        key,
    )


async def test_transaction_idempotency_key_is_unique(conn: Any) -> None:
    user_id = await add_user(conn)
    await add_credit(conn, user_id, "100.00", "paystack:ref-1")

    with pytest.raises(asyncpg.UniqueViolationError, match="transactions_idempotency_key_key"):
        await add_credit(conn, user_id, "100.00", "paystack:ref-1")


async def test_negative_transaction_amount_is_refused(conn: Any) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="transactions_amount_nonnegative"):
        await add_credit(conn, await add_user(conn), "-1.00", None)


async def test_notification_dedupe_key_is_unique(conn: Any) -> None:
    user_id = await add_user(conn)
    insert = (
        "INSERT INTO notifications (user_id, channel, kind, payload, dedupe_key) "
        "VALUES ($1, $2, 'auction_won', '{}', $3)"
    )
    await conn.execute(insert, user_id, "email", "won:a:u:email")

    with pytest.raises(asyncpg.UniqueViolationError, match="notifications_dedupe_key_key"):
        await conn.execute(insert, user_id, "email", "won:a:u:email")
    with pytest.raises(asyncpg.CheckViolationError, match="notifications_channel_valid"):
        await conn.execute(insert, user_id, "pigeon", "won:a:u:pigeon")


async def test_admin_audit_log_is_append_only(conn: Any) -> None:
    admin = await add_user(conn, role="admin")
    entry = await conn.fetchval(
        "INSERT INTO admin_audit_log (admin_id, action, reason) "
        "VALUES ($1, 'cancel', 'fraud') RETURNING id",
        admin,
    )

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await conn.execute("UPDATE admin_audit_log SET reason = 'none' WHERE id = $1", entry)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await conn.execute("DELETE FROM admin_audit_log WHERE id = $1", entry)


async def test_every_timestamp_carries_a_time_zone(conn: Any) -> None:
    naive = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
    )
    assert [tuple(row) for row in naive] == []


# --- pgvector --------------------------------------------------------------------------


async def test_vector_extension_is_installed(conn: Any) -> None:
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    assert version is not None


def axis(index: int, weight: float = 1.0) -> list[float]:
    vector = [0.0] * 32
    vector[index] = weight
    return vector


async def test_cosine_distance_search_over_vehicle_embeddings(conn: Any) -> None:
    near = await add_vehicle(conn)
    nearer = await add_vehicle(conn)
    far = await add_vehicle(conn)
    for vehicle_id, embedding in [
        (near, [0.9, 0.4, *[0.0] * 30]),
        (nearer, axis(0, 5.0)),  # same direction as the query, another length
        (far, axis(1)),
    ]:
        await conn.execute(
            "INSERT INTO vehicle_embeddings (vehicle_id, embedding) VALUES ($1, $2)",
            vehicle_id,
            embedding,
        )

    rows = await conn.fetch(
        "SELECT vehicle_id, embedding, embedding <=> $1 AS distance "
        "FROM vehicle_embeddings ORDER BY embedding <=> $1 LIMIT 2",
        axis(0),
    )

    assert [row["vehicle_id"] for row in rows] == [nearer, near]
    assert rows[0]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert isinstance(rows[0]["embedding"], Vector)
    assert rows[0]["embedding"].to_list() == axis(0, 5.0)


async def test_one_embedding_per_vehicle(conn: Any) -> None:
    vehicle_id = await add_vehicle(conn)
    insert = "INSERT INTO vehicle_embeddings (vehicle_id, embedding) VALUES ($1, $2)"
    await conn.execute(insert, vehicle_id, axis(0))

    with pytest.raises(asyncpg.UniqueViolationError, match="vehicle_embeddings_vehicle_id_key"):
        await conn.execute(insert, vehicle_id, axis(1))


async def test_embedding_of_the_wrong_dimension_is_refused(conn: Any) -> None:
    with pytest.raises(asyncpg.DataError, match="expected 32 dimensions"):
        await conn.execute(
            "INSERT INTO vehicle_embeddings (vehicle_id, embedding) VALUES ($1, $2)",
            await add_vehicle(conn),
            [1.0] * 1536,
        )


async def test_similarity_search_uses_the_hnsw_index(conn: Any) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetch(
            "EXPLAIN SELECT vehicle_id FROM vehicle_embeddings ORDER BY embedding <=> $1 LIMIT 3",
            axis(0),
        )
    assert "idx_vehicle_embeddings_hnsw" in "\n".join(row[0] for row in plan)
