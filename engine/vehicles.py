"""Vehicles the remaining platform lists for auction, checked on entry.

A VIN is 17 characters from A–H, J–N, P, R–Z and 0–9 (no I, O, Q), upper-cased
on entry; no check digit is required (API.md). The database's unique VIN is
the final word on duplicates; the refusal names the vehicle that has it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec

from engine.clock import to_ms
from engine.embeddings import VehicleAttributes, store_embedding
from engine.errors import DuplicateVin, Refused
from engine.money import MAX_KOBO, kobo_to_naira, naira_to_kobo
from engine.text import check_text

# ---- what this service takes and gives ----------------------------------------


class VehicleCreate(msgspec.Struct, forbid_unknown_fields=True):
    vin: str
    year: int
    make: str
    model: str
    listed_by: uuid.UUID
    body_type: str | None = None
    mileage_km: int | None = None
    color: str | None = None
    condition: str = "clean"
    price_kobo: int | None = None
    owner_id: uuid.UUID | None = None
    location: str | None = None


class VehicleBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    vin: str
    year: int
    make: str | None
    model: str | None
    body_type: str | None
    mileage_km: int | None
    color: str | None
    condition: str
    price_kobo: int | None
    listed_by: uuid.UUID | None
    owner_id: uuid.UUID | None
    location: str | None
    status: str
    created_at_ms: int


VIN_LENGTH = 17
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
CONDITIONS = ("salvage", "rough", "clean", "excellent", "upgraded")
FIRST_CAR_YEAR = 1886
MAX_MILEAGE_KM = 2**31 - 1  # vehicles.mileage_km is an INT
#: The free-text fields and their longest (vehicles' VARCHAR columns).
TEXT_LIMITS = {"make": 50, "model": 100, "body_type": 30, "color": 30, "location": 100}

_INSERT = """
INSERT INTO vehicles (vin, year, make, model, body_type, mileage_km, color, condition, price,
                      listed_by, owner_id, location)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING id, vin, year, make, model, body_type, mileage_km, color, condition, price,
          listed_by, owner_id, location, status, created_at
"""
_BY_VIN = "SELECT id FROM vehicles WHERE vin = $1"
_KNOWN_USERS = "SELECT id FROM users WHERE id = ANY($1::uuid[])"


def normalize_vin(raw: str) -> str:
    """The VIN upper-cased, or a refusal saying what is wrong with it."""
    vin = raw.strip()
    # Before upper-casing: Unicode maps some letters (ß, ſ, ﬀ) onto ASCII ones.
    if not vin.isascii():
        raise _bad_vin("A VIN uses only the letters A–H, J–N, P, R–Z and the digits 0–9.")
    vin = vin.upper()
    if len(vin) != VIN_LENGTH:
        raise _bad_vin(f"A VIN has 17 characters; this one has {len(vin)}.")
    if forbidden := sorted(set(vin) & set("IOQ")):
        letters = ", ".join(forbidden)
        raise _bad_vin(f"A VIN never contains the letters I, O or Q (found {letters}).")
    if not _VIN.fullmatch(vin):
        raise _bad_vin("A VIN uses only the letters A–H, J–N, P, R–Z and the digits 0–9.")
    return vin


def _bad_vin(message: str) -> Refused:
    return Refused("invalid", "invalid_vin", message)


async def create_vehicle(pool: asyncpg.Pool, spec: VehicleCreate, now_ms: int) -> VehicleBody:
    """Check and insert the vehicle and its embedding in one transaction."""
    vin = normalize_vin(spec.vin)
    values = _checked(spec, vin, now_ms)
    async with pool.acquire() as conn:
        if (existing := await conn.fetchval(_BY_VIN, vin)) is not None:
            raise DuplicateVin(vin, existing)
        await _require_users(conn, spec.listed_by, spec.owner_id)
        try:
            async with conn.transaction():
                row = await conn.fetchrow(_INSERT, *values)
                vehicle = vehicle_body(row)
                await embed_vehicle(conn, vehicle)
        except asyncpg.UniqueViolationError as err:
            if err.constraint_name != "vehicles_vin_key":
                raise
            raise DuplicateVin(vin, await conn.fetchval(_BY_VIN, vin)) from err
        except asyncpg.ForeignKeyViolationError as err:  # a user deleted meanwhile
            raise _unknown_user() from err
    return vehicle


async def embed_vehicle(conn: asyncpg.Connection, vehicle: VehicleBody) -> None:
    """The vehicle's row in `vehicle_embeddings` (similar vehicles for the bidders
    who lose an auction), in the vehicle's own transaction."""
    attributes = VehicleAttributes(
        make=vehicle.make or "",
        model=vehicle.model or "",
        body_type=vehicle.body_type,
        year=vehicle.year,
        price_kobo=vehicle.price_kobo,
        mileage_km=vehicle.mileage_km,
        condition=vehicle.condition,
        color=vehicle.color,
    )
    await store_embedding(conn, vehicle.id, attributes)


