"""Relisting an unsold auction (RULES.md "Relisting"), over HTTP on the real
database: the new auction as a create makes it, the old one `relisted` in the
same transaction, who may, what is refused, and two relists at once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.http_helpers import HOUR_MS, PRICE, STEP, Reply, token_for
from tests.test_ifbid import FUNDS, RESERVE, World, make_world


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


def times(world: World, **terms: Any) -> dict[str, Any]:
    start = world.clock.now_ms() + HOUR_MS
    return {"start_time_ms": start, "end_time_ms": start + 2 * HOUR_MS, **terms}


async def relist(
    world: World, user: uuid.UUID, auction: uuid.UUID, body: Any, role: str = "dealer"
) -> Reply:
    return await world.api.as_user(user, "POST", f"/api/auctions/{auction}/relist", body, role=role)


async def status(world: World, auction: uuid.UUID) -> Any:
    return await world.pool.fetchrow(
        "SELECT a.status, a.relisted_as, v.status AS vehicle FROM auctions a"
        " JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1",
        auction,
    )


async def test_a_dealer_relists_an_unsold_auction_as_a_draft_on_the_same_terms(
    world: World,
) -> None:
    unsold = await world.deciding([], bid_increment_kobo=2 * STEP, if_bid_window_ms=HOUR_MS)
    seller = await world.seller_of(unsold)
    body = times(world)

    reply = await relist(world, seller, unsold, body)

    assert reply.status == 201, reply.text
    new = reply.body["auction"]
    assert (new["status"], new["created_by"], new["start_time_ms"], new["end_time_ms"]) == (
        "draft",
        str(seller),
        body["start_time_ms"],
        body["end_time_ms"],
    )
    assert (new["auction_type"], new["reserve_price_kobo"], new["bid_increment_kobo"]) == (
        "reserve",
        RESERVE,
        2 * STEP,
    )
    assert (new["start_price_kobo"], new["if_bid_window_ms"]) == (PRICE, HOUR_MS)
    old = await status(world, unsold)
    assert (old["status"], old["relisted_as"], old["vehicle"]) == (
        "relisted",
        uuid.UUID(new["id"]),
        "available",  # a draft: in auction once approved
    )
    vehicle = await world.pool.fetchval("SELECT vehicle_id FROM auctions WHERE id = $1", unsold)
    assert new["vehicle_id"] == str(vehicle)
    (audit,) = await world.pool.fetch(
        "SELECT * FROM admin_audit_log WHERE target_id = $1 AND action = 'relist'", unsold
    )
    assert audit["admin_id"] == seller


async def test_a_manager_relists_scheduled_with_new_terms(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    manager = await world.api.user(role="manager")
    unsold = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(unsold)
    assert (await world.answer(seller, unsold, "decline", role="dealer")).status == 200
    body = times(world, auction_type="timed", reserve_price_kobo=None, start_price_kobo=PRICE // 2)

    reply = await relist(world, manager, unsold, body, role="manager")

    assert reply.status == 201, reply.text
    new = reply.body["auction"]
    assert (new["status"], new["created_by"], new["auction_type"]) == (
        "scheduled",
        str(seller),
        "timed",
    )
    assert (new["reserve_price_kobo"], new["start_price_kobo"]) == (None, PRICE // 2)
    assert (await status(world, unsold))["vehicle"] == "in_auction"
    held = world.api.sequencer.held(uuid.UUID(new["id"]))
    assert held is not None and held.status == "scheduled"  # in the core, to open on time


@pytest.mark.parametrize("state", ["live", "seller_decision", "pending_settlement", "relisted"])
async def test_only_an_unsold_auction_can_be_relisted(world: World, state: str) -> None:
    bidder = await world.api.bidder(FUNDS)
    if state == "live":
        auction = await world.api.live_auction()
    elif state == "seller_decision":
        auction = await world.deciding([(bidder, PRICE)])
    elif state == "pending_settlement":
        auction = await world.deciding([(bidder, RESERVE)])
    else:
        auction = await world.deciding([])
        seller = await world.seller_of(auction)
        assert (await relist(world, seller, auction, times(world))).status == 201
    seller = await world.seller_of(auction)
    before = await world.pool.fetchval("SELECT count(*) FROM auctions")

    reply = await relist(world, seller, auction, times(world))

    assert (reply.status, reply.code) == (409, "not_unsold")
    assert await world.pool.fetchval("SELECT count(*) FROM auctions") == before
    assert (await status(world, auction))["status"] == state


async def test_refused_relists_change_nothing(world: World) -> None:
    unsold = await world.deciding([])
    seller = await world.seller_of(unsold)
    stranger = await world.api.seller()
    path = f"/api/auctions/{unsold}/relist"
    count = "SELECT count(*) FROM auctions"
    before = (await world.pool.fetchval(count), await status(world, unsold))
    past = world.clock.now_ms() - 2 * HOUR_MS

    cases = {
        "stranger": await relist(world, stranger, unsold, times(world)),
        "unknown": await relist(world, seller, uuid.uuid4(), times(world)),
        "no token": await world.api.call("POST", path, json_body=times(world)),
        "not json": await world.api.call(
            "POST", path, token=token_for(seller, "dealer"), data="{start"
        ),
        "no times": await relist(world, seller, unsold, {"start_price_kobo": PRICE}),
        "past": await relist(
            world, seller, unsold, {"start_time_ms": past, "end_time_ms": past + 1}
        ),
        "bad price": await relist(world, seller, unsold, times(world, start_price_kobo=0)),
        "no reserve for a reserve auction": await relist(
            world, seller, unsold, times(world, reserve_price_kobo=None)
        ),
        "unknown field": await relist(world, seller, unsold, times(world, colour="red")),
        "dealer schedules": await relist(world, seller, unsold, times(world, status="scheduled")),
    }

    assert {name: (r.status, r.code) for name, r in cases.items()} == {
        "stranger": (403, "forbidden"),
        "unknown": (404, "not_found"),
        "no token": (401, "unauthenticated"),
        "not json": (400, "malformed"),
        "no times": (422, "invalid"),
        "past": (422, "invalid_times"),
        "bad price": (422, "invalid_price"),
        "no reserve for a reserve auction": (422, "reserve_required"),
        "unknown field": (422, "invalid"),
        "dealer schedules": (403, "approval_required"),
    }
    assert (await world.pool.fetchval(count), await status(world, unsold)) == before


async def test_of_two_relists_at_once_one_wins(world: World) -> None:
    unsold = await world.deciding([])
    seller = await world.seller_of(unsold)
    manager = await world.api.user(role="manager")

    replies = await asyncio.gather(
        relist(world, seller, unsold, times(world)),
        relist(world, manager, unsold, times(world), role="manager"),
    )

    assert sorted((r.status, r.code) for r in replies) == [(201, None), (409, "not_unsold")]
    (winner,) = [r for r in replies if r.status == 201]
    vehicle = await world.pool.fetchval("SELECT vehicle_id FROM auctions WHERE id = $1", unsold)
    rows = await world.pool.fetch(
        "SELECT id FROM auctions WHERE vehicle_id = $1 AND id <> $2", vehicle, unsold
    )
    assert [str(row["id"]) for row in rows] == [winner.body["auction"]["id"]]
    assert (await status(world, unsold))["relisted_as"] == uuid.UUID(winner.body["auction"]["id"])
