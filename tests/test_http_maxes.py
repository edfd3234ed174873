"""Maximum bids and the caller's own pages over the public HTTP API (API.md):
`POST /api/auctions/{id}/max`, `GET /api/me/bids`, `GET /api/me/wallet`. The
refusals of a maximum, each changing nothing, are tests/test_hostile_maxes.py's."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.money import naira_to_kobo
from tests.http_helpers import HOUR_MS, PRICE, RICH, STEP, Api, now_ms, start, token_for


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


async def test_the_rest_snapshot_tells_a_signed_in_caller_where_they_stand(api: Api) -> None:
    alice, bob = await api.bidder(), await api.bidder()
    auction = await api.live_auction()
    assert (await api.bid(bob, auction, PRICE)).status == 201
    assert (await set_max(api, alice, auction, PRICE + 10 * STEP)).status == 201
    path = f"/api/auctions/{auction}"

    mine, theirs, guest = (
        await api.as_user(alice, "GET", path),
        await api.as_user(bob, "GET", path),
        await api.call("GET", path),
    )
    forged = await api.call("GET", path, token="not-a-token")
    platform = await api.service("GET", path)  # the service token: the platform, a guest

    assert mine.status == theirs.status == guest.status == 200
    assert mine.body["you"] == {
        "handle": "Bidder 2",
        "status": "winning",
        "max_kobo": PRICE + 10 * STEP,
        "available_kobo": RICH - deposit(PRICE + 10 * STEP),  # the maximum's deposit
    }
    assert theirs.body["you"] == {
        "handle": "Bidder 1",
        "status": "outbid",
        "max_kobo": None,  # alice's maximum is hers alone
        "available_kobo": RICH,
    }
    assert guest.body["you"] is None
    assert (platform.status, platform.body["you"]) == (200, None)
    assert forged.status == 401
    assert {k: v for k, v in mine.body.items() if k != "you"} == {
        k: v for k, v in guest.body.items() if k not in ("you", "server_time_ms")
    } | {"server_time_ms": mine.body["server_time_ms"]}


async def test_an_integral_max_written_with_an_exponent_is_that_integer(api: Api) -> None:
    alice = await api.bidder()
    auction = await api.live_auction()
    reply = await set_max(api, alice, auction, 1.5e8)
    assert (reply.status, reply.body["max"]["max_kobo"]) == (201, 150_000_000)


async def test_my_bids_lists_my_auctions_latest_activity_first_with_where_i_stand(
    api: Api,
) -> None:
    me, rival = await api.bidder(), await api.bidder()
    seller = await api.seller()
    outbid = await api.live_auction(seller)
    winning = await api.live_auction(seller)
    start_ms = now_ms() + HOUR_MS
    scheduled = await api.create_auction(
        seller, status="scheduled", start_time_ms=start_ms, end_time_ms=start_ms + HOUR_MS
    )
    prebid_only = uuid.UUID(scheduled.body["auction"]["id"])
    untouched = await api.live_auction(seller)
    assert (await api.bid(rival, untouched, PRICE)).status == 201

    assert (await api.bid(me, outbid, PRICE)).status == 201
    assert (await api.bid(rival, outbid, PRICE + STEP)).status == 201
    assert (await api.bid(rival, winning, PRICE)).status == 201
    assert (await set_max(api, me, winning, PRICE + 10 * STEP)).status == 201
    assert (await api.bid(rival, winning, PRICE + 3 * STEP)).status == 201  # my proxy answers
    assert (await set_max(api, me, prebid_only, PRICE + 2 * STEP)).status == 201

    reply = await api.as_user(me, "GET", "/api/me/bids")

    assert reply.status == 200, reply.text
    listed = reply.body["auctions"]
    assert [item["auction"]["id"] for item in listed] == [
        str(prebid_only),
        str(winning),
        str(outbid),
    ]
    you = [{k: v for k, v in item["you"].items() if k != "last_at_ms"} for item in listed]
    assert you == [
        {"handle": None, "status": None, "max_kobo": PRICE + 2 * STEP, "last_bid_kobo": None},
        {
            "handle": "Bidder 2",
            "status": "winning",
            "max_kobo": PRICE + 10 * STEP,
            "last_bid_kobo": PRICE + 4 * STEP,  # the proxy's answer is my bid
        },
        {"handle": "Bidder 1", "status": "outbid", "max_kobo": None, "last_bid_kobo": PRICE},
    ]
    times = [item["you"]["last_at_ms"] for item in listed]
    assert times == sorted(times, reverse=True)
    summary = listed[1]["auction"]
    assert (summary["status"], summary["current_price_kobo"]) == ("live", PRICE + 4 * STEP)
    assert summary["vehicle"]["make"] == "Toyota"

    first = await api.as_user(me, "GET", "/api/me/bids?limit=1")
    assert [item["auction"]["id"] for item in first.body["auctions"]] == [str(prebid_only)]
    nothing = await api.as_user(await api.bidder(), "GET", "/api/me/bids")
    assert (nothing.status, nothing.body) == (200, {"auctions": []})


async def test_my_bids_says_won_and_lost_once_decided(api: Api) -> None:
    me, rival = await api.bidder(), await api.bidder()
    manager = await api.user(role="manager")
    won, lost = await api.live_auction(), await api.live_auction()
    assert (await api.bid(me, won, PRICE)).status == 201
    assert (await api.bid(me, lost, PRICE)).status == 201
    assert (await api.bid(rival, lost, PRICE + STEP)).status == 201
    for auction in (won, lost):
        ended = await api.as_user(
            manager,
            "POST",
            f"/internal/admin/auctions/{auction}/force-end",
            {"reason": "test"},
            role="manager",
        )
        assert ended.status == 200, ended.text
    reply = await api.as_user(me, "GET", "/api/me/bids")
    statuses = {item["auction"]["id"]: item["you"]["status"] for item in reply.body["auctions"]}
    assert statuses == {str(won): "won", str(lost): "lost"}


@pytest.mark.parametrize("limit", ["0", "201", "ten", "-1", "1.5"])
async def test_my_bids_limit_is_a_whole_number_from_1_to_200(api: Api, limit: str) -> None:
    reply = await api.as_user(await api.bidder(), "GET", f"/api/me/bids?limit={limit}")
    assert (reply.status, reply.code) == (422, "invalid_limit")


async def test_my_wallet_is_the_internal_wallet_body_for_the_caller(api: Api) -> None:
    me = await api.bidder(balance_kobo=RICH)
    auction = await api.live_auction()
    assert (await set_max(api, me, auction, PRICE + 10 * STEP)).status == 201

    reply = await api.as_user(me, "GET", "/api/me/wallet")

    assert reply.status == 200, reply.text
    assert reply.body == await api.wallet(me)
    assert reply.body["exposure_kobo"] == deposit(PRICE + 10 * STEP)  # the max is exposed
    assert reply.body["available_kobo"] == RICH - deposit(PRICE + 10 * STEP)


@pytest.mark.parametrize("path", ["/api/me/bids", "/api/me/wallet"])
async def test_my_pages_need_a_valid_token(api: Api, path: str) -> None:
    assert (await api.call("GET", path)).status == 401
    expired = token_for(await api.bidder(), ttl_s=-10)
    assert (await api.call("GET", path, token=expired)).code == "unauthenticated"
    # Any role has a wallet and a list (an empty one for a dealer who never bid).
    dealer = await api.seller()
    assert (await api.as_user(dealer, "GET", path, role="dealer")).status == 200


async def test_my_pages_are_rate_limited_per_user(database_url: str, aiohttp_client: Any) -> None:
    api = await start(aiohttp_client, database_url, rate_limit_user_per_min=2)
    me = await api.bidder()
    statuses = [(await api.as_user(me, "GET", "/api/me/wallet")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
