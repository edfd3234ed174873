"""`POST /internal/vehicles`: VINs as API.md defines them, duplicates named."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.http_helpers import Api, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


VIN = "JTDBR32E720123456"


def vehicle_body(listed_by: uuid.UUID, **fields: Any) -> dict[str, Any]:
    body = {
        "vin": VIN,
        "year": 2019,
        "make": "Toyota",
        "model": "Corolla",
        "body_type": "sedan",
        "mileage_km": 48_000,
        "color": "silver",
        "condition": "clean",
        "price_kobo": 1_250_000_000,
        "listed_by": str(listed_by),
        "location": "Lagos",
    }
    return {**body, **fields}


async def post(api: Api, body: dict[str, Any]) -> Any:
    return await api.service("POST", "/internal/vehicles", body)


async def test_vehicle_is_created_with_201_and_every_field(api: Api) -> None:
    dealer, owner = await api.seller(), await api.user()
    body = vehicle_body(dealer, owner_id=str(owner))

    reply = await post(api, body)

    assert reply.status == 201, reply.text
    vehicle = reply.body["vehicle"]
    assert {k: vehicle[k] for k in body} == body
    assert vehicle["status"] == "available"
    row = await api.pool.fetchrow(
        "SELECT vin, price FROM vehicles WHERE id = $1", uuid.UUID(vehicle["id"])
    )
    assert row["vin"] == VIN and str(row["price"]) == "12500000.00"


async def test_only_the_required_fields_are_needed(api: Api) -> None:
    body = {"vin": VIN, "year": 2010, "make": "Honda", "model": "Accord"}
    reply = await post(api, {**body, "listed_by": str(await api.seller())})
    assert reply.status == 201, reply.text
    assert reply.body["vehicle"]["condition"] == "clean"
    assert reply.body["vehicle"]["owner_id"] is None


async def test_lowercase_vin_is_upper_cased(api: Api) -> None:
    reply = await post(api, vehicle_body(await api.seller(), vin=VIN.lower()))
    assert reply.status == 201, reply.text
    assert reply.body["vehicle"]["vin"] == VIN


async def test_vin_with_i_o_or_q_is_422(api: Api) -> None:
    dealer = await api.seller()
    for letter in "IOQioq":
        reply = await post(api, vehicle_body(dealer, vin=VIN[:8] + letter + VIN[9:]))
        assert (reply.status, reply.code) == (422, "invalid_vin"), letter
        assert "I, O or Q" in reply.body["error"]["message"]


async def test_vin_not_of_17_allowed_characters_is_422(api: Api) -> None:
    dealer = await api.seller()
    for vin in [VIN[:16], VIN + "1", "", VIN[:16] + "-", VIN[:16] + "é", VIN[:16] + " 1"]:
        reply = await post(api, vehicle_body(dealer, vin=vin))
        assert (reply.status, reply.code) == (422, "invalid_vin"), vin
    assert await api.pool.fetchval("SELECT count(*) FROM vehicles") == 0


async def test_duplicate_vin_is_409_naming_the_existing_vehicle(api: Api) -> None:
    dealer = await api.seller()
    first = await post(api, vehicle_body(dealer))
    existing = first.body["vehicle"]["id"]

    reply = await post(api, vehicle_body(dealer, vin=VIN.lower(), year=2020))

    assert (reply.status, reply.code) == (409, "duplicate_vin")
    assert reply.body["error"]["vehicle_id"] == existing
    assert existing in reply.body["error"]["message"]
    assert await api.pool.fetchval("SELECT count(*) FROM vehicles") == 1


INVALID_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"year": 1885}, "invalid_year"),
    ({"year": 3000}, "invalid_year"),
    ({"year": 10**20}, "invalid_year"),
    ({"mileage_km": -1}, "invalid_mileage"),
    ({"mileage_km": 2**31}, "invalid_mileage"),
    ({"price_kobo": 10**15}, "invalid_price"),
    ({"price_kobo": -1}, "invalid_price"),
    ({"condition": "like new"}, "invalid_condition"),
    ({"make": ""}, "invalid"),
    ({"model": "x" * 101}, "invalid"),
    ({"location": "Lagos\u0000"}, "invalid"),
    ({"year": "2019"}, "invalid"),
    ({"year": 2019.5}, "invalid"),
    ({"listed_by": "nobody"}, "invalid"),
    ({"engine": "V6"}, "invalid"),
]


async def test_invalid_vehicle_fields_are_422(api: Api) -> None:
    dealer = await api.seller()
    for fields, code in INVALID_FIELDS:
        reply = await post(api, {**vehicle_body(dealer), **fields})
        assert (reply.status, reply.code) == (422, code), fields
    assert await api.pool.fetchval("SELECT count(*) FROM vehicles") == 0


async def test_unknown_lister_or_owner_is_422_unknown_user(api: Api) -> None:
    dealer = await api.seller()
    for fields in ({"listed_by": str(uuid.uuid4())}, {"owner_id": str(uuid.uuid4())}):
        reply = await post(api, {**vehicle_body(dealer), **fields})
        assert (reply.status, reply.code) == (422, "unknown_user")
