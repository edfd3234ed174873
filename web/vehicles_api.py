"""Vehicles on the public API: similar available vehicles, nearest first by cosine
distance over their embeddings (engine/embeddings.py) — the ones shown to a
bidder who lost."""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from engine.embeddings import similar_vehicles
from engine.money import naira_to_kobo
from web.errors import ApiError
from web.keys import DATABASE
from web.messages import json_response, path_uuid

DEFAULT_LIMIT = 3
MAX_LIMIT = 10

_VEHICLE = """
SELECT v.id, EXISTS (SELECT 1 FROM vehicle_embeddings e WHERE e.vehicle_id = v.id) AS embedded
FROM vehicles v WHERE v.id = $1
"""


class SimilarVehicle(msgspec.Struct, frozen=True):
    id: uuid.UUID
    make: str | None
    model: str | None
    year: int
    body_type: str | None
    condition: str
    price_kobo: int | None
    distance: float  # cosine distance: 0 is the same direction


class SimilarVehicles(msgspec.Struct, frozen=True):
    vehicle_id: uuid.UUID
    vehicles: list[SimilarVehicle]


async def get_similar(request: web.Request) -> web.Response:
    vehicle_id = path_uuid(request)
    limit = _limit(request.query.get("limit"))
    pool = request.app[DATABASE].pool
    vehicle = await pool.fetchrow(_VEHICLE, vehicle_id)
    if vehicle is None:
        raise ApiError(404, "not_found", "No vehicle has this id.")
    rows = await similar_vehicles(pool, vehicle_id, limit) if vehicle["embedded"] else []
    found = [
        SimilarVehicle(
            id=row["id"],
            make=row["make"],
            model=row["model"],
            year=row["year"],
            body_type=row["body_type"],
            condition=row["condition"],
            price_kobo=naira_to_kobo(row["price"]) if row["price"] is not None else None,
            distance=float(row["distance"]),
        )
        for row in rows
    ]
    return json_response(SimilarVehicles(vehicle_id, found))


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(
            422, "invalid_limit", f"`limit` must be a whole number from 1 to {MAX_LIMIT}."
        )
    return int(raw)


def install(app: web.Application) -> None:
    app.router.add_get("/api/vehicles/{id}/similar", get_similar)
