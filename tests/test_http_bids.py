"""`POST /api/bids`: durable before 201, idempotent by client_bid_id, roles judged
by the engine's users row, and every refusal with its rule's code and status."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.http_helpers import HOUR_MS, PRICE, STEP, Api, now_ms, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


async def ledger_bids(api: Api, auction_id: uuid.UUID) -> list[Any]:
    return await api.pool.fetch(
        "SELECT id, user_id, amount, client_bid_id FROM bids WHERE auction_id = $1 ORDER BY seq",
        auction_id,
    )


async def test_accepted_bid_is_in_the_ledger_when_201_arrives(api: Api) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()

    reply = await api.bid(bidder, auction, PRICE, "first")

    assert reply.status == 201, reply.text
    bid = reply.body["bid"]
    assert set(bid) >= {
        "id",
        "auction_id",
        "amount_kobo",
        "at_ms",
        "end_time_ms",
        "extended",
        "client_bid_id",
    }
    assert (bid["auction_id"], bid["amount_kobo"], bid["client_bid_id"]) == (
        str(auction),
        PRICE,
        "first",
    )
    rows = await ledger_bids(api, auction)
    assert [(str(row["id"]), row["user_id"]) for row in rows] == [(bid["id"], bidder)]


async def test_same_client_bid_id_returns_the_first_bid_and_writes_one(api: Api) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()

    first = await api.bid(bidder, auction, PRICE, "retry-me")
    again = await api.bid(bidder, auction, PRICE + 7 * STEP, "retry-me")

    assert first.status == again.status == 201
    assert again.body == first.body
    assert len(await ledger_bids(api, auction)) == 1


async def test_bid_below_the_minimum_is_409_naming_the_minimum(api: Api) -> None:
    auction = await api.live_auction()
    reply = await api.bid(await api.bidder(), auction, PRICE - 1)
    assert (reply.status, reply.code) == (409, "below_minimum")
    assert "₦1,000,000.00" in reply.body["error"]["message"]


async def test_leader_bidding_again_is_409_already_leading(api: Api) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()
    assert (await api.bid(bidder, auction, PRICE)).status == 201
    reply = await api.bid(bidder, auction, PRICE + STEP)
    assert (reply.status, reply.code) == (409, "already_leading")


async def test_seller_cannot_bid_on_own_auction(api: Api) -> None:
    seller = await api.seller()
    await api.credit(seller, 10**10)
    auction = await api.live_auction(seller)
    reply = await api.bid(seller, auction, PRICE, role="dealer")
    assert (reply.status, reply.code) == (409, "own_auction")


async def test_bidder_without_approved_kyc_is_409_not_eligible(api: Api) -> None:
    auction = await api.live_auction()
    pending = await api.user(kyc_status="pending", balance_kobo=10**10)
    reply = await api.bid(pending, auction, PRICE)
    assert (reply.status, reply.code) == (409, "not_eligible")


async def test_bid_beyond_buying_power_is_409(api: Api) -> None:
    auction = await api.live_auction()
    poor = await api.user(balance_kobo=PRICE // 5 - 1)  # deposit of PRICE at 20 % is PRICE/5
    reply = await api.bid(poor, auction, PRICE)
    assert (reply.status, reply.code) == (409, "insufficient_buying_power")


async def test_bid_on_unknown_auction_is_409_unknown_auction(api: Api) -> None:
    reply = await api.bid(await api.bidder(), uuid.uuid4(), PRICE)
    assert (reply.status, reply.code) == (409, "unknown_auction")


async def test_bid_on_a_scheduled_auction_is_409_auction_not_live(api: Api) -> None:
    manager = await api.user(role="manager")
    start_ms = now_ms() + HOUR_MS
    created = await api.create_auction(
        manager, status="scheduled", start_time_ms=start_ms, end_time_ms=start_ms + HOUR_MS
    )
    auction = created.body["auction"]["id"]
    reply = await api.bid(await api.bidder(), uuid.UUID(auction), PRICE)
    assert (reply.status, reply.code) == (409, "auction_not_live")


async def test_bid_on_a_draft_is_409_auction_not_live(api: Api) -> None:
    created = await api.create_auction(await api.seller(), status="draft")
    auction = uuid.UUID(created.body["auction"]["id"])
    reply = await api.bid(await api.bidder(), auction, PRICE)
    assert (reply.status, reply.code) == (409, "auction_not_live")


async def test_bid_on_an_auction_that_ended_and_left_memory_is_409_auction_ended(
    api: Api,
) -> None:
    auction = await api.live_auction()
    await api.sequencer.close_auction(auction)
    api.sequencer.forget_auction(auction)
    bidder = await api.bidder()

    reply = await api.bid(bidder, auction, PRICE)
    assert (reply.status, reply.code) == (409, "auction_ended")
    await api.sequencer.rebuild()  # as after a restart: the answer comes from the ledger
    again = await api.bid(bidder, auction, PRICE)
    assert (again.status, again.code) == (409, "auction_ended")
    assert await ledger_bids(api, auction) == []


INVALID_AMOUNTS = [0, -5, 1.5, "100000000", 10**15, 10**30, True, None, [PRICE], {"k": 1}]


async def test_amount_that_is_not_a_whole_kobo_in_range_is_422_invalid_amount(api: Api) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()
    for amount in INVALID_AMOUNTS:
        reply = await api.bid(bidder, auction, amount)
        assert (reply.status, reply.code) == (422, "invalid_amount"), amount
    assert await ledger_bids(api, auction) == []


async def test_client_bid_id_must_be_1_to_64_printable_characters(api: Api) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()
    for client_bid_id in ["", "x" * 65, "tab\there"]:
        body = {"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": client_bid_id}
        reply = await api.as_user(bidder, "POST", "/api/bids", body)
        assert (reply.status, reply.code) == (422, "invalid_client_bid_id"), client_bid_id


async def test_client_bid_id_of_64_characters_is_taken(api: Api) -> None:
    auction = await api.live_auction()
    reply = await api.bid(await api.bidder(), auction, PRICE, "x" * 64)
    assert reply.status == 201, reply.text


async def test_bid_body_missing_client_bid_id_is_422(api: Api) -> None:
    auction = await api.live_auction()
    reply = await api.as_user(
        await api.bidder(), "POST", "/api/bids", {"auction_id": str(auction), "amount_kobo": PRICE}
    )
    assert (reply.status, reply.code) == (422, "invalid")
    assert "client_bid_id" in reply.body["error"]["message"]


async def test_malformed_auction_id_in_a_bid_is_422(api: Api) -> None:
    reply = await api.as_user(
        await api.bidder(),
        "POST",
        "/api/bids",
        {"auction_id": "not-a-uuid", "amount_kobo": PRICE, "client_bid_id": "a"},
    )
    assert (reply.status, reply.code) == (422, "invalid")


async def test_bidding_roles_may_bid(api: Api) -> None:
    auction = await api.live_auction()
    for n, role in enumerate(["user", "verified_seller", "dealer", "admin"]):
        bidder = await api.user(role=role, balance_kobo=10**10)
        reply = await api.bid(bidder, auction, PRICE + n * STEP, role=role)
        assert reply.status == 201, (role, reply.text)


async def test_roles_outside_the_matrix_get_403(api: Api) -> None:
    auction = await api.live_auction()
    for role in ["concierge", "manager"]:
        staff = await api.user(role=role, balance_kobo=10**10)
        reply = await api.bid(staff, auction, PRICE, role=role)
        assert (reply.status, reply.code) == (403, "forbidden"), role


async def test_role_claim_in_the_token_is_not_trusted(api: Api) -> None:
    auction = await api.live_auction()
    concierge = await api.user(role="concierge", balance_kobo=10**10)
    bidder = await api.bidder()

    claims_admin = await api.bid(concierge, auction, PRICE, role="admin")
    claims_concierge = await api.bid(bidder, auction, PRICE, role="concierge")

    assert (claims_admin.status, claims_admin.code) == (403, "forbidden")
    assert claims_concierge.status == 201, claims_concierge.text


async def test_bid_without_a_token_is_401(api: Api) -> None:
    auction = await api.live_auction()
    reply = await api.call(
        "POST",
        "/api/bids",
        json_body={"auction_id": str(auction), "amount_kobo": PRICE, "client_bid_id": "a"},
    )
    assert (reply.status, reply.code) == (401, "unauthenticated")


async def test_outbid_bidder_can_bid_again_and_history_keeps_order(api: Api) -> None:
    auction = await api.live_auction()
    first, second = await api.bidder(), await api.bidder()
    assert (await api.bid(first, auction, PRICE)).status == 201
    assert (await api.bid(second, auction, PRICE + STEP)).status == 201
    assert (await api.bid(first, auction, PRICE + 2 * STEP)).status == 201
    rows = await ledger_bids(api, auction)
    assert [row["user_id"] for row in rows] == [first, second, first]


async def test_bids_while_the_engine_stops_taking_them_are_503_unavailable(api: Api) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()
    await api.sequencer.close()  # as at shutdown: no new bids, the ledger flushed

    reply = await api.bid(bidder, auction, PRICE)

    assert (reply.status, reply.code) == (503, "unavailable")
    assert "try again" in reply.body["error"]["message"]
    assert await ledger_bids(api, auction) == []
