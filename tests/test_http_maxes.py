"""Maximum bids over the public HTTP API (API.md): `POST /api/auctions/{id}/max`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.money import naira_to_kobo
from tests.http_helpers import PRICE, STEP, Api, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


async def set_max(
    api: Api, user: uuid.UUID, auction: uuid.UUID, max_kobo: Any, client_bid_id: str = ""
) -> Any:
    body = {"max_kobo": max_kobo, "client_bid_id": client_bid_id or uuid.uuid4().hex}
    return await api.as_user(user, "POST", f"/api/auctions/{auction}/max", body)


def deposit(amount: int) -> int:
    return -(-amount // 5)  # 20 %, rounded up


async def test_a_max_is_201_once_it_and_its_rows_are_durable(api: Api) -> None:
    alice, bob = await api.bidder(), await api.bidder()
    auction = await api.live_auction()
    assert (await api.bid(bob, auction, PRICE)).status == 201

    reply = await set_max(api, alice, auction, PRICE + 10 * STEP, "alice-max")

    assert reply.status == 201, reply.text
    assert reply.body == {
        "max": {"max_kobo": PRICE + 10 * STEP, "leading": True, "price_kobo": PRICE + STEP}
    }
    rows = await api.pool.fetch(
        "SELECT user_id, amount, is_proxy FROM bids WHERE auction_id = $1 ORDER BY seq", auction
    )
    assert [(r["user_id"], naira_to_kobo(r["amount"]), r["is_proxy"]) for r in rows] == [
        (bob, PRICE, False),
        (alice, PRICE + STEP, True),
    ]
    stored = await api.pool.fetchrow("SELECT max_amount, client_bid_id FROM max_bids")
    assert (naira_to_kobo(stored["max_amount"]), stored["client_bid_id"]) == (
        PRICE + 10 * STEP,
        "alice-max",
    )
    again = await set_max(api, alice, auction, PRICE + 20 * STEP, "alice-max")
    assert (again.status, again.body) == (201, reply.body)  # the first outcome
    assert await api.pool.fetchval("SELECT count(*) FROM max_bids") == 1


async def test_an_integral_max_written_with_an_exponent_is_that_integer(api: Api) -> None:
    alice = await api.bidder()
    auction = await api.live_auction()
    reply = await set_max(api, alice, auction, 1.5e8)
    assert (reply.status, reply.body["max"]["max_kobo"]) == (201, 150_000_000)
