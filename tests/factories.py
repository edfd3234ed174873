"""Rows for tests, written straight into the ledger (the HTTP API comes later)."""

from __future__ import annotations

import itertools
import random
import string
import uuid
from typing import Any

import asyncpg

from engine.clock import to_datetime
from engine.money import kobo_to_naira

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
_counter = itertools.count(1)


def random_vin(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return "".join(rng.choice(_VIN_CHARS) for _ in range(17))


async def create_user(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    balance_kobo: int = 0,
    role: str = "user",
    kyc_status: str = "approved",
    is_active: bool = True,
    display_name: str | None = None,
) -> uuid.UUID:
    user_id = uuid.uuid4()
    tag = "".join(random.choices(string.ascii_lowercase, k=8))
    await conn.execute(
        "INSERT INTO users (id, email, role, kyc_status, is_active, wallet_balance, display_name)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user_id,
        f"u{next(_counter)}-{tag}@example.test",
        role,
        kyc_status,
        is_active,
        kobo_to_naira(balance_kobo),
        display_name,
    )
    return user_id


async def create_vehicle(
    conn: asyncpg.Connection | asyncpg.Pool, *, listed_by: uuid.UUID, **fields: Any
) -> uuid.UUID:
    vehicle_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO vehicles (id, vin, year, make, model, body_type, listed_by, owner_id, price)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vehicle_id,
        fields.get("vin") or random_vin(),
        fields.get("year", 2019),
        fields.get("make", "Toyota"),
        fields.get("model", "Camry"),
        fields.get("body_type", "sedan"),
        listed_by,
        fields.get("owner_id"),
        kobo_to_naira(fields.get("price_kobo", 1_500_000_000)),
    )
    return vehicle_id


async def create_auction(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    seller: uuid.UUID,
    start_ms: int,
    end_ms: int,
    status: str = "live",
    start_price_kobo: int = 100_000_000,
    increment_kobo: int = 5_000_000,
    reserve_kobo: int | None = None,
    auction_type: str = "timed",
    deposit_pct: str = "20.00",
    window_ms: int = 120_000,
    extension_ms: int = 120_000,
    auction_id: uuid.UUID | None = None,
) -> uuid.UUID:
    vehicle_id = await create_vehicle(conn, listed_by=seller)
    auction_id = auction_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO auctions (id, vehicle_id, created_by, auction_type, status, start_price,"
        " reserve_price, bid_increment, deposit_pct, start_time, end_time, original_end,"
        " anti_snipe_window_ms, anti_snipe_extension_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::numeric, $10, $11, $11, $12, $13)",
        auction_id,
        vehicle_id,
        seller,
        auction_type,
        status,
        kobo_to_naira(start_price_kobo),
        kobo_to_naira(reserve_kobo) if reserve_kobo is not None else None,
        kobo_to_naira(increment_kobo),
        deposit_pct,
        to_datetime(start_ms),
        to_datetime(end_ms),
        window_ms,
        extension_ms,
    )
    return auction_id
