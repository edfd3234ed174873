"""Similar vehicles by pgvector cosine distance over attribute embeddings."""

from __future__ import annotations

import math
from typing import Any

from engine.embeddings import (
    DIMENSIONS,
    AttributeEmbedder,
    VehicleAttributes,
    similar_vehicles,
    store_embedding,
)
from tests.factories import create_user, create_vehicle

CAMRY = VehicleAttributes("Toyota", "Camry", "sedan", 2019, 1_500_000_000, 45_000, "clean", "black")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embedding_is_deterministic_and_sized() -> None:
    embedder = AttributeEmbedder()
    assert embedder.embed(CAMRY) == embedder.embed(CAMRY)
    assert len(embedder.embed(CAMRY)) == DIMENSIONS


def test_same_model_and_year_is_nearer_than_another_body_type() -> None:
    embedder = AttributeEmbedder()
    twin = VehicleAttributes("toyota", "camry", "Sedan", 2019, 1_600_000_000, 52_000, "clean")
    suv = VehicleAttributes("Toyota", "RAV4", "suv", 2019, 1_500_000_000, 45_000, "clean")
    base = embedder.embed(CAMRY)
    assert cosine(base, embedder.embed(twin)) > cosine(base, embedder.embed(suv))


async def test_similar_vehicles_ranks_a_hand_checked_fleet(pool: Any) -> None:
    dealer = await create_user(pool, role="dealer")
    fleet = {
        "target": CAMRY,
        "camry_2019": VehicleAttributes(
            "Toyota", "Camry", "sedan", 2019, 1_550_000_000, 60_000, "clean"
        ),
        "camry_2012": VehicleAttributes(
            "Toyota", "Camry", "sedan", 2012, 600_000_000, 150_000, "rough"
        ),
        "corolla": VehicleAttributes(
            "Toyota", "Corolla", "sedan", 2019, 1_200_000_000, 40_000, "clean"
        ),
        "accord": VehicleAttributes(
            "Honda", "Accord", "sedan", 2019, 1_500_000_000, 45_000, "clean"
        ),
        "highlander": VehicleAttributes(
            "Toyota", "Highlander", "suv", 2019, 2_500_000_000, 30_000, "excellent"
        ),
        "hilux": VehicleAttributes(
            "Toyota", "Hilux", "pickup", 2015, 1_800_000_000, 90_000, "clean"
        ),
    }
    ids = {}
    async with pool.acquire() as conn:
        for name, attrs in fleet.items():
            ids[name] = await create_vehicle(
                conn,
                listed_by=dealer,
                make=attrs.make,
                model=attrs.model,
                body_type=attrs.body_type,
                year=attrs.year,
                price_kobo=attrs.price_kobo,
            )
            await store_embedding(conn, ids[name], attrs)
        await conn.execute(
            "UPDATE vehicles SET status = 'in_auction' WHERE id = $1", ids["corolla"]
        )
        names = {v: k for k, v in ids.items()}
        ranked = [names[row["id"]] for row in await similar_vehicles(conn, ids["target"], limit=6)]
    assert ranked[:2] == ["camry_2019", "camry_2012"]
    assert "corolla" not in ranked  # not available
    # Same body type before same make: a Camry buyer sees the Accord before a pickup.
    assert ranked.index("accord") < ranked.index("highlander") < ranked.index("hilux")
    assert "target" not in ranked
