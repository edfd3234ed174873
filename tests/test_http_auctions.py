"""Auctions over HTTP: creating them (internal and public), listing them, their
snapshot (the REST fallback of the room), and their full bid history."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.roles import PLATFORM_USER_ID
from tests.http_helpers import HOUR_MS, PRICE, STEP, Api, now_ms, start


@pytest.fixture
async def api(database_url: str, aiohttp_client: Any) -> Api:
    return await start(aiohttp_client, database_url)


SNAPSHOT_AUCTION_FIELDS = {
    "id",
    "status",
    "current_price_kobo",
    "min_next_bid_kobo",
    "bid_increment_kobo",
    "start_time_ms",
    "end_time_ms",
    "bid_count",
    "bidder_count",
    "reserve_met",
}


def later(**fields: Any) -> dict[str, Any]:
    """Times of an auction that starts in an hour."""
    start_ms = now_ms() + HOUR_MS
    return {"start_time_ms": start_ms, "end_time_ms": start_ms + HOUR_MS, **fields}


# ---- POST /internal/auctions --------------------------------------------------------


async def test_internal_create_answers_201_with_every_field(api: Api) -> None:
    manager = await api.user(role="manager")
    vehicle = await api.vehicle(manager)
    body = api.auction_body(
        vehicle,
        created_by=str(manager),
        status="scheduled",
        auction_type="reserve",
        reserve_price_kobo=3 * PRICE,
        deposit_pct_bp=1500,
        anti_snipe_window_ms=60_000,
        anti_snipe_extension_ms=30_000,
        **later(),
    )

    reply = await api.service("POST", "/internal/auctions", body)

    assert reply.status == 201, reply.text
    auction = reply.body["auction"]
    assert set(auction) >= SNAPSHOT_AUCTION_FIELDS
    assert {k: auction[k] for k in body} == body
    assert auction["current_price_kobo"] is None
    assert auction["min_next_bid_kobo"] == PRICE
    assert (auction["bid_count"], auction["bidder_count"], auction["winner_id"]) == (0, 0, None)
    assert auction["reserve_met"] is False


async def test_defaults_are_the_documented_ones(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    start_ms = now_ms() + HOUR_MS
    reply = await api.service(
        "POST",
        "/internal/auctions",
        {
            "vehicle_id": str(vehicle),
            "created_by": str(dealer),
            "start_time_ms": start_ms,
            "end_time_ms": start_ms + HOUR_MS,
            "start_price_kobo": PRICE,
        },
    )
    assert reply.status == 201, reply.text
    auction = reply.body["auction"]
    assert (auction["status"], auction["auction_type"]) == ("draft", "timed")
    assert (auction["bid_increment_kobo"], auction["deposit_pct_bp"]) == (5_000_000, 2000)
    assert (auction["anti_snipe_window_ms"], auction["anti_snipe_extension_ms"]) == (
        120_000,
        120_000,
    )
    assert auction["reserve_price_kobo"] is None and auction["reserve_met"] is None


async def test_scheduled_auction_marks_the_vehicle_and_is_held_by_the_core(api: Api) -> None:
    manager = await api.user(role="manager")
    vehicle = await api.vehicle(manager)
    reply = await api.create_auction(manager, vehicle, status="scheduled", **later())
    auction_id = uuid.UUID(reply.body["auction"]["id"])

    status = await api.pool.fetchval("SELECT status FROM vehicles WHERE id = $1", vehicle)
    assert status == "in_auction"
    registry = api.sequencer.registry
    assert registry.core.auction(registry.auction_handle(auction_id)).status == "scheduled"


async def test_draft_leaves_the_vehicle_available_and_the_core_alone(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    reply = await api.create_auction(dealer, vehicle, status="draft")
    auction_id = uuid.UUID(reply.body["auction"]["id"])
    assert await api.pool.fetchval("SELECT status FROM vehicles WHERE id = $1", vehicle) == (
        "available"
    )
    assert auction_id not in api.sequencer.registry.auction_ids()


async def test_vehicle_in_an_open_auction_is_409(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    first = await api.create_auction(dealer, vehicle)
    reply = await api.create_auction(dealer, vehicle)
    assert (reply.status, reply.code) == (409, "vehicle_in_auction")
    assert first.body["auction"]["id"] in reply.body["error"]["message"]


async def test_vehicle_whose_auction_was_cancelled_may_be_auctioned_again(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    first = await api.create_auction(dealer, vehicle)
    await api.pool.execute(
        "UPDATE auctions SET status = 'cancelled' WHERE id = $1",
        uuid.UUID(first.body["auction"]["id"]),
    )
    assert (await api.create_auction(dealer, vehicle)).status == 201


INVALID_TERMS: list[tuple[dict[str, Any], str]] = [
    ({"end_time_ms": 0}, "invalid_times"),
    ({"start_time_ms": -1}, "invalid_times"),
    ({"end_time_ms": 10**20}, "invalid_times"),
    ({"start_price_kobo": 0}, "invalid_price"),
    ({"start_price_kobo": -PRICE}, "invalid_price"),
    ({"start_price_kobo": 10**15}, "invalid_price"),
    ({"reserve_price_kobo": 0}, "invalid_price"),
    ({"reserve_price_kobo": 10**15}, "invalid_price"),
    ({"bid_increment_kobo": 0}, "invalid_increment"),
    ({"bid_increment_kobo": 10**15}, "invalid_increment"),
    ({"deposit_pct_bp": -1}, "invalid_deposit"),
    ({"deposit_pct_bp": 10_001}, "invalid_deposit"),
    ({"anti_snipe_window_ms": -1}, "invalid_anti_snipe"),
    ({"anti_snipe_window_ms": 604_800_001}, "invalid_anti_snipe"),
    ({"anti_snipe_extension_ms": 604_800_001}, "invalid_anti_snipe"),
    ({"auction_type": "dutch"}, "invalid_auction_type"),
    ({"status": "live"}, "invalid_status"),
    ({"auction_type": "reserve"}, "reserve_required"),
    ({"auction_type": "no_reserve", "reserve_price_kobo": PRICE}, "reserve_not_allowed"),
    ({"start_price_kobo": 1.5}, "invalid"),
    ({"start_price_kobo": "100"}, "invalid"),
    ({"winner_id": str(uuid.uuid4())}, "invalid"),
]


async def test_invalid_terms_are_422(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    for fields, code in INVALID_TERMS:
        reply = await api.create_auction(dealer, vehicle, **fields)
        assert (reply.status, reply.code) == (422, code), fields
    assert await api.pool.fetchval("SELECT count(*) FROM auctions") == 0


async def test_end_before_start_and_end_in_the_past_are_422(api: Api) -> None:
    dealer = await api.seller()
    start_ms = now_ms() + HOUR_MS
    for times in (
        {"start_time_ms": start_ms, "end_time_ms": start_ms},
        {"start_time_ms": now_ms() - 2 * HOUR_MS, "end_time_ms": now_ms() - HOUR_MS},
    ):
        reply = await api.create_auction(dealer, **times)
        assert (reply.status, reply.code) == (422, "invalid_times")


async def test_the_largest_terms_are_taken(api: Api) -> None:
    reply = await api.create_auction(
        await api.seller(),
        start_price_kobo=10**15 - 1,
        bid_increment_kobo=10**15 - 1,
        deposit_pct_bp=10_000,
        anti_snipe_window_ms=604_800_000,
        anti_snipe_extension_ms=0,
    )
    assert reply.status == 201, reply.text


async def test_dealer_without_approved_kyc_cannot_create_auctions(api: Api) -> None:
    dealer = await api.user(role="dealer", kyc_status="pending")
    reply = await api.create_auction(dealer)
    assert (reply.status, reply.code) == (409, "kyc_required")


async def test_creator_must_be_a_dealer_manager_or_admin(api: Api) -> None:
    vehicle = await api.vehicle(await api.seller())
    for role in ["user", "concierge", "verified_seller"]:
        reply = await api.create_auction(await api.user(role=role), vehicle)
        assert (reply.status, reply.code) == (422, "creator_not_allowed"), role


async def test_unknown_vehicle_or_creator_is_422(api: Api) -> None:
    dealer = await api.seller()
    unknown_vehicle = await api.create_auction(dealer, uuid.uuid4())
    unknown_creator = await api.create_auction(uuid.uuid4(), await api.vehicle(dealer))
    assert (unknown_vehicle.status, unknown_vehicle.code) == (422, "unknown_vehicle")
    assert (unknown_creator.status, unknown_creator.code) == (422, "unknown_user")


async def test_sold_vehicle_cannot_be_auctioned(api: Api) -> None:
    dealer = await api.seller()
    vehicle = await api.vehicle(dealer)
    await api.pool.execute("UPDATE vehicles SET status = 'sold' WHERE id = $1", vehicle)
    reply = await api.create_auction(dealer, vehicle)
    assert (reply.status, reply.code) == (409, "vehicle_unavailable")


# ---- POST /api/auctions ---------------------------------------------------------------


async def public_create(api: Api, caller: uuid.UUID, role: str, **fields: Any) -> Any:
    vehicle = fields.pop("vehicle_id", None) or await api.vehicle(caller)
    return await api.as_user(
        caller, "POST", "/api/auctions", api.auction_body(vehicle, **later(**fields)), role=role
    )


async def test_dealer_creates_a_draft_of_their_own(api: Api) -> None:
    dealer = await api.seller()
    reply = await public_create(api, dealer, "dealer")
    assert reply.status == 201, reply.text
    assert reply.body["auction"]["status"] == "draft"
    assert reply.body["auction"]["created_by"] == str(dealer)


async def test_dealer_asking_for_scheduled_is_403(api: Api) -> None:
    reply = await public_create(api, await api.seller(), "dealer", status="scheduled")
    assert (reply.status, reply.code) == (403, "approval_required")


async def test_dealer_cannot_auction_another_listers_vehicle(api: Api) -> None:
    dealer = await api.seller()
    others = await api.vehicle(await api.seller())
    reply = await public_create(api, dealer, "dealer", vehicle_id=others)
    assert (reply.status, reply.code) == (403, "not_your_vehicle")


async def test_manager_or_admin_schedules_directly(api: Api) -> None:
    dealer = await api.seller()
    for role in ["manager", "admin"]:
        staff = await api.user(role=role)
        others = await api.vehicle(dealer)
        reply = await public_create(api, staff, role, vehicle_id=others)
        assert reply.status == 201, reply.text
        assert reply.body["auction"]["status"] == "scheduled"
        assert uuid.UUID(reply.body["auction"]["id"]) in api.sequencer.registry.auction_ids()


async def test_manager_may_ask_for_a_draft(api: Api) -> None:
    manager = await api.user(role="manager")
    reply = await public_create(api, manager, "manager", status="draft")
    assert reply.body["auction"]["status"] == "draft"


async def test_other_roles_cannot_create_auctions(api: Api) -> None:
    vehicle = await api.vehicle(await api.seller())
    for role in ["user", "concierge", "verified_seller"]:
        caller = await api.user(role=role)
        reply = await public_create(api, caller, "admin", vehicle_id=vehicle)
        assert (reply.status, reply.code) == (403, "forbidden"), role


async def test_public_create_cannot_name_another_creator(api: Api) -> None:
    manager = await api.user(role="manager")
    reply = await public_create(api, manager, "manager", created_by=str(uuid.uuid4()))
    assert (reply.status, reply.code) == (422, "invalid")


# ---- GET /api/auctions --------------------------------------------------------------------


async def test_list_of_live_auctions(api: Api) -> None:
    live = await api.live_auction()
    draft = await api.create_auction(await api.seller())
    bidder = await api.bidder()
    assert (await api.bid(bidder, live, PRICE)).status == 201

    reply = await api.call("GET", "/api/auctions?status=live")

    assert reply.status == 200, reply.text
    [summary] = reply.body["auctions"]
    assert summary["id"] == str(live)
    assert (summary["current_price_kobo"], summary["min_next_bid_kobo"]) == (PRICE, PRICE + STEP)
    assert (summary["bid_count"], summary["bidder_count"]) == (1, 1)
    assert summary["vehicle"]["make"] == "Toyota"
    assert draft.body["auction"]["id"] not in reply.text


async def test_list_defaults_to_live_and_takes_other_public_statuses(api: Api) -> None:
    manager = await api.user(role="manager")
    scheduled = await api.create_auction(manager, status="scheduled", **later())
    default = await api.call("GET", "/api/auctions")
    listed = await api.call("GET", "/api/auctions?status=scheduled&limit=10")
    assert default.body == {"auctions": []}
    assert [a["id"] for a in listed.body["auctions"]] == [scheduled.body["auction"]["id"]]


async def test_list_orders_open_auctions_soonest_end_first_and_finished_ones_latest_first(
    api: Api,
) -> None:
    manager = await api.user(role="manager")
    start_ms = now_ms() + HOUR_MS
    ends = [start_ms + 3 * HOUR_MS, start_ms + HOUR_MS, start_ms + 2 * HOUR_MS, start_ms + HOUR_MS]
    made = []
    for end_ms in ends:  # two share an end: the id breaks the tie, upwards in both orders
        reply = await api.create_auction(
            manager, status="scheduled", start_time_ms=start_ms, end_time_ms=end_ms
        )
        assert reply.status == 201, reply.text
        made.append((end_ms, uuid.UUID(reply.body["auction"]["id"])))

    async def listed(status: str, limit: int) -> list[uuid.UUID]:
        reply = await api.call("GET", f"/api/auctions?status={status}&limit={limit}")
        assert reply.status == 200, reply.text
        return [uuid.UUID(summary["id"]) for summary in reply.body["auctions"]]

    soonest = [auction for _, auction in sorted(made)]
    assert await listed("scheduled", 10) == soonest
    assert await listed("scheduled", 3) == soonest[:3]
    await api.pool.execute(
        "UPDATE auctions SET status = 'unsold' WHERE id = ANY($1::uuid[])", soonest
    )
    latest = [auction for _, auction in sorted(made, key=lambda made: (-made[0], made[1]))]
    assert await listed("unsold", 10) == latest
    assert await listed("unsold", 3) == latest[:3]


async def test_list_with_an_invalid_query_is_422(api: Api) -> None:
    for query, code in [
        ("status=draft", "invalid_status"),
        ("status=open", "invalid_status"),
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("limit=x", "invalid_limit"),
        ("limit=²", "invalid_limit"),
    ]:
        reply = await api.call("GET", f"/api/auctions?{query}")
        assert (reply.status, reply.code) == (422, code), query


# ---- GET /api/auctions/{id} ------------------------------------------------------------------


async def test_snapshot_of_a_live_auction(api: Api) -> None:
    auction = await api.live_auction(reserve_price_kobo=PRICE + STEP)
    first, second = await api.bidder(), await api.bidder()
    for bidder, amount in ((first, PRICE), (second, PRICE + STEP), (first, PRICE + 2 * STEP)):
        assert (await api.bid(bidder, auction, amount)).status == 201

    reply = await api.call("GET", f"/api/auctions/{auction}")

    assert reply.status == 200, reply.text
    snap = reply.body
    assert set(snap) == {"seq", "server_time_ms", "auction", "vehicle", "recent_bids", "you"}
    assert snap["you"] is None and snap["seq"] == 3
    assert abs(snap["server_time_ms"] - now_ms()) < 60_000
    state = snap["auction"]
    assert set(state) == SNAPSHOT_AUCTION_FIELDS
    assert (state["status"], state["current_price_kobo"]) == ("live", PRICE + 2 * STEP)
    assert (state["min_next_bid_kobo"], state["bid_increment_kobo"]) == (PRICE + 3 * STEP, STEP)
    assert (state["bid_count"], state["bidder_count"], state["reserve_met"]) == (3, 2, True)
    assert [(b["amount_kobo"], b["bidder"], b["is_platform_bid"]) for b in snap["recent_bids"]] == [
        (PRICE + 2 * STEP, "Bidder 1", False),
        (PRICE + STEP, "Bidder 2", False),
        (PRICE, "Bidder 1", False),
    ]
    assert not any(b["is_proxy"] for b in snap["recent_bids"])
    vehicle = snap["vehicle"]
    assert (vehicle["make"], vehicle["model"], vehicle["year"]) == ("Toyota", "Camry", 2019)
    assert set(vehicle) == {
        "id",
        "year",
        "make",
        "model",
        "body_type",
        "mileage_km",
        "color",
        "condition",
        "location",
    }
    assert str(first) not in reply.text and str(second) not in reply.text


async def test_snapshot_labels_platform_bids_as_reserve_protection(api: Api) -> None:
    auction = await api.live_auction(reserve_price_kobo=10 * PRICE)
    assert (await api.sequencer.place_bid(auction, PLATFORM_USER_ID, PRICE, platform=True)).accepted
    reply = await api.call("GET", f"/api/auctions/{auction}")
    [bid] = reply.body["recent_bids"]
    assert (bid["bidder"], bid["is_platform_bid"]) == ("Reserve protection", True)
    assert reply.body["auction"]["reserve_met"] is False


async def test_snapshot_keeps_the_50_latest_bids_newest_first(api: Api) -> None:
    auction = await api.live_auction()
    bidders = [await api.bidder(), await api.bidder()]
    for n in range(53):
        placed = await api.sequencer.place_bid(auction, bidders[n % 2], PRICE + n * STEP)
        assert placed.accepted
    reply = await api.call("GET", f"/api/auctions/{auction}")
    amounts = [bid["amount_kobo"] for bid in reply.body["recent_bids"]]
    assert amounts == [PRICE + n * STEP for n in range(52, 2, -1)]


async def test_snapshot_of_an_auction_the_core_no_longer_holds_comes_from_the_ledger(
    api: Api,
) -> None:
    auction = await api.live_auction()
    bidder = await api.bidder()
    assert (await api.bid(bidder, auction, PRICE)).status == 201
    live = (await api.call("GET", f"/api/auctions/{auction}")).body
    # As end processing leaves it: out of the core, final in the ledger.
    core, registry = api.sequencer.core, api.sequencer.registry
    core.close_auction(registry.auction_handle(auction))
    core.remove_auction(registry.auction_handle(auction))
    registry.forget_auction(auction)
    await api.pool.execute("UPDATE auctions SET status = 'unsold' WHERE id = $1", auction)

    ended = (await api.call("GET", f"/api/auctions/{auction}")).body

    assert ended["auction"]["status"] == "unsold"
    assert ended["recent_bids"] == live["recent_bids"]
    same = ("current_price_kobo", "bid_count", "bidder_count", "min_next_bid_kobo")
    assert {k: ended["auction"][k] for k in same} == {k: live["auction"][k] for k in same}


async def test_snapshot_of_a_draft_or_unknown_auction_is_404(api: Api) -> None:
    draft = await api.create_auction(await api.seller())
    for path in (f"/api/auctions/{draft.body['auction']['id']}", f"/api/auctions/{uuid.uuid4()}"):
        reply = await api.call("GET", path)
        assert (reply.status, reply.code) == (404, "not_found")


async def test_malformed_auction_id_in_the_path_is_404(api: Api) -> None:
    reply = await api.call("GET", "/api/auctions/not-a-uuid")
    assert (reply.status, reply.code) == (404, "not_found")


# ---- GET /internal/auctions/{id}/bids -----------------------------------------------------


async def test_bid_history_names_real_bidders_oldest_first(api: Api) -> None:
    auction = await api.live_auction()
    first, second = await api.bidder(), await api.bidder()
    await api.bid(first, auction, PRICE, "a")
    await api.bid(second, auction, PRICE + STEP, "b")

    reply = await api.service("GET", f"/internal/auctions/{auction}/bids")

    assert reply.status == 200, reply.text
    bids = reply.body["bids"]
    assert [(b["user_id"], b["amount_kobo"], b["client_bid_id"]) for b in bids] == [
        (str(first), PRICE, "a"),
        (str(second), PRICE + STEP, "b"),
    ]
    assert all(
        {"id", "user_id", "amount_kobo", "is_platform_bid", "at_ms", "client_bid_id"} <= set(b)
        for b in bids
    )
    assert bids[0]["at_ms"] <= bids[1]["at_ms"]


async def test_bid_history_of_an_unknown_auction_is_404(api: Api) -> None:
    for path in (f"/internal/auctions/{uuid.uuid4()}/bids", "/internal/auctions/nope/bids"):
        reply = await api.service("GET", path)
        assert (reply.status, reply.code) == (404, "not_found")
