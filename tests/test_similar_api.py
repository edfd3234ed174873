"""`GET /api/vehicles/{id}/similar`: available vehicles nearest by cosine distance."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.http_helpers import Api, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


async def fleet(api: Api) -> dict[str, uuid.UUID]:
    dealer = await api.seller()
    specs = {
        "camry": ("Toyota", "Camry", "sedan", 2019),
        "camry_2": ("Toyota", "Camry", "sedan", 2018),
        "camry_3": ("Toyota", "Camry", "sedan", 2020),
        "accord": ("Honda", "Accord", "sedan", 2019),
        "hilux": ("Toyota", "Hilux", "pickup", 2015),
        "f150": ("Ford", "F-150", "pickup", 2012),
    }
    return {
        name: await api.vehicle(dealer, make=make, model=model, body_type=body, year=year)
        for name, (make, model, body, year) in specs.items()
    }


async def similar(api: Api, vehicle: uuid.UUID, query: str = "") -> Any:
    return await api.call("GET", f"/api/vehicles/{vehicle}/similar{query}")


async def test_three_nearest_available_vehicles_by_default(api: Api) -> None:
    cars = await fleet(api)

    reply = await similar(api, cars["camry"])

    assert reply.status == 200, reply.text
    found = [uuid.UUID(v["id"]) for v in reply.body["vehicles"]]
    assert reply.body["vehicle_id"] == str(cars["camry"])
    assert len(found) == 3 and cars["camry"] not in found
    assert set(found[:2]) == {cars["camry_2"], cars["camry_3"]}
    distances = [v["distance"] for v in reply.body["vehicles"]]
    assert distances == sorted(distances)
    assert reply.body["vehicles"][0]["make"] == "Toyota"


async def test_limit_chooses_how_many(api: Api) -> None:
    cars = await fleet(api)
    one = await similar(api, cars["hilux"], "?limit=1")
    ten = await similar(api, cars["hilux"], "?limit=10")
    assert len(one.body["vehicles"]) == 1
    assert len(ten.body["vehicles"]) == 5  # everything else there is


@pytest.mark.parametrize("limit", ["0", "11", "abc", "-1", "2.5", ""])
async def test_a_limit_outside_1_to_10_is_422(api: Api, limit: str) -> None:
    cars = await fleet(api)
    reply = await similar(api, cars["camry"], f"?limit={limit}")
    assert (reply.status, reply.code) == (422, "invalid_limit")


async def test_vehicles_not_available_are_not_shown(api: Api) -> None:
    cars = await fleet(api)
    await api.pool.execute(
        "UPDATE vehicles SET status = 'in_auction' WHERE id = ANY($1::uuid[])",
        [cars["camry_2"], cars["camry_3"]],
    )
    reply = await similar(api, cars["camry"], "?limit=10")
    found = {uuid.UUID(v["id"]) for v in reply.body["vehicles"]}
    assert found == {cars["accord"], cars["hilux"], cars["f150"]}


async def test_an_unknown_vehicle_is_404(api: Api) -> None:
    for path in (f"/api/vehicles/{uuid.uuid4()}/similar", "/api/vehicles/not-a-uuid/similar"):
        reply = await api.call("GET", path)
        assert (reply.status, reply.code) == (404, "not_found")


async def test_a_vehicle_without_an_embedding_has_no_similar_ones(api: Api) -> None:
    cars = await fleet(api)
    await api.pool.execute("DELETE FROM vehicle_embeddings WHERE vehicle_id = $1", cars["f150"])
    reply = await similar(api, cars["f150"])
    assert (reply.status, reply.body["vehicles"]) == (200, [])
