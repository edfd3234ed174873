"""`GET /api/me/auctions`: a seller's auctions over HTTP on the real database —
each one's summary, its reserve, what it was relisted as, and the if-bid's
state while the seller decides; nobody else's."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.http_helpers import HOUR_MS, PRICE, STEP
from tests.test_ifbid import FUNDS, RESERVE, World, make_world


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


async def mine(world: World, seller: uuid.UUID, query: str = "") -> Any:
    reply = await world.api.as_user(seller, "GET", f"/api/me/auctions{query}", role="dealer")
    assert reply.status == 200, reply.text
    return {item["auction"]["id"]: item for item in reply.body["auctions"]}


async def test_a_seller_sees_each_auction_and_the_if_bid_while_deciding(world: World) -> None:
    seller = await world.api.seller()
    bidder, rival = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    live = await world.api.live_auction(
        seller,
        auction_type="reserve",
        reserve_price_kobo=RESERVE,
        start_time_ms=world.clock.now_ms() - 1000,
        end_time_ms=world.clock.now_ms() + 3 * HOUR_MS,
    )
    for user, amount in ((bidder, PRICE), (rival, PRICE + STEP), (bidder, PRICE + 2 * STEP)):
        assert (await world.api.bid(user, live, amount)).status == 201
    deciding = await world.deciding([(bidder, PRICE)], seller=seller)
    assert (await world.answer(seller, deciding, "counter", RESERVE - STEP, "dealer")).status == 200
    countered_at = world.clock.now_ms()
    unsold = await world.deciding([], seller=seller)
    relisted = await world.api.as_user(
        seller,
        "POST",
        f"/api/auctions/{unsold}/relist",
        {"start_time_ms": world.clock.now_ms(), "end_time_ms": world.clock.now_ms() + HOUR_MS},
        role="dealer",
    )
    assert relisted.status == 201, relisted.text
    # A manager's auction of a vehicle the dealer listed is the dealer's to see too.
    manager = await world.api.user(role="manager")
    listed = await world.api.vehicle(seller)
    now = world.clock.now_ms()
    created = await world.api.create_auction(
        manager, listed, status="draft", start_time_ms=now, end_time_ms=now + HOUR_MS
    )
    assert created.status == 201, created.text
    elsewhere = await world.api.live_auction(  # another dealer's
        start_time_ms=now, end_time_ms=now + HOUR_MS
    )

    found = await mine(world, seller)

    assert set(found) == {
        str(live),
        str(deciding),
        str(unsold),
        relisted.body["auction"]["id"],
        created.body["auction"]["id"],
    }
    assert str(elsewhere) not in found
    open_one = found[str(live)]
    assert (
        open_one["auction"]["status"],
        open_one["auction"]["current_price_kobo"],
        open_one["auction"]["bid_count"],
        open_one["auction"]["bidder_count"],
        open_one["auction"]["reserve_met"],
        open_one["reserve_price_kobo"],
        open_one["offer"],
    ) == ("live", PRICE + 2 * STEP, 3, 2, False, RESERVE, None)
    offer = found[str(deciding)]["offer"]
    assert found[str(deciding)]["auction"]["status"] == "seller_decision"
    assert (offer["state"], offer["turn"], offer["high_bid_kobo"], offer["counters_left"]) == (
        "open",
        "bidder",
        PRICE,
        2,
    )
    assert offer["deadline_ms"] == countered_at + 4 * HOUR_MS
    assert [(o["by"], o["amount_kobo"]) for o in offer["offers"]] == [("seller", RESERVE - STEP)]
    assert found[str(unsold)]["relisted_as"] == relisted.body["auction"]["id"]
    assert found[str(unsold)]["auction"]["status"] == "relisted"
    # Latest end first.
    ends = [item["auction"]["end_time_ms"] for item in found.values()]
    assert ends == sorted(ends, reverse=True)


async def test_the_if_bid_stays_on_the_list_once_decided(world: World) -> None:
    seller = await world.api.seller()
    bidder = await world.api.bidder(FUNDS)
    deciding = await world.deciding([(bidder, PRICE)], seller=seller)
    assert (await world.answer(seller, deciding, "accept", role="dealer")).status == 200

    (item,) = (await mine(world, seller)).values()

    assert item["auction"]["status"] == "pending_settlement"
    assert (item["offer"]["state"], item["offer"]["price_kobo"], item["offer"]["turn"]) == (
        "accepted",
        PRICE,
        None,
    )


async def test_only_sellers_and_staff_have_a_list_and_its_limit_is_checked(world: World) -> None:
    seller = await world.api.seller()
    bidder = await world.api.bidder()
    for _ in range(3):
        await world.deciding([], seller=seller)

    limited = await mine(world, seller, "?limit=2")
    as_bidder = await world.api.as_user(bidder, "GET", "/api/me/auctions")
    anonymous = await world.api.call("GET", "/api/me/auctions")
    bad = await world.api.as_user(seller, "GET", "/api/me/auctions?limit=0", role="dealer")

    assert len(limited) == 2
    assert (as_bidder.status, as_bidder.code) == (403, "forbidden")
    assert (anonymous.status, anonymous.code) == (401, "unauthenticated")
    assert (bad.status, bad.code) == (422, "invalid_limit")