def latest_year(now_ms: int) -> int:
    """The latest model year a vehicle may have now: next year's models are on sale."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).year + 1


def _checked(spec: VehicleCreate, vin: str, now_ms: int) -> tuple[object, ...]:
    latest = latest_year(now_ms)
    if not FIRST_CAR_YEAR <= spec.year <= latest:
        raise Refused(
            "invalid", "invalid_year", f"`year` must be from {FIRST_CAR_YEAR} to {latest}."
        )
    if spec.mileage_km is not None and not 0 <= spec.mileage_km <= MAX_MILEAGE_KM:
        raise Refused("invalid", "invalid_mileage", "`mileage_km` must be a whole number ≥ 0.")
    if spec.price_kobo is not None and not 0 <= spec.price_kobo <= MAX_KOBO:
        raise Refused(
            "invalid", "invalid_price", "`price_kobo` must be ≥ 0 and below ₦10 trillion."
        )
    if spec.condition not in CONDITIONS:
        raise Refused(
            "invalid",
            "invalid_condition",
            f"`condition` must be one of: {', '.join(CONDITIONS)}.",
        )
    make = check_text("make", spec.make, TEXT_LIMITS["make"])
    model = check_text("model", spec.model, TEXT_LIMITS["model"])
    if not make or not model:
        raise Refused("invalid", "invalid", "`make` and `model` must not be empty.")
    return (
        vin,
        spec.year,
        make,
        model,
        check_text("body_type", spec.body_type, TEXT_LIMITS["body_type"]),
        spec.mileage_km,
        check_text("color", spec.color, TEXT_LIMITS["color"]),
        spec.condition,
        kobo_to_naira(spec.price_kobo) if spec.price_kobo is not None else None,
        spec.listed_by,
        spec.owner_id,
        check_text("location", spec.location, TEXT_LIMITS["location"]),
    )


async def _require_users(conn: asyncpg.Connection, *user_ids: uuid.UUID | None) -> None:
    wanted = {user_id for user_id in user_ids if user_id is not None}
    known = {row["id"] for row in await conn.fetch(_KNOWN_USERS, list(wanted))}
    if wanted - known:
        raise _unknown_user()


def _unknown_user() -> Refused:
    return Refused(
        "invalid",
        "unknown_user",
        "`listed_by` and `owner_id` must be users the engine knows; create them first.",
    )


def vehicle_body(row: asyncpg.Record) -> VehicleBody:
    return VehicleBody(
        id=row["id"],
        vin=row["vin"],
        year=row["year"],
        make=row["make"],
        model=row["model"],
        body_type=row["body_type"],
        mileage_km=row["mileage_km"],
        color=row["color"],
        condition=row["condition"],
        price_kobo=naira_to_kobo(row["price"]) if row["price"] is not None else None,
        listed_by=row["listed_by"],
        owner_id=row["owner_id"],
        location=row["location"],
        status=row["status"],
        created_at_ms=to_ms(row["created_at"]),
    )
