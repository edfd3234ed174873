"""Vehicle embeddings for "similar vehicles": a deterministic encoding of a
vehicle's own attributes, searched by cosine distance with pgvector.

No model is downloaded and no external API is called. The encoding (32
dimensions, `DIMENSIONS`):

| dims  | feature | how |
| ----- | ------- | --- |
| 0–7   | make    | a stable hash (blake2b) of the lower-cased make picks a dim, weight 0.7 |
| 8–15  | model   | the same for "make/model", weight 1.2 |
| 16–23 | body    | a dim per known body type (`_BODY_TYPES`), else dim 23, weight 1.0 |
| 24    | year    | (year − 1990) / 40, clamped to 0..1, weight 0.6 |
| 25    | price   | log10(naira) / 9, weight 0.6 |
| 26    | mileage | log1p(km) / 14, weight 0.4 |
| 27    | condition | salvage 0, rough .25, clean .5, excellent .75, upgraded 1, weight 0.4 |
| 28–31 | colour  | a stable hash picks one dim, weight 0.15 |

Same make and model dominate the cosine; then the same body type (a buyer of
a Camry sedan is shown an Accord sedan before a Toyota pickup), then the make;
year, price, mileage and condition order vehicles within those. `Embedder` is the seam
where a text-embedding model can replace this (keep its dimension at 32, or
migrate the column).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from pgvector import Vector

DIMENSIONS = 32
_BODY_TYPES = ("sedan", "suv", "hatchback", "pickup", "coupe", "van", "wagon")
_CONDITIONS = {"salvage": 0.0, "rough": 0.25, "clean": 0.5, "excellent": 0.75, "upgraded": 1.0}


@dataclass(frozen=True, slots=True)
class VehicleAttributes:
    make: str
    model: str
    body_type: str | None
    year: int
    price_kobo: int | None
    mileage_km: int | None
    condition: str
    color: str | None = None

    def describe(self) -> str:
        parts = [f"{self.year} {self.make} {self.model}"]
        if self.body_type:
            parts.append(self.body_type)
        parts.append(self.condition)
        if self.mileage_km is not None:
            parts.append(f"{self.mileage_km} km")
        return ", ".join(parts)


class Embedder(Protocol):
    dimensions: int

    def embed(self, vehicle: VehicleAttributes) -> list[float]: ...


class AttributeEmbedder:
    """The default: the table in this module's docstring."""

    dimensions = DIMENSIONS

    def embed(self, vehicle: VehicleAttributes) -> list[float]:
        vector = [0.0] * DIMENSIONS
        vector[_bucket(vehicle.make, 8)] = 0.7
        vector[8 + _bucket(f"{vehicle.make}/{vehicle.model}", 8)] = 1.2
        body = (vehicle.body_type or "").strip().lower()
        vector[16 + (_BODY_TYPES.index(body) if body in _BODY_TYPES else 7)] = 1.0
        vector[24] = 0.6 * _clamp((vehicle.year - 1990) / 40)
        if vehicle.price_kobo:
            vector[25] = 0.6 * _clamp(math.log10(max(vehicle.price_kobo / 100, 1)) / 9)
        if vehicle.mileage_km is not None:
            vector[26] = 0.4 * _clamp(math.log1p(max(vehicle.mileage_km, 0)) / 14)
        vector[27] = 0.4 * _CONDITIONS.get(vehicle.condition, 0.5)
        if vehicle.color:
            vector[28 + _bucket(vehicle.color, 4)] = 0.15
        return vector


DEFAULT_EMBEDDER: Embedder = AttributeEmbedder()


def _bucket(text: str, size: int) -> int:
    digest = hashlib.blake2b(text.strip().lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % size


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


_STORE = """
INSERT INTO vehicle_embeddings (vehicle_id, embedding, embedded_text) VALUES ($1, $2, $3)
ON CONFLICT (vehicle_id) DO UPDATE SET embedding = EXCLUDED.embedding,
    embedded_text = EXCLUDED.embedded_text, created_at = now()
"""

_SIMILAR = """
SELECT v.id, v.make, v.model, v.year, v.body_type, v.price, v.condition,
       e.embedding <=> (SELECT embedding FROM vehicle_embeddings WHERE vehicle_id = $1)
         AS distance
FROM vehicle_embeddings e JOIN vehicles v ON v.id = e.vehicle_id
WHERE v.status = 'available' AND v.id <> $1
ORDER BY distance
LIMIT $2
"""


async def store_embedding(
    conn: asyncpg.Connection,
    vehicle_id: uuid.UUID,
    vehicle: VehicleAttributes,
    embedder: Embedder = DEFAULT_EMBEDDER,
) -> None:
    vector = Vector(embedder.embed(vehicle))
    await conn.execute(_STORE, vehicle_id, vector, vehicle.describe())


async def similar_vehicles(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: uuid.UUID, limit: int = 3
) -> list[asyncpg.Record]:
    """Up to `limit` available vehicles nearest to `vehicle_id` by cosine distance."""
    return list(await conn.fetch(_SIMILAR, vehicle_id, limit))
