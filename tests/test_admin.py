"""Staff actions over HTTP on the real database and a driven clock: every transition,
every refusal, and the audit row each one writes in the same transaction."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from engine.auctions import PUBLIC_STATUSES
from engine.money import naira_to_kobo
from engine.registry import NO_HANDLE
from engine.state_changes import StateChange
from tests.http_helpers import HOUR_MS, PRICE, SERVICE_TOKEN, STEP, Reply, token_for
from tests.test_settlement import FUNDS, World, deposit, make_world, won_with_deposit_due


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


@pytest.fixture
async def manager(world: World) -> uuid.UUID:
    return await world.api.user(role="manager")


async def act(
    world: World,
    staff: uuid.UUID,
    auction: uuid.UUID,
    action: str,
    body: Any = None,
    *,
    role: str = "manager",
) -> Reply:
    return await world.api.call(
        "POST",
        f"/internal/admin/auctions/{auction}/{action}",
        token=token_for(staff, role),
        json_body={"reason": "Checked with the seller"} if body is None else body,
    )


async def draft(world: World, **fields: Any) -> uuid.UUID:
    dealer = await world.api.seller()
    start = world.clock.now_ms() + HOUR_MS
    reply = await world.api.create_auction(
        dealer, status="draft", start_time_ms=start, end_time_ms=start + HOUR_MS, **fields
    )
    assert reply.status == 201, reply.text
    return uuid.UUID(reply.body["auction"]["id"])


async def audit_rows(world: World, auction: uuid.UUID) -> list[Any]:
    return await world.pool.fetch(
        "SELECT * FROM admin_audit_log WHERE target_id = $1 ORDER BY created_at", auction
    )


def value(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def in_core(world: World, auction: uuid.UUID) -> bool:
    return world.api.sequencer.registry.auction_handle(auction) != NO_HANDLE


def watch(world: World) -> list[StateChange]:
    seen: list[StateChange] = []
    world.api.sequencer.subscribe_state(seen.append)
    return seen


# ---- approve and reject ----------------------------------------------------------------


async def test_approve_schedules_a_draft_and_writes_the_audit_row(
    world: World, manager: uuid.UUID
) -> None:
    auction = await draft(world)

    reply = await act(world, manager, auction, "approve", {"reason": "  Documents verified  "})

    assert reply.status == 200, reply.text
    assert (reply.body["action"], reply.body["auction"]["status"]) == ("approve", "scheduled")
    row = await world.auction(auction)
    assert (row["status"], row["vehicle_status"]) == ("scheduled", "in_auction")
    assert in_core(world, auction)
    (audit,) = await audit_rows(world, auction)
    assert (audit["admin_id"], audit["action"], audit["target_type"]) == (
        manager,
        "approve",
        "auction",
    )
    assert value(audit["old_value"]) == {"status": "draft", "vehicle_status": "available"}
    assert value(audit["new_value"]) == {"status": "scheduled", "vehicle_status": "in_auction"}
    assert audit["reason"] == "Documents verified"
    assert str(audit["ip_address"]) == "127.0.0.1"
    assert world.published.states == [
        (auction, row["last_seq"], "scheduled", reply.body["auction"]["end_time_ms"])
    ]


async def test_an_approved_auction_goes_live_and_takes_bids(
    world: World, manager: uuid.UUID
) -> None:
    auction = await draft(world)
    assert (await act(world, manager, auction, "approve")).status == 200
    world.clock.advance(HOUR_MS)
    await world.lifecycle.tick()

    reply = await world.api.bid(await world.api.bidder(FUNDS), auction, PRICE)

    assert reply.status == 201, reply.text


async def test_approve_twice_is_an_invalid_transition(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    assert (await act(world, manager, auction, "approve")).status == 200

    reply = await act(world, manager, auction, "approve")

    assert (reply.status, reply.code) == (409, "invalid_transition")
    assert len(await audit_rows(world, auction)) == 1


async def test_a_draft_past_its_end_cannot_be_approved(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    world.clock.advance(3 * HOUR_MS)

    reply = await act(world, manager, auction, "approve")

    assert (reply.status, reply.code) == (409, "end_time_passed")
    assert (await world.auction(auction))["status"] == "draft"


async def test_reject_cancels_a_draft_and_keeps_the_reason(
    world: World, manager: uuid.UUID
) -> None:
    auction = await draft(world)

    reply = await act(world, manager, auction, "reject", {"reason": "Photos do not match"})

    assert reply.status == 200, reply.text
    row = await world.auction(auction)
    assert (row["status"], row["cancel_reason"], row["vehicle_status"]) == (
        "cancelled",
        "Photos do not match",
        "available",
    )
    (audit,) = await audit_rows(world, auction)
    assert (audit["action"], value(audit["old_value"])) == ("reject", {"status": "draft"})
    assert value(audit["new_value"])["status"] == "cancelled"
    assert [s[2] for s in world.published.states] == ["cancelled"]


async def test_reject_of_a_live_auction_is_409(world: World, manager: uuid.UUID) -> None:
    auction, _ = await world.live()
    reply = await act(world, manager, auction, "reject")
    assert (reply.status, reply.code) == (409, "invalid_transition")


# ---- a draft that was never public stays private --------------------------------------


async def public_view(world: World, auction: uuid.UUID) -> dict[str, Any]:
    """What guests and bidders can see of the auction: its single read (without and
    with a bidder's token), the lists it appears in, and its room's handshake."""
    api = world.api
    bidder = await api.bidder()
    reads = [
        (await api.call("GET", f"/api/auctions/{auction}", token=token)).status
        for token in (None, token_for(bidder))
    ]
    listed_in = []
    for status in PUBLIC_STATUSES:
        reply = await api.call("GET", f"/api/auctions?status={status}&limit=500")
        assert reply.status == 200, reply.text
        if str(auction) in [summary["id"] for summary in reply.body["auctions"]]:
            listed_in.append(status)
    try:
        socket = await api.client.ws_connect(f"/ws/auctions/{auction}")
    except aiohttp.WSServerHandshakeError as err:
        room = err.status
    else:
        await socket.close()
        room = 101
    return {"reads": reads, "listed_in": listed_in, "room": room}


HIDDEN = {"reads": [404, 404], "listed_in": [], "room": 404}


@pytest.mark.parametrize("action", ["reject", "cancel"])
async def test_a_draft_rejected_or_cancelled_before_approval_stays_private(
    world: World, manager: uuid.UUID, action: str
) -> None:
    auction = await draft(world)
    assert await public_view(world, auction) == HIDDEN

    reply = await act(world, manager, auction, action)

    assert (reply.status, reply.body["auction"]["status"]) == (200, "cancelled")
    assert await public_view(world, auction) == HIDDEN


async def test_staff_and_the_platform_still_read_a_rejected_draft(
    world: World, manager: uuid.UUID
) -> None:
    auction = await draft(world)
    assert (await act(world, manager, auction, "reject")).status == 200

    again = await act(world, manager, auction, "reject")
    history = await world.api.service("GET", f"/internal/auctions/{auction}/bids")

    assert (again.status, again.code) == (409, "invalid_transition")
    assert "cancelled" in again.body["error"]["message"]
    assert (history.status, history.body) == (200, {"bids": []})


async def test_a_cancelled_scheduled_auction_stays_public(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    assert (await act(world, manager, auction, "approve")).status == 200

    assert (await act(world, manager, auction, "cancel")).status == 200

    assert await public_view(world, auction) == {
        "reads": [200, 200],
        "listed_in": ["cancelled"],
        "room": 101,
    }


# ---- extend --------------------------------------------------------------------------------


async def test_extend_moves_the_end_in_ledger_and_core(world: World, manager: uuid.UUID) -> None:
    auction, end = await world.live()
    seen = watch(world)

    reply = await act(
        world, manager, auction, "extend", {"reason": "Outage", "end_time_ms": end + 600_000}
    )

    assert reply.status == 200, reply.text
    assert reply.body["auction"]["end_time_ms"] == end + 600_000
    registry = world.api.sequencer.registry
    assert registry.core.auction(registry.auction_handle(auction)).end_time_ms == end + 600_000
    assert [(c.kind, c.end_time_ms) for c in seen] == [("extended", end + 600_000)]
    (audit,) = await audit_rows(world, auction)
    assert audit["action"] == "extend"
    assert value(audit["old_value"]) == {"status": "live", "end_time_ms": end}
    assert value(audit["new_value"]) == {"status": "live", "end_time_ms": end + 600_000}
    world.clock.set(end)
    await world.lifecycle.tick()
    assert (await world.auction(auction))["status"] == "live"


@pytest.mark.parametrize("shift", [0, -1, None])
async def test_extend_needs_a_later_end(
    world: World, manager: uuid.UUID, shift: int | None
) -> None:
    auction, end = await world.live()
    body: dict[str, Any] = {"reason": "Outage"}
    if shift is not None:
        body["end_time_ms"] = end + shift

    reply = await act(world, manager, auction, "extend", body)

    assert (reply.status, reply.code) == (422, "invalid_end_time")
    assert await audit_rows(world, auction) == []


async def test_extend_of_a_draft_is_409(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    reply = await act(world, manager, auction, "extend", {"reason": "x", "end_time_ms": 2**40})
    assert (reply.status, reply.code) == (409, "invalid_transition")


# ---- force-end -----------------------------------------------------------------------------


async def test_force_end_runs_end_processing_at_once(world: World, manager: uuid.UUID) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction, _ = await world.live()
    assert (await world.api.bid(bidder, auction, PRICE)).status == 201

    reply = await act(world, manager, auction, "force-end", {"reason": "Seller request, agreed"})

    assert reply.status == 200, reply.text
    assert (reply.body["auction"]["status"], reply.body["auction"]["winner_id"]) == (
        "pending_settlement",
        str(bidder),
    )
    await world.assert_balances({bidder: FUNDS - deposit(PRICE)})
    assert not in_core(world, auction)
    (audit,) = await audit_rows(world, auction)
    assert audit["action"] == "force_end"
    assert value(audit["old_value"])["leader_id"] == str(bidder)
    assert value(audit["new_value"]) == {"status": "ended"}


async def test_force_end_without_bids_is_unsold(world: World, manager: uuid.UUID) -> None:
    auction, _ = await world.live()
    reply = await act(world, manager, auction, "force-end")
    assert reply.body["auction"]["status"] == "unsold"
    assert (await world.auction(auction))["vehicle_status"] == "available"


async def test_force_end_of_an_ended_auction_is_409(world: World, manager: uuid.UUID) -> None:
    auction = await world.won([])
    reply = await act(world, manager, auction, "force-end")
    assert (reply.status, reply.code) == (409, "invalid_transition")


# ---- cancel --------------------------------------------------------------------------------


async def test_cancel_releases_exposure_and_the_vehicle(world: World, manager: uuid.UUID) -> None:
    leader = await world.api.bidder(FUNDS)
    auction, _ = await world.live()
    assert (await world.api.bid(leader, auction, PRICE)).status == 201
    assert (await world.api.wallet(leader))["exposure_kobo"] == deposit(PRICE)
    seen = watch(world)

    reply = await act(world, manager, auction, "cancel", {"reason": "Vehicle damaged in transit"})

    assert reply.status == 200, reply.text
    wallet = await world.api.wallet(leader)
    assert (wallet["exposure_kobo"], wallet["balance_kobo"]) == (0, FUNDS)
    row = await world.auction(auction)
    assert (row["status"], row["cancel_reason"], row["vehicle_status"]) == (
        "cancelled",
        "Vehicle damaged in transit",
        "available",
    )
    assert [c.kind for c in seen] == ["cancelled"]
    (audit,) = await audit_rows(world, auction)
    assert audit["action"] == "cancel"
    assert value(audit["old_value"])["current_price_kobo"] == PRICE
    assert value(audit["new_value"])["status"] == "cancelled"
    assert (await world.api.debit(leader, FUNDS)).status == 201
    late = await world.api.bid(await world.api.bidder(FUNDS), auction, PRICE + STEP)
    assert late.status == 409


async def test_cancel_of_a_scheduled_auction(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    assert (await act(world, manager, auction, "approve")).status == 200
    reply = await act(world, manager, auction, "cancel")
    assert reply.body["auction"]["status"] == "cancelled"
    assert [row["action"] for row in await audit_rows(world, auction)] == ["approve", "cancel"]


async def test_cancel_of_a_draft(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    reply = await act(world, manager, auction, "cancel")
    assert reply.body["auction"]["status"] == "cancelled"


async def test_cancel_after_the_end_is_409(world: World, manager: uuid.UUID) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.won([(bidder, PRICE)])

    reply = await act(world, manager, auction, "cancel")

    assert (reply.status, reply.code) == (409, "invalid_transition")
    assert "void" in reply.body["error"]["message"]


# ---- void ----------------------------------------------------------------------------------


async def test_void_restores_the_wallet_exactly(world: World, manager: uuid.UUID) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    before = await world.api.wallet(winner)

    reply = await act(world, manager, auction, "void", {"reason": "Fraudulent listing"})

    assert reply.status == 200, reply.text
    assert before["held_kobo"] == deposit(PRICE)
    wallet = await world.api.wallet(winner)
    assert (wallet["balance_kobo"], wallet["held_kobo"], wallet["due_kobo"]) == (FUNDS, 0, 0)
    await world.assert_balances({winner: FUNDS})
    release = (await world.transactions(winner, "bid_deposit_release"))[0]
    assert (naira_to_kobo(release["amount"]), naira_to_kobo(release["balance_after"])) == (
        deposit(PRICE),
        FUNDS,
    )
    assert (release["status"], release["reference_id"]) == ("completed", auction)
    offer = await world.offer(auction, winner)
    assert (offer["outcome"], offer["deposit_status"]) == ("voided", "released")
    row = await world.auction(auction)
    assert (row["status"], row["winner_id"], row["vehicle_status"]) == (
        "cancelled",
        None,
        "available",
    )
    assert world.published.states == [
        (auction, row["last_seq"], "cancelled", reply.body["auction"]["end_time_ms"])
    ]
    (audit,) = await audit_rows(world, auction)
    assert (audit["action"], audit["reason"]) == ("void", "Fraudulent listing")
    assert value(audit["old_value"])["winner_id"] == str(winner)
    assert value(audit["new_value"])["released_kobo"] == deposit(PRICE)
    assert (await world.api.debit(winner, FUNDS)).status == 201


async def test_void_refunds_payments_made(world: World, manager: uuid.UUID) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    assert (await world.pay(auction, 20_000_000)).status == 201

    assert (await act(world, manager, auction, "void")).status == 200

    await world.assert_balances({winner: FUNDS + 20_000_000})


async def test_void_of_a_due_deposit_moves_no_money(world: World, manager: uuid.UUID) -> None:
    auction, winner = await won_with_deposit_due(world)

    assert (await act(world, manager, auction, "void")).status == 200

    offer = await world.offer(auction, winner)
    assert (offer["outcome"], offer["deposit_status"]) == ("voided", "due")
    assert [row["type"] for row in await world.transactions(winner)] == ["deposit"]  # funding
    assert (await world.api.wallet(winner))["due_kobo"] == 0


@pytest.mark.parametrize("state", ["live", "settled"])
async def test_void_applies_only_to_a_result_awaiting_settlement(
    world: World, manager: uuid.UUID, state: str
) -> None:
    bidder = await world.api.bidder(FUNDS)
    if state == "live":
        auction, _ = await world.live()
    else:
        auction = await world.won([(bidder, PRICE)])
        assert (await world.pay(auction, PRICE - deposit(PRICE))).status == 201

    reply = await act(world, manager, auction, "void")

    assert (reply.status, reply.code) == (409, "invalid_transition")
    assert await audit_rows(world, auction) == []


# ---- who may act, and why --------------------------------------------------------------------


async def test_an_admin_may_act_too(world: World) -> None:
    admin = await world.api.user(role="admin")
    auction = await draft(world)
    reply = await act(world, admin, auction, "approve", role="admin")
    assert reply.status == 200, reply.text


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (None, "reason_required"),
        ("", "reason_required"),
        ("   ", "reason_required"),
        ("x" * 1001, "invalid_reason"),
        ("bad\x00", "invalid_reason"),
    ],
)
async def test_a_reason_is_required(
    world: World, manager: uuid.UUID, reason: str | None, code: str
) -> None:
    auction = await draft(world)
    body = {} if reason is None else {"reason": reason}

    reply = await act(world, manager, auction, "approve", body)

    assert (reply.status, reply.code) == (422, code)
    assert (await world.auction(auction))["status"] == "draft"
    assert await audit_rows(world, auction) == []


async def test_a_reason_of_1000_characters_is_kept(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    reply = await act(world, manager, auction, "reject", {"reason": "r" * 1000})
    assert reply.status == 200
    assert (await audit_rows(world, auction))[0]["reason"] == "r" * 1000


async def test_an_empty_body_says_the_reason_is_missing(world: World, manager: uuid.UUID) -> None:
    auction = await draft(world)
    reply = await world.api.call(
        "POST", f"/internal/admin/auctions/{auction}/approve", token=token_for(manager, "manager")
    )
    assert (reply.status, reply.code) == (422, "reason_required")


async def test_the_service_token_may_not_act(world: World) -> None:
    auction = await draft(world)
    reply = await world.api.call(
        "POST",
        f"/internal/admin/auctions/{auction}/approve",
        token=SERVICE_TOKEN,
        json_body={"reason": "platform"},
    )
    assert (reply.status, reply.code) == (401, "unauthenticated")
    assert (await world.auction(auction))["status"] == "draft"


@pytest.mark.parametrize("role", ["user", "dealer", "concierge"])
async def test_a_non_staff_token_is_403(world: World, role: str) -> None:
    caller = await world.api.user(role=role)
    auction = await draft(world)

    reply = await act(world, caller, auction, "approve", role="manager")  # the claim is ignored

    assert (reply.status, reply.code) == (403, "forbidden")
    assert await audit_rows(world, auction) == []


async def test_no_token_is_401(world: World) -> None:
    auction = await draft(world)
    reply = await world.api.call(
        "POST", f"/internal/admin/auctions/{auction}/cancel", json_body={"reason": "x"}
    )
    assert (reply.status, reply.code) == (401, "unauthenticated")


@pytest.mark.parametrize("action", ["approve", "reject", "extend", "force-end", "cancel", "void"])
async def test_an_unknown_auction_is_404(world: World, manager: uuid.UUID, action: str) -> None:
    body = {"reason": "x", "end_time_ms": 2**41} if action == "extend" else None
    reply = await act(world, manager, uuid.uuid4(), action, body)
    assert (reply.status, reply.code) == (404, "not_found")
