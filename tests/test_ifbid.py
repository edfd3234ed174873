"""The if-bid (RULES.md "If-bid: the seller's decision below the reserve") over HTTP
on the real database and a driven clock: the end below the reserve, every answer
and every refusal, the bidder's buying power held and released, deadlines, and
the core's hold across a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from engine.clock import ManualClock, to_ms
from engine.decisions import SellerDecisions
from engine.ifbid import DEFAULT_COUNTER_WINDOW_MS, DEFAULT_IF_BID_WINDOW_MS
from engine.money import naira_to_kobo
from engine.offers import PAYMENT_WINDOW_MS
from engine.sequencer import Sequencer
from engine.tokens import mint_token
from jobs.lifecycle import Lifecycle
from jobs.reserve import ReserveProtection
from server.app import create_app
from tests.factories import create_user
from tests.http_helpers import HOUR_MS, PRICE, STEP, Api, Reply, now_ms, settings, token_for
from tests.ws_helpers import SECRET as WS_SECRET
from tests.ws_helpers import RoomClient, serving
from tests.ws_helpers import make_world as make_room
from web.keys import DECISIONS

RESERVE = PRICE + 10 * STEP  # ₦1,500,000
FUNDS = 200_000_000


def deposit(amount: int) -> int:
    return amount // 5  # 20 %, whole kobo for every amount used here


@dataclass
class World:
    api: Api
    clock: ManualClock
    lifecycle: Lifecycle

    @property
    def pool(self) -> Any:
        return self.api.pool

    @property
    def decisions(self) -> SellerDecisions:
        decisions: SellerDecisions = self.api.client.server.app[DECISIONS]
        return decisions

    async def deciding(
        self, bids: list[tuple[uuid.UUID, int]], *, seller: uuid.UUID | None = None, **terms: Any
    ) -> uuid.UUID:
        """A reserve auction with these bids, ended and end-processed."""
        start = self.clock.now_ms() - 1000
        fields = {"auction_type": "reserve", "reserve_price_kobo": RESERVE, **terms}
        auction = await self.api.live_auction(
            seller, start_time_ms=start, end_time_ms=start + HOUR_MS, **fields
        )
        for user, amount in bids:
            reply = await self.api.bid(user, auction, amount)
            assert reply.status == 201, reply.text
        self.clock.set(start + HOUR_MS)
        await self.lifecycle.tick()
        return auction

    async def answer(
        self,
        user: uuid.UUID,
        auction: uuid.UUID,
        action: str,
        amount: Any = None,
        role: str = "user",
    ) -> Reply:
        body: dict[str, Any] = {"action": action}
        if amount is not None:
            body["amount_kobo"] = amount
        return await self.api.as_user(
            user, "POST", f"/api/auctions/{auction}/offer", body, role=role
        )

    async def offer(self, user: uuid.UUID, auction: uuid.UUID, role: str = "user") -> Reply:
        return await self.api.as_user(user, "GET", f"/api/auctions/{auction}/offer", role=role)

    async def seller_of(self, auction: uuid.UUID) -> uuid.UUID:
        seller: uuid.UUID = await self.pool.fetchval(
            "SELECT created_by FROM auctions WHERE id = $1", auction
        )
        return seller

    async def row(self, auction: uuid.UUID) -> Any:
        return await self.pool.fetchrow(
            "SELECT a.status, a.winner_id, a.payment_deadline, v.status AS vehicle"
            " FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1",
            auction,
        )

    async def balance(self, user: uuid.UUID) -> int:
        return naira_to_kobo(
            await self.pool.fetchval("SELECT wallet_balance FROM users WHERE id = $1", user)
        )

    def exposure(self, user: uuid.UUID) -> int:
        registry = self.api.sequencer.registry
        exposed: int = registry.core.user(registry.user_handle(user)).exposure_kobo
        return exposed

    async def ledger(self, auction: uuid.UUID) -> tuple[Any, ...]:
        """Everything a step writes, to show a refused one wrote nothing."""
        return (
            await self.pool.fetchrow("SELECT * FROM if_bids WHERE auction_id = $1", auction),
            await self.pool.fetch(
                "SELECT * FROM if_bid_offers WHERE auction_id = $1 ORDER BY position", auction
            ),
            await self.pool.fetchrow("SELECT * FROM auctions WHERE id = $1", auction),
            await self.pool.fetchval("SELECT count(*) FROM admin_audit_log"),
            await self.pool.fetchval("SELECT count(*) FROM notifications"),
            await self.pool.fetchval("SELECT count(*) FROM transactions"),
        )

    async def kinds(self, user: uuid.UUID) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT kind, channel FROM notifications WHERE user_id = $1 ORDER BY kind, channel",
            user,
        )
        return [(row["kind"], row["channel"]) for row in rows]

    async def audits(self, auction: uuid.UUID) -> list[Any]:
        return await self.pool.fetch(
            "SELECT * FROM admin_audit_log WHERE target_id = $1 AND action LIKE 'if_bid_%'"
            " ORDER BY created_at, action",
            auction,
        )


async def make_world(database_url: str, aiohttp_client: Any) -> World:
    clock = ManualClock(now_ms())
    app = create_app(settings(database_url), clock=clock, run_jobs=False)
    api = Api(await aiohttp_client(app))
    return World(api, clock, Lifecycle(api.pool, api.sequencer, clock))


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


def value(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


# ---- the end below the reserve ---------------------------------------------------------


async def test_a_top_bid_below_the_reserve_goes_to_the_seller(world: World) -> None:
    rival, bidder = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.deciding([(rival, PRICE), (bidder, PRICE + STEP)])
    ended_at = world.clock.now_ms()
    seller = await world.seller_of(auction)

    row = await world.row(auction)
    offer = await world.offer(seller, auction, role="dealer")
    wallet = await world.api.wallet(bidder)
    withdrawal = await world.api.debit(bidder, 1)

    assert (row["status"], row["winner_id"], row["vehicle"]) == (
        "seller_decision",
        None,
        "in_auction",
    )
    assert offer.status == 200, offer.text
    assert offer.body == {
        "auction_id": str(auction),
        "status": "seller_decision",
        "state": "open",
        "high_bid_kobo": PRICE + STEP,
        "offers": [],
        "turn": "seller",
        "deadline_ms": ended_at + DEFAULT_IF_BID_WINDOW_MS,
        "counters_left": 3,
        "price_kobo": None,
    }
    # The high bid stays binding: exposed, nothing held, withdrawals wait.
    assert (wallet["balance_kobo"], wallet["exposure_kobo"], wallet["held_kobo"]) == (
        FUNDS,
        deposit(PRICE + STEP),
        0,
    )
    assert world.exposure(bidder) == deposit(PRICE + STEP)
    assert world.exposure(rival) == 0
    assert (withdrawal.status, withdrawal.code) == (409, "committed_capital")
    assert await world.kinds(seller) == [
        ("if_bid_received", "email"),
        ("if_bid_received", "in_app"),
        ("if_bid_received", "sms"),
    ]
    assert await world.kinds(bidder) == [("if_bid_pending", "email"), ("if_bid_pending", "in_app")]
    assert [kind for kind, _ in await world.kinds(rival)] == ["auction_lost", "auction_lost"]
    (opened,) = await world.audits(auction)
    assert opened["action"] == "if_bid_open"
    assert value(opened["new_value"])["high_bid_kobo"] == PRICE + STEP
    assert (
        await world.pool.fetchval("SELECT count(*) FROM transactions WHERE type LIKE 'bid%'") == 0
    )


async def test_a_reserve_protection_lead_still_leaves_the_top_real_bid_to_the_seller(
    world: World,
) -> None:
    bidder = await world.api.bidder(FUNDS)
    start = world.clock.now_ms() - 1000
    auction = await world.api.live_auction(
        start_time_ms=start,
        end_time_ms=start + HOUR_MS,
        auction_type="reserve",
        reserve_price_kobo=RESERVE,
    )
    assert (await world.api.bid(bidder, auction, PRICE)).status == 201
    world.clock.set(start + HOUR_MS - 60_000)  # inside the last hour, below 90 % of reserve
    await ReserveProtection(world.api.sequencer, world.clock).run()
    lead = await world.pool.fetchrow(
        "SELECT is_platform_bid FROM bids WHERE auction_id = $1 ORDER BY seq DESC LIMIT 1", auction
    )
    assert lead["is_platform_bid"]
    assert world.exposure(bidder) == 0  # outbid by the platform
    world.clock.set(start + HOUR_MS + 120_000)  # the platform bid extended the end
    await world.lifecycle.tick()

    seller = await world.seller_of(auction)
    offer = await world.offer(seller, auction, role="dealer")
    assert (await world.row(auction))["status"] == "seller_decision"
    assert (offer.body["high_bid_kobo"], offer.body["turn"]) == (PRICE, "seller")
    # Bound again to their own top bid until the seller decides.
    assert world.exposure(bidder) == deposit(PRICE)


async def test_without_a_real_bid_or_with_the_reserve_met_there_is_no_if_bid(
    world: World,
) -> None:
    bidder = await world.api.bidder(FUNDS)
    silent = await world.deciding([])
    met = await world.deciding([(bidder, RESERVE)])
    assert (await world.row(silent))["status"] == "unsold"
    assert (await world.row(met))["status"] == "pending_settlement"
    for auction in (silent, met):
        reply = await world.offer(await world.seller_of(auction), auction, role="dealer")
        assert (reply.status, reply.code) == (404, "no_offer")


# ---- the windows, on create -------------------------------------------------------------


async def test_the_windows_are_taken_on_create_stored_and_returned(world: World) -> None:
    dealer = await world.api.seller()
    manager = await world.api.user(role="manager")
    internal = await world.api.create_auction(
        dealer, status="draft", if_bid_window_ms=3_600_000, counter_window_ms=600_000
    )
    public = await world.api.as_user(
        manager,
        "POST",
        "/api/auctions",
        world.api.auction_body(
            await world.api.vehicle(manager), if_bid_window_ms=7_200_000, counter_window_ms=60_000
        ),
        role="manager",
    )
    default = await world.api.create_auction(dealer, status="draft")

    assert internal.status == public.status == default.status == 201, (internal.text, public.text)
    found = [
        (reply.body["auction"]["if_bid_window_ms"], reply.body["auction"]["counter_window_ms"])
        for reply in (internal, public, default)
    ]
    assert found == [
        (3_600_000, 600_000),
        (7_200_000, 60_000),
        (DEFAULT_IF_BID_WINDOW_MS, DEFAULT_COUNTER_WINDOW_MS),
    ]
    stored = await world.pool.fetchrow(
        "SELECT if_bid_window_ms, counter_window_ms FROM auctions WHERE id = $1",
        uuid.UUID(internal.body["auction"]["id"]),
    )
    assert tuple(stored) == (3_600_000, 600_000)


@pytest.mark.parametrize("field", ["if_bid_window_ms", "counter_window_ms"])
@pytest.mark.parametrize("bad", [0, -1, 32 * 24 * HOUR_MS])
async def test_a_window_out_of_range_is_refused(world: World, field: str, bad: int) -> None:
    dealer = await world.api.seller()
    before = await world.pool.fetchval("SELECT count(*) FROM auctions")
    reply = await world.api.create_auction(dealer, status="draft", **{field: bad})
    assert (reply.status, reply.code) == (422, "invalid_window")
    assert await world.pool.fetchval("SELECT count(*) FROM auctions") == before


# ---- the seller's answers -----------------------------------------------------------------


async def test_the_seller_accepting_is_exactly_a_win_at_the_high_bid(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    world.clock.advance(60_000)
    accepted_at = world.clock.now_ms()

    reply = await world.answer(seller, auction, "accept", role="dealer")

    assert reply.status == 200, reply.text
    assert (reply.body["state"], reply.body["turn"], reply.body["price_kobo"]) == (
        "accepted",
        None,
        PRICE,
    )
    assert reply.body["status"] == "pending_settlement"
    row = await world.row(auction)
    assert (row["status"], row["winner_id"], row["vehicle"]) == (
        "pending_settlement",
        bidder,
        "pending_settlement",
    )
    assert to_ms(row["payment_deadline"]) == accepted_at + PAYMENT_WINDOW_MS
    hold = await world.pool.fetchrow(
        "SELECT amount, balance_after FROM transactions WHERE type = 'bid_deposit_hold'"
    )
    assert (naira_to_kobo(hold["amount"]), naira_to_kobo(hold["balance_after"])) == (
        deposit(PRICE),
        FUNDS - deposit(PRICE),
    )
    settlement = await world.api.service("GET", f"/internal/auctions/{auction}/settlement")
    assert settlement.body["settlement"]["due_kobo"] == PRICE - deposit(PRICE)
    # The hold replaces the exposure: the core's balance is lower, nothing exposed.
    registry = world.api.sequencer.registry
    assert registry.core.user(registry.user_handle(bidder)).balance_kobo == FUNDS - deposit(PRICE)
    assert world.exposure(bidder) == 0
    assert ("auction_won", "sms") in await world.kinds(bidder)
    assert ("if_bid_accepted", "email") in await world.kinds(seller)
    accept = (await world.audits(auction))[-1]
    assert (accept["action"], accept["admin_id"]) == ("if_bid_accept", seller)
    assert value(accept["new_value"])["state"] == "accepted"


async def test_a_manager_may_answer_for_the_seller_and_is_named_in_the_audit(
    world: World,
) -> None:
    bidder = await world.api.bidder(FUNDS)
    manager = await world.api.user(role="manager")
    auction = await world.deciding([(bidder, PRICE)])

    reply = await world.answer(manager, auction, "counter", PRICE + 5 * STEP, role="manager")

    assert reply.status == 200, reply.text
    assert reply.body["offers"] == [
        {"by": "seller", "amount_kobo": PRICE + 5 * STEP, "at_ms": world.clock.now_ms()}
    ]
    counter = (await world.audits(auction))[-1]
    assert (counter["action"], counter["admin_id"], str(counter["ip_address"])) == (
        "if_bid_counter",
        manager,
        "127.0.0.1",
    )


async def test_the_seller_declining_leaves_the_auction_unsold_and_frees_the_bidder(
    world: World,
) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)

    reply = await world.answer(seller, auction, "decline", role="dealer")

    assert reply.status == 200, reply.text
    assert (reply.body["state"], reply.body["status"], reply.body["deadline_ms"]) == (
        "declined",
        "unsold",
        None,
    )
    row = await world.row(auction)
    assert (row["status"], row["vehicle"]) == ("unsold", "available")
    assert world.exposure(bidder) == 0
    assert await world.balance(bidder) == FUNDS
    assert (await world.api.debit(bidder, 1)).status == 201
    assert ("if_bid_declined", "email") in await world.kinds(bidder)
    assert (await world.audits(auction))[-1]["action"] == "if_bid_decline"


# ---- counters ------------------------------------------------------------------------------


async def test_the_bidder_accepting_the_seller_s_counter_wins_at_the_counter(
    world: World,
) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    counter = PRICE + 6 * STEP
    countered = await world.answer(seller, auction, "counter", counter, role="dealer")
    world.clock.advance(1000)

    reply = await world.answer(bidder, auction, "accept")

    assert countered.status == 200, countered.text
    assert (countered.body["turn"], countered.body["deadline_ms"]) == (
        "bidder",
        world.clock.now_ms() - 1000 + DEFAULT_COUNTER_WINDOW_MS,
    )
    assert ("if_bid_countered", "sms") in await world.kinds(bidder)
    assert reply.status == 200, reply.text
    assert (reply.body["state"], reply.body["price_kobo"]) == ("accepted", counter)
    row = await world.row(auction)
    assert (row["status"], row["winner_id"]) == ("pending_settlement", bidder)
    assert await world.balance(bidder) == FUNDS - deposit(counter)
    assert world.exposure(bidder) == 0
    offer = await world.pool.fetchrow("SELECT amount, deposit FROM settlement_offers")
    assert (naira_to_kobo(offer["amount"]), naira_to_kobo(offer["deposit"])) == (
        counter,
        deposit(counter),
    )


async def test_the_bidder_may_counter_back_and_the_seller_accept_that(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    assert (
        await world.answer(seller, auction, "counter", PRICE + 8 * STEP, "dealer")
    ).status == 200

    back = await world.answer(bidder, auction, "counter", PRICE + 4 * STEP)

    assert back.status == 200, back.text
    assert [(o["by"], o["amount_kobo"]) for o in back.body["offers"]] == [
        ("seller", PRICE + 8 * STEP),
        ("bidder", PRICE + 4 * STEP),
    ]
    assert (back.body["turn"], back.body["counters_left"]) == ("seller", 1)
    # Their counter binds them: exposed on it now.
    assert world.exposure(bidder) == deposit(PRICE + 4 * STEP)
    wallet = await world.api.wallet(bidder)
    assert wallet["exposure_kobo"] == deposit(PRICE + 4 * STEP)

    accepted = await world.answer(seller, auction, "accept", role="dealer")

    assert (accepted.body["state"], accepted.body["price_kobo"]) == ("accepted", PRICE + 4 * STEP)
    assert await world.balance(bidder) == FUNDS - deposit(PRICE + 4 * STEP)
    assert world.exposure(bidder) == 0


async def test_a_counter_must_lie_strictly_between_the_high_bid_and_the_reserve(
    world: World,
) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    before = await world.ledger(auction)

    replies = [
        await world.answer(seller, auction, "counter", amount, "dealer")
        for amount in (PRICE, RESERVE, PRICE - 1, RESERVE + 1)
    ]

    assert {(r.status, r.code) for r in replies} == {(409, "counter_out_of_range")}
    assert await world.ledger(auction) == before
    edge = await world.answer(seller, auction, "counter", RESERVE - 1, "dealer")
    assert edge.status == 200, edge.text


async def test_three_counters_in_all_then_only_accept_or_decline(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    assert (
        await world.answer(seller, auction, "counter", PRICE + 9 * STEP, "dealer")
    ).status == 200
    assert (await world.answer(bidder, auction, "counter", PRICE + 2 * STEP)).status == 200
    third = await world.answer(seller, auction, "counter", PRICE + 7 * STEP, "dealer")
    before = await world.ledger(auction)

    fourth = await world.answer(bidder, auction, "counter", PRICE + 3 * STEP)

    assert third.body["counters_left"] == 0
    assert (fourth.status, fourth.code) == (409, "too_many_counters")
    assert await world.ledger(auction) == before
    assert (await world.answer(bidder, auction, "decline")).body["state"] == "declined"


# ---- who, when, and what is refused -----------------------------------------------------------


async def test_refused_answers_change_nothing(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    stranger = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    path = f"/api/auctions/{auction}/offer"
    before = await world.ledger(auction)

    cases = {
        "bidder on the seller's turn": await world.answer(bidder, auction, "accept"),
        "stranger": await world.answer(stranger, auction, "accept"),
        "stranger reading": await world.offer(stranger, auction),
        "unknown auction": await world.answer(seller, uuid.uuid4(), "accept", role="dealer"),
        "no token": await world.api.call("POST", path, json_body={"action": "accept"}),
        "not json": await world.api.call(
            "POST", path, token=token_for(seller, "dealer"), data="{accept"
        ),
        "unknown action": await world.answer(seller, auction, "withdraw", role="dealer"),
        "counter without amount": await world.answer(seller, auction, "counter", role="dealer"),
        "amount with accept": await world.answer(seller, auction, "accept", PRICE, "dealer"),
        "fraction": await world.answer(seller, auction, "counter", PRICE + 0.5, "dealer"),
        "text amount": await world.answer(seller, auction, "counter", "lots", "dealer"),
        "unknown field": await world.api.call(
            "POST",
            path,
            token=token_for(seller, "dealer"),
            json_body={"action": "accept", "note": "x"},
        ),
    }

    assert {name: (r.status, r.code) for name, r in cases.items()} == {
        "bidder on the seller's turn": (409, "not_your_turn"),
        "stranger": (403, "forbidden"),
        "stranger reading": (403, "forbidden"),
        "unknown auction": (404, "not_found"),
        "no token": (401, "unauthenticated"),
        "not json": (400, "malformed"),
        "unknown action": (422, "invalid_action"),
        "counter without amount": (422, "amount_required"),
        "amount with accept": (422, "invalid"),
        "fraction": (422, "invalid_amount"),
        "text amount": (422, "invalid_amount"),
        "unknown field": (422, "invalid"),
    }
    assert await world.ledger(auction) == before
    assert world.exposure(bidder) == deposit(PRICE)
    decided = await world.answer(seller, auction, "decline", role="dealer")
    again = await world.answer(seller, auction, "accept", role="dealer")
    assert decided.status == 200
    assert (again.status, again.code) == (409, "offer_closed")


async def test_the_bidder_s_acceptance_needs_the_deposit_on_the_counter(world: World) -> None:
    # Enough for deposit(high bid) and a little more, not for deposit(counter).
    counter = PRICE + 8 * STEP
    bidder = await world.api.bidder(deposit(PRICE) + 1_000)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    assert (await world.answer(seller, auction, "counter", counter, "dealer")).status == 200
    before = await world.ledger(auction)

    short = await world.answer(bidder, auction, "accept")
    short_back = await world.answer(bidder, auction, "counter", PRICE + 7 * STEP)

    for reply in (short, short_back):
        assert (reply.status, reply.code) == (409, "insufficient_buying_power")
    assert await world.ledger(auction) == before
    assert world.exposure(bidder) == deposit(PRICE)
    # What the if-bid already holds counts towards the counter's deposit: topping
    # the wallet up to exactly deposit(counter) is enough, not deposit(high) more.
    await world.api.credit(bidder, deposit(counter) - deposit(PRICE) - 1_000)
    accepted = await world.answer(bidder, auction, "accept")
    assert accepted.status == 200, accepted.text
    assert await world.balance(bidder) == 0
    hold = await world.pool.fetchval(
        "SELECT amount FROM transactions WHERE type = 'bid_deposit_hold'"
    )
    assert naira_to_kobo(hold) == deposit(counter)


async def test_buying_power_elsewhere_counts_against_a_counter(world: World) -> None:
    counter = PRICE + 8 * STEP
    bidder = await world.api.bidder(deposit(PRICE) + deposit(PRICE // 2))
    assert deposit(PRICE) + deposit(PRICE // 2) > deposit(counter)  # enough, but for the lead
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    assert (await world.answer(seller, auction, "counter", counter, "dealer")).status == 200
    # Leading elsewhere takes part of the balance the counter would need.
    other = await world.api.live_auction(
        start_time_ms=world.clock.now_ms() - 1000,
        end_time_ms=world.clock.now_ms() + HOUR_MS,
        start_price_kobo=PRICE // 2,
    )
    assert (await world.api.bid(bidder, other, PRICE // 2)).status == 201

    reply = await world.answer(bidder, auction, "accept")

    assert (reply.status, reply.code) == (409, "insufficient_buying_power")
    assert world.exposure(bidder) == deposit(PRICE) + deposit(PRICE // 2)


# ---- deadlines -------------------------------------------------------------------------------


async def test_no_answer_in_time_is_unsold_once(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)], if_bid_window_ms=HOUR_MS)
    seller = await world.seller_of(auction)
    world.clock.advance(HOUR_MS)

    late = await world.answer(seller, auction, "accept", role="dealer")
    other = SellerDecisions(world.pool, world.api.sequencer, world.clock)
    first, second = await asyncio.gather(world.decisions.expire_due(), other.expire_due())
    third = await world.decisions.expire_due()

    assert (late.status, late.code) == (409, "offer_expired")
    assert len(first) + len(second) == 1 and third == []
    row = await world.row(auction)
    assert (row["status"], row["vehicle"]) == ("unsold", "available")
    offer = await world.offer(bidder, auction)
    assert (offer.body["state"], offer.body["turn"]) == ("expired", None)
    assert [a["action"] for a in await world.audits(auction)] == ["if_bid_open", "if_bid_expire"]
    assert await world.kinds(seller) == [
        ("if_bid_expired", "email"),
        ("if_bid_expired", "in_app"),
        ("if_bid_received", "email"),
        ("if_bid_received", "in_app"),
        ("if_bid_received", "sms"),
    ]
    assert world.exposure(bidder) == 0
    after = await world.answer(seller, auction, "accept", role="dealer")
    assert (after.status, after.code) == (409, "offer_expired")


async def test_a_counter_left_unanswered_expires_on_the_counter_window(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding(
        [(bidder, PRICE)], if_bid_window_ms=HOUR_MS, counter_window_ms=600_000
    )
    seller = await world.seller_of(auction)
    world.clock.advance(HOUR_MS - 1)  # the seller counters in the last millisecond
    assert (await world.answer(seller, auction, "counter", RESERVE - STEP, "dealer")).status == 200
    world.clock.advance(600_000 - 1)
    assert await world.decisions.expire_due() == []
    world.clock.advance(1)

    (step,) = await world.decisions.expire_due()

    assert (step.state, step.status) == ("expired", "unsold")
    audit = (await world.audits(auction))[-1]
    assert value(audit["old_value"])["turn"] == "bidder"


# ---- the core's hold, across a restart ---------------------------------------------------------


async def test_a_restart_keeps_the_bidder_exposed_on_what_binds_them(world: World) -> None:
    bidder = await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])
    seller = await world.seller_of(auction)
    await world.answer(seller, auction, "counter", PRICE + 9 * STEP, "dealer")
    await world.answer(bidder, auction, "counter", PRICE + 3 * STEP)

    restarted = await Sequencer.open(world.pool, clock=world.clock)
    try:
        registry = restarted.registry
        handle = registry.user_handle(bidder)
        exposure = registry.core.user(handle).exposure_kobo
        held = restarted.decision_of(auction)
        snapshot_view = restarted.held(auction)
        # The restarted engine's sweep expires it once the seller's turn has passed.
        world.clock.advance(DEFAULT_COUNTER_WINDOW_MS)
        after_restart = SellerDecisions(world.pool, restarted, world.clock)
        expired = await after_restart.expire_due()
        again = await after_restart.expire_due()
        released = registry.core.user(handle).exposure_kobo
    finally:
        await restarted.close()

    assert exposure == deposit(PRICE + 3 * STEP)
    assert held == (bidder, PRICE + 3 * STEP)
    assert snapshot_view is None  # not shown as an auction: only its bidder's hold
    assert [(step.state, step.status) for step in expired] == [("expired", "unsold")]
    assert again == []
    assert released == 0


async def test_a_bid_on_an_auction_awaiting_its_seller_is_auction_ended(world: World) -> None:
    bidder, late = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.deciding([(bidder, PRICE)])

    reply = await world.api.bid(late, auction, RESERVE)

    assert (reply.status, reply.code) == (409, "auction_ended")
    snapshot = await world.api.call("GET", f"/api/auctions/{auction}")
    assert snapshot.body["auction"]["status"] == "seller_decision"
    assert snapshot.body["auction"]["current_price_kobo"] == PRICE
    listed = await world.api.call("GET", "/api/auctions?status=seller_decision")
    assert [a["id"] for a in listed.body["auctions"]] == [str(auction)]
    mine = await world.api.as_user(bidder, "GET", f"/api/auctions/{auction}")
    assert mine.body["you"]["status"] == "seller_decision"
    bids = await world.api.as_user(bidder, "GET", "/api/me/bids")
    assert bids.body["auctions"][0]["you"]["status"] == "seller_decision"


# ---- the room, on a real socket ----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "you"),
    [("accept", "pending_settlement", "won"), ("decline", "unsold", "lost")],
)
async def test_the_room_hears_the_seller_decide_and_then_the_outcome(
    pool: Any, database_url: str, answer: str, status: str, you: str
) -> None:
    room = await make_room(pool, bidders=2, auction_type="reserve", reserve_kobo=RESERVE)
    alice, bob = room.bidders
    manager = await create_user(pool, role="manager")
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(room.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=room.token(alice))
        b = await RoomClient.connect(session, url, token=room.token(bob))
        await a.bid(PRICE)
        await b.bid(PRICE + STEP)

        async def post(path: str, token: str, body: dict[str, Any]) -> Any:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{served.base}{path}", json=body, headers=headers) as reply:
                assert reply.status == 200, await reply.text()
                return await reply.json()

        staff = mint_token(manager, "manager", WS_SECRET)
        await post(
            f"/internal/admin/auctions/{room.auction_id}/force-end", staff, {"reason": "now"}
        )
        ended = await guest.expect("ended")
        assert ended == {
            "type": "ended",
            "seq": ended["seq"],
            "result": "seller_decision",
            "final_price_kobo": PRICE + STEP,
            "winner": None,
        }
        assert (await b.expect("you", status="seller_decision"))["available_kobo"] is not None
        await a.expect("you", status="lost")

        seller = room.token(room.seller)
        await post(f"/api/auctions/{room.auction_id}/offer", seller, {"action": answer})

        state = await guest.expect("state", status=status)
        assert state["seq"] == ended["seq"] + 1
        await b.expect("you", status=you)
        await guest.send(type="resume", last_seq=-1)
        assert (await guest.expect("snapshot"))["auction"]["status"] == status
