"""Settlement on a driven clock against the real database: deposits held or due,
payments (partial, idempotent, refused), a credit taking a due deposit,
withdrawals, and the second-chance chain after missed deadlines."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.clock import ManualClock, to_ms
from engine.money import format_naira, kobo_to_naira, naira_to_kobo
from engine.offers import PAYMENT_WINDOW_MS
from engine.roles import PLATFORM_USER_ID
from jobs.lifecycle import Lifecycle
from jobs.settlement import SettlementDeadlines
from server.app import create_app
from tests.http_helpers import HOUR_MS, PRICE, STEP, Api, Reply, now_ms, settings
from web.keys import ADMIN_HOOKS, AdminHooks

FUNDS = 200_000_000  # ₦2,000,000 in each bidder's wallet


def deposit(amount: int) -> int:
    return amount // 5  # 20 %, whole kobo for every amount used here


@dataclass
class Published:
    """Stands in for the rooms: what approve/reject/void/unsold would announce."""

    states: list[tuple[uuid.UUID, int, str, int]] = field(default_factory=list)

    def publish_state(self, auction_id: uuid.UUID, seq: int, status: str, end_time_ms: int) -> None:
        self.states.append((auction_id, seq, status, end_time_ms))


@dataclass
class World:
    api: Api
    clock: ManualClock
    lifecycle: Lifecycle
    deadlines: SettlementDeadlines
    published: Published

    @property
    def pool(self) -> Any:
        return self.api.pool

    async def live(self, **fields: Any) -> tuple[uuid.UUID, int]:
        """A live auction (₦1,000,000 start, ₦50,000 steps, 20 % deposit), its end."""
        start = self.clock.now_ms() - 1000
        auction = await self.api.live_auction(
            start_time_ms=start, end_time_ms=start + HOUR_MS, **fields
        )
        return auction, start + HOUR_MS

    async def won(self, bids: list[tuple[uuid.UUID, int]], **fields: Any) -> uuid.UUID:
        """A live auction with these bids, in order, ended and end-processed."""
        auction, end = await self.live(**fields)
        for user, amount in bids:
            reply = await self.api.bid(user, auction, amount)
            assert reply.status == 201, reply.text
        self.clock.set(end)
        await self.lifecycle.tick()
        return auction

    async def pay(
        self,
        auction: uuid.UUID,
        amount: int,
        reference: str | None = None,
        payer: uuid.UUID | None = None,
    ) -> Reply:
        """A payment from `payer` (default: whoever holds the open offer, as the
        provider would report the buyer who paid)."""
        if payer is None:
            payer = (
                await self.pool.fetchval("SELECT winner_id FROM auctions WHERE id = $1", auction)
                or uuid.uuid4()
            )
        body = {"payer_id": str(payer), "amount_kobo": amount, "reference": reference}
        body["reference"] = reference or uuid.uuid4().hex
        return await self.api.service("POST", f"/internal/auctions/{auction}/payments", body)

    async def pass_deadline(self, auction: uuid.UUID) -> list[Any]:
        deadline = await self.pool.fetchval(
            "SELECT payment_deadline FROM auctions WHERE id = $1", auction
        )
        self.clock.set(to_ms(deadline))
        return await self.deadlines.run()

    async def balance(self, user: uuid.UUID) -> int:
        naira = await self.pool.fetchval("SELECT wallet_balance FROM users WHERE id = $1", user)
        return naira_to_kobo(naira)

    def core_balance(self, user: uuid.UUID) -> int:
        registry = self.api.sequencer.registry
        return registry.core.user(registry.user_handle(user)).balance_kobo

    async def assert_balances(self, expected: dict[uuid.UUID, int]) -> None:
        for user, kobo in expected.items():
            assert (await self.balance(user), self.core_balance(user)) == (kobo, kobo), user

    async def auction(self, auction: uuid.UUID) -> Any:
        return await self.pool.fetchrow(
            "SELECT a.*, v.status AS vehicle_status, v.owner_id FROM auctions a"
            " JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1",
            auction,
        )

    async def offer(self, auction: uuid.UUID, user: uuid.UUID) -> Any:
        return await self.pool.fetchrow(
            "SELECT * FROM settlement_offers WHERE auction_id = $1 AND user_id = $2",
            auction,
            user,
        )

    async def transactions(self, user: uuid.UUID, kind: str | None = None) -> list[Any]:
        rows = await self.pool.fetch(
            "SELECT * FROM transactions WHERE user_id = $1 ORDER BY created_at, type", user
        )
        return [row for row in rows if kind is None or row["type"] == kind]


class LateFinisher:
    """Staff actions' end processing on the test's clock, made once the app runs."""

    lifecycle: Lifecycle | None = None

    async def end(self, auction_id: uuid.UUID, leader: uuid.UUID | None) -> Any:
        assert self.lifecycle is not None
        return await self.lifecycle.end(auction_id, leader)


async def make_world(database_url: str, aiohttp_client: Any) -> World:
    clock = ManualClock(now_ms())
    published = Published()
    app = create_app(settings(database_url), clock=clock)
    finisher = LateFinisher()
    app[ADMIN_HOOKS] = AdminHooks(finisher=finisher, publisher=published)
    api = Api(await aiohttp_client(app))
    finisher.lifecycle = Lifecycle(api.pool, api.sequencer, clock)
    return World(
        api,
        clock,
        finisher.lifecycle,
        SettlementDeadlines(api.pool, api.sequencer, clock, published),
        published,
    )


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any) -> World:
    return await make_world(database_url, aiohttp_client)


# ---- the deposit at the end ----------------------------------------------------------


async def test_the_winners_deposit_is_held_and_withdrawals_wait(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])

    wallet = await world.api.wallet(winner)
    refused = await world.api.debit(winner, 1)

    assert (wallet["balance_kobo"], wallet["held_kobo"], wallet["due_kobo"]) == (
        FUNDS - deposit(PRICE),
        deposit(PRICE),
        0,
    )
    assert (refused.status, refused.code) == (409, "committed_capital")
    offer = await world.offer(auction, winner)
    assert (offer["deposit_status"], offer["outcome"]) == ("held", "open")
    await world.assert_balances({winner: FUNDS - deposit(PRICE)})


async def test_settlement_reads_what_is_due_after_the_hold(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])

    reply = await world.api.service("GET", f"/internal/auctions/{auction}/settlement")

    assert reply.status == 200, reply.text
    assert reply.body["settlement"] == {
        "auction_id": str(auction),
        "status": "pending_settlement",
        "buyer_id": str(winner),
        "offer_outcome": "open",
        "amount_kobo": PRICE,
        "deposit_kobo": deposit(PRICE),
        "deposit_status": "held",
        "paid_kobo": 0,
        "due_kobo": PRICE - deposit(PRICE),
        "payment_deadline_ms": world.clock.now_ms() + PAYMENT_WINDOW_MS,
    }


# ---- payments ---------------------------------------------------------------------------


async def test_partial_payments_add_up_and_the_last_one_settles(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    due = PRICE - deposit(PRICE)

    first = await world.pay(auction, 30_000_000, "psk-1")
    second = await world.pay(auction, due - 30_000_000, "psk-2")

    assert first.status == 201, first.text
    assert first.body["settlement"]["paid_kobo"] == 30_000_000
    assert first.body["settlement"]["due_kobo"] == due - 30_000_000
    assert first.body["settlement"]["status"] == "pending_settlement"
    assert first.body["payment"]["reference"] == "psk-1"
    assert second.status == 201, second.text
    assert second.body["settlement"] == {
        **first.body["settlement"],
        "status": "settled",
        "offer_outcome": "paid",
        "deposit_status": "applied",
        "paid_kobo": due,
        "due_kobo": 0,
    }
    row = await world.auction(auction)
    assert (row["status"], row["vehicle_status"], row["owner_id"]) == (
        "settled",
        "in_settlement",
        winner,
    )
    payments = await world.transactions(winner, "auction_payment")
    assert [naira_to_kobo(p["amount"]) for p in payments] == [30_000_000, due - 30_000_000]
    assert {(p["status"], p["reference_id"], p["reference_type"]) for p in payments} == {
        ("completed", auction, "auction")
    }
    # The money came from the provider: the wallet's balance did not move.
    assert {naira_to_kobo(p["balance_after"]) for p in payments} == {FUNDS - deposit(PRICE)}
    await world.assert_balances({winner: FUNDS - deposit(PRICE)})


async def test_the_last_payment_replayed_after_settlement_answers_the_same(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    first = await world.pay(auction, PRICE - deposit(PRICE), "final")

    again = await world.pay(auction, PRICE - deposit(PRICE), "final")

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert again.body["settlement"]["status"] == "settled"


async def test_a_deposit_of_the_whole_price_settles_at_the_end(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)], deposit_pct_bp=10_000)

    row = await world.auction(auction)

    assert (row["status"], row["owner_id"], row["vehicle_status"]) == (
        "settled",
        winner,
        "in_settlement",
    )
    assert (await world.offer(auction, winner))["deposit_status"] == "applied"
    await world.assert_balances({winner: FUNDS - PRICE})
    assert (await world.api.wallet(winner))["held_kobo"] == 0


async def test_settlement_of_an_unsold_or_unknown_auction_is_404(world: World) -> None:
    unsold = await world.won([])
    for auction, code in ((unsold, "no_settlement"), (uuid.uuid4(), "not_found")):
        reply = await world.api.service("GET", f"/internal/auctions/{auction}/settlement")
        assert (reply.status, reply.code) == (404, code)


async def test_withdrawal_is_allowed_once_the_auction_is_settled(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    assert (await world.pay(auction, PRICE - deposit(PRICE))).status == 201

    wallet = await world.api.wallet(winner)
    reply = await world.api.debit(winner, FUNDS - deposit(PRICE))

    assert (wallet["held_kobo"], wallet["due_kobo"]) == (0, 0)
    assert reply.status == 201, reply.text
    await world.assert_balances({winner: 0})


async def test_the_same_reference_pays_once_and_answers_the_same(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])

    first = await world.pay(auction, 10_000_000, "webhook-7")
    again = await world.pay(auction, 10_000_000, "webhook-7")
    raced = await asyncio.gather(*(world.pay(auction, 5_000_000, "webhook-8") for _ in range(5)))

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert sorted(r.status for r in raced) == [200, 200, 200, 200, 201]
    assert len(await world.transactions(winner, "auction_payment")) == 2
    settlement = raced[0].body["settlement"]
    assert settlement["paid_kobo"] == 15_000_000


async def test_a_reference_reused_for_another_amount_or_auction_is_409(world: World) -> None:
    one, two = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won([(one, PRICE)])
    other = await world.won([(two, PRICE)])
    assert (await world.pay(auction, 10_000_000, "ref-x")).status == 201

    amount = await world.pay(auction, 20_000_000, "ref-x")
    elsewhere = await world.pay(other, 10_000_000, "ref-x")

    assert (amount.status, amount.code) == (409, "reference_conflict")
    assert (elsewhere.status, elsewhere.code) == (409, "reference_conflict")
    assert len(await world.transactions(two, "auction_payment")) == 0


async def test_a_payment_names_its_payer_and_only_the_open_offers_buyer_may_pay(
    world: World,
) -> None:
    winner, stranger = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])

    reply = await world.pay(auction, 10_000_000, "from-a-stranger", payer=stranger)

    assert (reply.status, reply.code) == (409, "not_the_buyer")
    assert await world.transactions(stranger, "auction_payment") == []
    assert await world.transactions(winner, "auction_payment") == []


async def test_a_payment_naming_no_payer_is_the_buyers_while_the_offer_never_moved(
    world: World,
) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    path = f"/internal/auctions/{auction}/payments"
    body = {"amount_kobo": 10_000_000, "reference": "api-md-body"}

    unnamed = await world.api.service("POST", path, body)
    again = await world.api.service("POST", path, body)

    assert unnamed.status == 201, unnamed.text
    assert again.status == 200, again.text
    assert unnamed.body["settlement"]["paid_kobo"] == 10_000_000
    assert again.body["payment"] == unnamed.body["payment"]
    assert len(await world.transactions(winner, "auction_payment")) == 1


async def test_after_a_default_a_payment_must_name_its_payer(world: World) -> None:
    first, second = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won([(second, PRICE), (first, PRICE + STEP)])
    await world.pass_deadline(auction)  # the offer moves to the second bidder

    unnamed = await world.api.service(
        "POST",
        f"/internal/auctions/{auction}/payments",
        {"amount_kobo": 10_000_000, "reference": "whose-now"},
    )

    assert (unnamed.status, unnamed.code) == (409, "payer_required")
    assert await world.transactions(first, "auction_payment") == []
    assert await world.transactions(second, "auction_payment") == []


async def test_after_a_default_the_first_buyers_late_transfer_is_not_the_next_buyers_payment(
    world: World,
) -> None:
    first, second = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won([(second, PRICE), (first, PRICE + STEP)])
    await world.pass_deadline(auction)  # the offer moves to the second bidder

    late = await world.pay(auction, 10_000_000, "late-transfer", payer=first)
    theirs = await world.pay(auction, 10_000_000, "second-pays", payer=second)

    assert (late.status, late.code) == (409, "not_the_buyer")
    assert theirs.status == 201, theirs.text
    assert theirs.body["settlement"]["paid_kobo"] == 10_000_000
    assert await world.transactions(first, "auction_payment") == []


async def test_a_payment_reference_replayed_for_another_payer_is_409(world: World) -> None:
    winner, other = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    assert (await world.pay(auction, 10_000_000, "ref-p", payer=winner)).status == 201

    replay = await world.pay(auction, 10_000_000, "ref-p", payer=other)

    assert (replay.status, replay.code) == (409, "reference_conflict")


async def test_one_provider_reference_is_one_transaction_whatever_its_kind(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    assert (await world.api.credit(winner, 1_000, "psk-one")).status == 201

    as_payment = await world.pay(auction, 1_000, "psk-one")
    assert (await world.pay(auction, 1_000, "psk-two")).status == 201
    as_credit = await world.api.credit(winner, 1_000, "psk-two")
    as_withdrawal = await world.api.debit(winner, 1_000, "psk-one")

    for reply in (as_payment, as_credit, as_withdrawal):
        assert (reply.status, reply.code) == (409, "reference_conflict"), reply.text
    assert "already used for a wallet credit" in as_payment.body["error"]["message"]
    assert "already used for a settlement payment" in as_credit.body["error"]["message"]
    assert len(await world.transactions(winner, "deposit")) == 2  # FUNDS, then psk-one
    assert len(await world.transactions(winner, "auction_payment")) == 1


async def test_a_credit_and_a_payment_racing_on_one_reference_book_one(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])

    replies = await asyncio.gather(
        *(world.api.credit(winner, 1_000, "psk-race") for _ in range(3)),
        *(world.pay(auction, 1_000, "psk-race") for _ in range(3)),
    )

    booked = await world.pool.fetchval(
        "SELECT count(*) FROM transactions WHERE paystack_ref = 'psk-race'"
    )
    assert booked == 1
    statuses = sorted(reply.status for reply in replies)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, statuses


async def test_an_overpayment_is_refused_and_names_the_amount_due(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    assert (await world.pay(auction, 50_000_000)).status == 201
    due = PRICE - deposit(PRICE) - 50_000_000

    reply = await world.pay(auction, due + 1)

    assert (reply.status, reply.code) == (409, "overpayment")
    assert format_naira(due) in reply.body["error"]["message"]
    assert len(await world.transactions(winner, "auction_payment")) == 1


async def test_payment_to_an_unknown_auction_is_404(world: World) -> None:
    reply = await world.pay(uuid.uuid4(), 100)
    assert (reply.status, reply.code) == (404, "not_found")


@pytest.mark.parametrize("state", ["live", "settled", "unsold"])
async def test_payment_to_an_auction_not_awaiting_one_is_409(world: World, state: str) -> None:
    bidder = await world.api.bidder(FUNDS)
    if state == "live":
        auction, _ = await world.live()
    elif state == "settled":
        auction = await world.won([(bidder, PRICE)])
        assert (await world.pay(auction, PRICE - deposit(PRICE))).status == 201
    else:
        auction = await world.won([])

    reply = await world.pay(auction, 100)

    assert (reply.status, reply.code) == (409, "not_awaiting_payment")


async def test_payment_after_the_deadline_is_409(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    world.clock.advance(PAYMENT_WINDOW_MS)

    reply = await world.pay(auction, 100)

    assert (reply.status, reply.code) == (409, "payment_deadline_passed")


async def test_payment_needs_the_service_token_and_a_valid_body(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    path = f"/internal/auctions/{auction}/payments"

    as_user = await world.api.as_user(winner, "POST", path, {"amount_kobo": 1, "reference": "r"})
    zero = await world.pay(auction, 0)
    blank = await world.pay(auction, 100, " ")
    extra = await world.api.service("POST", path, {"amount_kobo": 1, "reference": "r", "x": 1})

    assert (as_user.status, as_user.code) == (401, "unauthenticated")
    assert (zero.status, zero.code) == (422, "invalid_amount")
    assert (blank.status, blank.code) == (422, "invalid_reference")
    assert (extra.status, extra.code) == (422, "invalid")


# ---- a deposit the wallet could not cover ---------------------------------------------


async def won_with_deposit_due(world: World) -> tuple[uuid.UUID, uuid.UUID]:
    winner = await world.api.bidder(deposit(PRICE))
    auction, end = await world.live()
    assert (await world.api.bid(winner, auction, PRICE)).status == 201
    # The money left by a path the engine does not guard (say a chargeback).
    await world.pool.execute("UPDATE users SET wallet_balance = 0 WHERE id = $1", winner)
    world.clock.set(end)
    await world.lifecycle.tick()
    return auction, winner


async def test_while_the_deposit_is_due_the_whole_price_is_due(world: World) -> None:
    auction, winner = await won_with_deposit_due(world)

    wallet = await world.api.wallet(winner)
    settlement = (await world.api.service("GET", f"/internal/auctions/{auction}/settlement")).body
    refused = await world.api.debit(winner, 1)

    assert (wallet["held_kobo"], wallet["due_kobo"]) == (0, deposit(PRICE))
    assert settlement["settlement"]["due_kobo"] == PRICE
    assert (refused.status, refused.code) == (409, "committed_capital")


async def test_a_credit_takes_the_due_deposit(world: World) -> None:
    auction, winner = await won_with_deposit_due(world)

    reply = await world.api.credit(winner, 30_000_000, "topup-1")

    assert reply.status == 201, reply.text
    assert (reply.body["balance_kobo"], reply.body["held_kobo"], reply.body["due_kobo"]) == (
        30_000_000 - deposit(PRICE),
        deposit(PRICE),
        0,
    )
    hold = (await world.transactions(winner, "bid_deposit_hold"))[0]
    assert (naira_to_kobo(hold["amount"]), naira_to_kobo(hold["balance_after"])) == (
        deposit(PRICE),
        30_000_000 - deposit(PRICE),
    )
    assert (hold["status"], hold["reference_id"]) == ("completed", auction)
    assert (await world.offer(auction, winner))["deposit_status"] == "held"
    settlement = (await world.api.service("GET", f"/internal/auctions/{auction}/settlement")).body
    assert settlement["settlement"]["due_kobo"] == PRICE - deposit(PRICE)
    await world.assert_balances({winner: 30_000_000 - deposit(PRICE)})


async def test_a_credit_too_small_for_the_due_deposit_leaves_it_due(world: World) -> None:
    auction, winner = await won_with_deposit_due(world)

    reply = await world.api.credit(winner, deposit(PRICE) - 1)

    assert (reply.body["balance_kobo"], reply.body["due_kobo"]) == (
        deposit(PRICE) - 1,
        deposit(PRICE),
    )
    assert (await world.offer(auction, winner))["deposit_status"] == "due"
    await world.assert_balances({winner: deposit(PRICE) - 1})


async def test_payments_while_the_deposit_is_due_can_settle_the_whole_price(world: World) -> None:
    auction, winner = await won_with_deposit_due(world)

    reply = await world.pay(auction, PRICE)

    assert reply.body["settlement"]["status"] == "settled"
    assert reply.body["settlement"]["deposit_status"] == "applied"
    assert (await world.api.wallet(winner))["due_kobo"] == 0


# ---- missed deadlines: the second-chance chain ---------------------------------------


async def test_second_chance_chain_over_three_bidders(world: World) -> None:
    api = world.api
    x, y, z = [await api.bidder(FUNDS) for _ in range(3)]
    y_top, x_top, z_top = PRICE + 4 * STEP, PRICE + 3 * STEP, PRICE + 2 * STEP
    auction = await world.won([(z, PRICE), (y, PRICE + STEP), (z, z_top), (x, x_top), (y, y_top)])
    await world.assert_balances({y: FUNDS - deposit(y_top), x: FUNDS, z: FUNDS})

    # Y misses the deadline: the deposit becomes revenue, X is offered at X's own top bid.
    first = await world.pass_deadline(auction)

    assert [(d.defaulter, d.successor, d.amount_kobo) for d in first] == [(y, x, x_top)]
    row = await world.auction(auction)
    assert (row["status"], row["winner_id"]) == ("pending_settlement", x)
    assert to_ms(row["payment_deadline"]) == world.clock.now_ms() + PAYMENT_WINDOW_MS
    y_offer = await world.offer(auction, y)
    assert (y_offer["outcome"], y_offer["deposit_status"]) == ("defaulted", "forfeited")
    await world.assert_balances(
        {
            y: FUNDS - deposit(y_top),
            x: FUNDS - deposit(x_top),
            z: FUNDS,
            PLATFORM_USER_ID: deposit(y_top),
        }
    )
    assert (await api.wallet(y))["held_kobo"] == 0
    assert (await api.wallet(x))["held_kobo"] == deposit(x_top)
    assert await kinds(world, x) == {("second_chance_offer", c) for c in ("email", "sms", "in_app")}
    assert ("payment_defaulted", "email") in await kinds(world, y)

    # X pays a part, then misses the deadline too: forfeited, the part refunded.
    assert (await world.pay(auction, 10_000_000)).status == 201
    second = await world.pass_deadline(auction)

    assert [(d.defaulter, d.successor, d.refunded_kobo) for d in second] == [(x, z, 10_000_000)]
    await world.assert_balances(
        {
            x: FUNDS - deposit(x_top) + 10_000_000,
            z: FUNDS - deposit(z_top),
            PLATFORM_USER_ID: deposit(y_top) + deposit(x_top),
        }
    )
    refund = (await world.transactions(x, "refund"))[0]
    assert naira_to_kobo(refund["balance_after"]) == FUNDS - deposit(x_top) + 10_000_000

    # Z pays in full: settled, Z owns the vehicle.
    paid = await world.pay(auction, z_top - deposit(z_top))

    assert paid.body["settlement"]["status"] == "settled"
    row = await world.auction(auction)
    assert (row["status"], row["winner_id"], row["owner_id"]) == ("settled", z, z)
    assert row["vehicle_status"] == "in_settlement"
    await world.assert_balances(
        {
            y: FUNDS - deposit(y_top),
            x: FUNDS - deposit(x_top) + 10_000_000,
            z: FUNDS - deposit(z_top),
            PLATFORM_USER_ID: deposit(y_top) + deposit(x_top),
        }
    )
    revenue = await world.transactions(PLATFORM_USER_ID, "commission_earned")
    assert [naira_to_kobo(r["amount"]) for r in revenue] == [deposit(y_top), deposit(x_top)]
    assert [naira_to_kobo(r["balance_after"]) for r in revenue] == [
        deposit(y_top),
        deposit(y_top) + deposit(x_top),
    ]
    assert {(r["status"], r["reference_id"]) for r in revenue} == {("completed", auction)}
    assert all("forfeit" in r["description"] for r in revenue)
    audit = await world.pool.fetch(
        "SELECT * FROM admin_audit_log WHERE target_id = $1 ORDER BY created_at", auction
    )
    assert [(a["admin_id"], a["action"], a["target_type"]) for a in audit] == [
        (PLATFORM_USER_ID, "deposit_forfeited", "auction")
    ] * 2
    assert [decoded(a["old_value"])["user_id"] for a in audit] == [str(y), str(x)]
    assert [decoded(a["new_value"])["deposit_status"] for a in audit] == ["forfeited"] * 2
    # Nobody owes anything now: all three may withdraw.
    assert (await api.debit(y, FUNDS - deposit(y_top))).status == 201


async def kinds(world: World, user: uuid.UUID) -> set[tuple[str, str]]:
    rows = await world.pool.fetch(
        "SELECT kind, channel FROM notifications WHERE user_id = $1", user
    )
    return {(row["kind"], row["channel"]) for row in rows if row["kind"] != "auction_lost"}


def decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def test_with_nobody_left_the_auction_is_unsold(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    last_seq = (await world.auction(auction))["last_seq"]

    (result,) = await world.pass_deadline(auction)

    assert (result.successor, result.status) == (None, "unsold")
    row = await world.auction(auction)
    assert (row["status"], row["winner_id"], row["payment_deadline"]) == ("unsold", None, None)
    assert row["vehicle_status"] == "available"
    assert world.published.states == [(auction, last_seq + 1, "unsold", to_ms(row["end_time"]))]
    assert row["last_seq"] == last_seq + 1
    await world.assert_balances({winner: FUNDS - deposit(PRICE), PLATFORM_USER_ID: deposit(PRICE)})


async def test_a_due_deposit_lapses_without_revenue(world: World) -> None:
    auction, winner = await won_with_deposit_due(world)

    await world.pass_deadline(auction)

    offer = await world.offer(auction, winner)
    assert (offer["outcome"], offer["deposit_status"]) == ("defaulted", "due")
    assert await world.transactions(PLATFORM_USER_ID) == []
    action = await world.pool.fetchval("SELECT action FROM admin_audit_log")
    assert action == "deposit_lapsed"
    assert (await world.api.wallet(winner))["due_kobo"] == 0


async def test_a_next_bidder_who_cannot_cover_the_deposit_owes_it(world: World) -> None:
    poor, rich = await world.api.bidder(deposit(PRICE)), await world.api.bidder(FUNDS)
    auction = await world.won([(poor, PRICE), (rich, PRICE + STEP)])
    await world.pool.execute("UPDATE users SET wallet_balance = 0 WHERE id = $1", poor)

    await world.pass_deadline(auction)

    offer = await world.offer(auction, poor)
    assert (offer["outcome"], offer["deposit_status"]) == ("open", "due")
    assert naira_to_kobo(offer["amount"]) == PRICE
    assert (await world.api.wallet(poor))["due_kobo"] == deposit(PRICE)


async def test_the_next_offer_skips_bids_below_a_binding_reserve(world: World) -> None:
    low, high = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won(
        [(low, PRICE), (high, PRICE + 2 * STEP)],
        auction_type="reserve",
        reserve_price_kobo=PRICE + STEP,
    )

    (result,) = await world.pass_deadline(auction)

    assert (result.successor, result.status) == (None, "unsold")
    assert await world.offer(auction, low) is None


async def test_the_next_offer_skips_a_bidder_who_may_no_longer_bid(world: World) -> None:
    gone, next_one, top = [await world.api.bidder(FUNDS) for _ in range(3)]
    auction = await world.won([(next_one, PRICE), (gone, PRICE + STEP), (top, PRICE + 2 * STEP)])
    await world.pool.execute("UPDATE users SET is_active = false WHERE id = $1", gone)

    (result,) = await world.pass_deadline(auction)

    assert (result.successor, result.amount_kobo) == (next_one, PRICE)
    assert await world.offer(auction, gone) is None


async def test_a_default_happens_once_when_two_sweeps_race(world: World) -> None:
    one, two = await world.api.bidder(FUNDS), await world.api.bidder(FUNDS)
    auction = await world.won([(one, PRICE), (two, PRICE + STEP)])
    deadline = (await world.auction(auction))["payment_deadline"]
    world.clock.set(to_ms(deadline))
    other = SettlementDeadlines(world.pool, world.api.sequencer, world.clock)

    results = await asyncio.gather(world.deadlines.run(), other.run())

    assert sum(len(r) for r in results) == 1
    assert len(await world.transactions(PLATFORM_USER_ID, "commission_earned")) == 1
    assert await world.pool.fetchval("SELECT count(*) FROM settlement_offers") == 2
    await world.assert_balances(
        {
            two: FUNDS - deposit(PRICE + STEP),
            one: FUNDS - deposit(PRICE),
            PLATFORM_USER_ID: deposit(PRICE + STEP),
        }
    )


async def test_an_offer_before_its_deadline_is_left_alone(world: World) -> None:
    winner = await world.api.bidder(FUNDS)
    auction = await world.won([(winner, PRICE)])
    world.clock.advance(PAYMENT_WINDOW_MS - 1)

    assert await world.deadlines.run() == []
    assert (await world.offer(auction, winner))["outcome"] == "open"


async def test_the_hold_row_and_offer_agree_to_the_kobo(world: World) -> None:
    winner = await world.api.bidder(FUNDS + 3)
    odd = PRICE + 3  # 20 % of it is not whole: the deposit rounds up
    auction, end = await world.live(start_price_kobo=odd)
    assert (await world.api.bid(winner, auction, odd)).status == 201
    world.clock.set(end)
    await world.lifecycle.tick()

    held = -(-odd * 2000 // 10000)
    offer = await world.offer(auction, winner)
    assert offer["deposit"] == kobo_to_naira(held)
    await world.assert_balances({winner: FUNDS + 3 - held})
    assert (await world.pay(auction, odd - held)).body["settlement"]["status"] == "settled"
