"""The seller's decision below the reserve (the if-bid) as a client sees it, written
from API.md and RULES.md alone: the engine runs as its own server process with its
timed jobs, and this test talks to it only as the platform (the internal API, with
the service token), the seller and the bidders (JWTs minted as API.md describes
them, the public API and the room sockets) and a guest watcher do. Nothing in it
reads the engine's code or database.

What each assertion rests on:
- RULES.md, end processing: "A reserve applies (`auction_type = reserve` ...) and
  the top real bid `< reserve_price` ... → `seller_decision` on that top real bid";
  API.md: `ended` carries `result` `seller_decision`, and `you` `seller_decision` is
  "sent to that bidder alone".
- RULES.md, if-bid: "for `if_bid_window_ms`"; "The high bid stays binding: the
  bidder stays exposed `deposit(high_bid)` until the decision"; the seller may
  "counter with `amount_kobo` (high bid < counter < reserve) → the high bidder has
  `counter_window_ms` ... to accept (a win at the counter ...)"; "At most 3
  counters"; "No answer in time → `unsold`".
- API.md, `GET /api/auctions/{id}/offer` for the "seller, high bidder, manager":
  `state`, `high_bid_kobo`, `offers` [{`by`, `amount_kobo`, `at_ms`}], `turn`
  (null once decided), `deadline_ms`; `POST` by "whoever's turn it is", refused
  409 `not_your_turn` or `counter_out_of_range`; "403 role or ownership" for
  anyone else. RULES.md: "A rejected bid changes nothing", and the project's rule
  for every refusal: nothing changed (the offer is read again after each).
- RULES.md, accept: "exactly as a win ... (deposit hold, `pending_settlement`,
  notices)", where "a deposit hold of `deposit(winning_amount)` moves from the
  winner's wallet: `users.wallet_balance` decreases"; `deposit(a) = ceil(a *
  deposit_pct_bp / 10000)`; API.md's wallet body (`balance_kobo`,
  `exposure_kobo`, `available_kobo`, `held_kobo`, `due_kobo`) at `GET
  /api/me/wallet`; the winner gets `you` `won`.
- RULES.md, settlement: "The amount due at settlement is the winning amount minus
  the deposit held"; payments "through the internal API ... When the remaining
  amount is paid: ... auction `settled`"; API.md: `POST
  /internal/auctions/{id}/payments` takes `amount_kobo`, `reference`.
- API.md, `GET /internal/admin/revenue?from_ms&to_ms`: "GMV, commissions,
  forfeited deposits, auctions sold/unsold, by day". Neither document names the
  body's fields (the `_kobo` suffix is API.md's rule for amounts) nor sets a
  commission rate: a platform that configured none (a fresh one) takes none,
  so the commission here is 0 and the GMV the agreed price.
- RULES.md, reserve protection: platform bids only while `current_price <
  reserve_price * 0.90`; each auction here opens on a pre-bid at a start price
  above that, so no platform bid can take part.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.blackbox import SERVICE_TOKEN, Client, bearer_for, engine_process, now_ms
from tests.ws_helpers import RoomClient

START = 200_000_000  # ₦2,000,000: the high bid, the one pre-bid opening the auction
RESERVE = 210_000_000  # START is above 90 % of it: no reserve-protection bid
STEP = 5_000_000
COUNTER = 204_321_987  # strictly between START and RESERVE
DEPOSIT_BP = 1_234  # 12.34 %: deposit(COUNTER) is not a whole number before ceil
FUNDS = 1_000_000_000  # ₦10,000,000
IF_BID_WINDOW_MS = 60_000  # the negotiation fits well inside both windows
COUNTER_WINDOW_MS = 45_000
#: The scheduler opens and closes an auction within 1 s of its time (RULES.md).
SCHEDULER_S = 1.0


def deposit(amount_kobo: int) -> int:
    """RULES.md: ceil(a * deposit_pct_bp / 10000), in integers."""
    return -(-amount_kobo * DEPOSIT_BP // 10_000)


@dataclass(frozen=True)
class Party:
    id: uuid.UUID
    token: str


@dataclass(frozen=True)
class Deciding:
    """An auction that ended below its reserve, as its room and parties saw it."""

    auction: uuid.UUID
    seller: Party
    bidder: Party
    stranger: Party
    guest: RoomClient
    high: RoomClient  # the high bidder's socket
    ended: dict[str, Any]  # the room's `ended`
    end_time_ms: int


class Engine(Client):
    async def user(self, role: str = "user", funds: int = 0) -> Party:
        user_id = await self.new_user(role, funds)
        return Party(user_id, bearer_for(user_id, role))

    async def reserve_auction(
        self, dealer: Party, *, starts_in_ms: int, lasts_ms: int, if_bid_window_ms: int
    ) -> tuple[uuid.UUID, int]:
        """A dealer's scheduled reserve auction; its id and end time."""
        vehicle = await self.new_vehicle(dealer.id, "Toyota", "Camry", 2019)
        start = now_ms() + starts_in_ms
        created = await self.platform(
            "POST",
            "/internal/auctions",
            {
                "vehicle_id": vehicle,
                "created_by": str(dealer.id),
                "auction_type": "reserve",
                "status": "scheduled",
                "start_time_ms": start,
                "end_time_ms": start + lasts_ms,
                "start_price_kobo": START,
                "reserve_price_kobo": RESERVE,
                "bid_increment_kobo": STEP,
                "deposit_pct_bp": DEPOSIT_BP,
                # No bid here comes within a millisecond of the end: none extends it.
                "anti_snipe_window_ms": 1,
                "anti_snipe_extension_ms": 1,
                "if_bid_window_ms": if_bid_window_ms,
                "counter_window_ms": COUNTER_WINDOW_MS,
            },
        )
        return uuid.UUID(created["auction"]["id"]), start + lasts_ms

    async def room(self, auction: uuid.UUID, party: Party | None = None) -> RoomClient:
        token = party.token if party is not None else None
        return await RoomClient.connect(self.http, self.server.room_url(auction), token=token)

    async def deciding(self, *, if_bid_window_ms: int) -> Deciding:
        """A reserve auction whose one bidder's pre-bid opens it at START, below the
        reserve; returned once its room has heard it end to the seller's decision."""
        seller = await self.user(role="dealer")
        bidder = await self.user(funds=FUNDS)
        stranger = await self.user(funds=FUNDS)
        auction, end_time_ms = await self.reserve_auction(
            seller, starts_in_ms=1_500, lasts_ms=1_000, if_bid_window_ms=if_bid_window_ms
        )
        guest = await self.room(auction)
        high = await self.room(auction, bidder)
        status, answer = await self.call(
            "POST",
            f"/api/auctions/{auction}/max",
            bidder.token,
            {"max_kobo": START, "client_bid_id": "pre-bid"},
        )
        assert (status, answer["max"]["leading"]) == (201, True), answer

        opening = await guest.expect("bid", wait_s=1.5 + SCHEDULER_S + 2)
        assert (opening["amount_kobo"], opening["is_platform_bid"]) == (START, False)
        ended = await guest.expect("ended", wait_s=1.0 + SCHEDULER_S + 2)
        return Deciding(auction, seller, bidder, stranger, guest, high, ended, end_time_ms)

    async def offer(self, auction: uuid.UUID, party: Party) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/auctions/{auction}/offer", party.token)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def answer(
        self, auction: uuid.UUID, party: Party, action: str, amount_kobo: int | None = None
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {"action": action}
        if amount_kobo is not None:
            body["amount_kobo"] = amount_kobo
        return await self.call("POST", f"/api/auctions/{auction}/offer", party.token, body)

    async def wallet(self, party: Party) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/me/wallet", party.token)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def status_of(self, auction: uuid.UUID) -> str:
        status, body = await self.call("GET", f"/api/auctions/{auction}")
        assert status == 200, body
        return body["auction"]["status"]  # type: ignore[no-any-return]

    async def revenue(self, from_ms: int, to_ms: int) -> dict[str, int]:
        """The report's figures over its days (API.md: "by day")."""
        body = await self.platform(
            "GET", f"/internal/admin/revenue?from_ms={from_ms}&to_ms={to_ms}"
        )
        figures = ("gmv_kobo", "commissions_kobo", "forfeited_deposits_kobo", "sold", "unsold")
        return {name: sum(day[name] for day in body["days"]) for name in figures}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with engine_process(database_url) as (server, http):
        yield Engine(server, http)


async def refused(
    engine: Engine,
    deciding: Deciding,
    party: Party,
    action: str,
    amount_kobo: int | None,
    expected: tuple[int, str | None],
) -> None:
    """The answer is refused as API.md says (an error body a client can show), and
    the negotiation reads the same before and after it, to the seller and the bidder."""
    before = await engine.offer(deciding.auction, deciding.seller)
    status, body = await engine.answer(deciding.auction, party, action, amount_kobo)
    code, message = body["error"]["code"], body["error"]["message"]
    assert status == expected[0], body
    if expected[1] is not None:
        assert code == expected[1], body
    assert isinstance(message, str) and message
    assert await engine.offer(deciding.auction, deciding.seller) == before
    assert await engine.offer(deciding.auction, deciding.bidder) == before


async def countered_and_accepted(engine: Engine) -> Deciding:
    """Ends an auction below its reserve, the seller counters and the bidder accepts,
    checking every step as a client sees it."""
    deciding = await engine.deciding(if_bid_window_ms=IF_BID_WINDOW_MS)
    auction, seller, bidder = deciding.auction, deciding.seller, deciding.bidder

    # 1. Ended below the reserve: the seller decides on the top real bid.
    assert deciding.ended["result"] == "seller_decision"
    assert (deciding.ended["final_price_kobo"], deciding.ended["winner"]) == (START, None)
    await deciding.high.expect("you", status="seller_decision")
    assert await engine.status_of(auction) == "seller_decision"
    read_at = now_ms()
    opened = await engine.offer(auction, seller)
    assert await engine.offer(auction, bidder) == opened
    assert (opened["state"], opened["high_bid_kobo"], opened["offers"]) == ("open", START, [])
    assert opened["turn"] == "seller"
    # The seller has if_bid_window_ms from the end (end processing follows the end time).
    assert (
        deciding.end_time_ms + IF_BID_WINDOW_MS
        <= opened["deadline_ms"]
        <= read_at + IF_BID_WINDOW_MS
    )
    held = await engine.wallet(bidder)  # the high bid binds: exposed deposit(high bid)
    assert (held["balance_kobo"], held["exposure_kobo"]) == (FUNDS, deposit(START))
    assert (held["available_kobo"], held["held_kobo"], held["due_kobo"]) == (
        FUNDS - deposit(START),
        0,
        0,
    )

    # Refusals a client can hit; each leaves the negotiation as it was.
    await refused(engine, deciding, bidder, "counter", COUNTER, (409, "not_your_turn"))
    await refused(engine, deciding, bidder, "accept", None, (409, "not_your_turn"))
    for outside in (START, RESERVE, START - STEP, RESERVE + STEP):
        await refused(engine, deciding, seller, "counter", outside, (409, "counter_out_of_range"))
    await refused(engine, deciding, deciding.stranger, "counter", COUNTER, (403, None))
    await refused(engine, deciding, deciding.stranger, "accept", None, (403, None))
    status, body = await engine.call(
        "GET", f"/api/auctions/{auction}/offer", deciding.stranger.token
    )
    assert status == 403 and set(body) == {"error"}, body

    # 2. The seller counters: the bidder's turn, for counter_window_ms.
    before = now_ms()
    status, countered = await engine.answer(auction, seller, "counter", COUNTER)
    after = now_ms()
    assert status == 200, countered
    for reader in (seller, bidder):
        seen = await engine.offer(auction, reader)
        assert (seen["state"], seen["turn"], seen["high_bid_kobo"]) == ("open", "bidder", START)
        (made,) = seen["offers"]  # one of the three counters RULES.md allows
        assert (made["by"], made["amount_kobo"]) == ("seller", COUNTER)
        assert before <= made["at_ms"] <= after
        assert seen["deadline_ms"] == made["at_ms"] + COUNTER_WINDOW_MS
    await refused(engine, deciding, seller, "counter", COUNTER + 1, (409, "not_your_turn"))
    await refused(engine, deciding, seller, "accept", None, (409, "not_your_turn"))
    await refused(engine, deciding, bidder, "counter", RESERVE, (409, "counter_out_of_range"))
    await refused(engine, deciding, bidder, "counter", START, (409, "counter_out_of_range"))

    # 3. The bidder accepts: a win at the counter.
    status, accepted = await engine.answer(auction, bidder, "accept")
    assert status == 200, accepted
    decided = await engine.offer(auction, seller)
    assert await engine.offer(auction, bidder) == decided
    assert (decided["state"], decided["turn"]) == ("accepted", None)
    assert [(o["by"], o["amount_kobo"]) for o in decided["offers"]] == [("seller", COUNTER)]
    return deciding


async def test_the_seller_counters_and_the_bidder_accepting_wins_at_the_counter_with_its_deposit(
    engine: Engine,
) -> None:
    deciding = await countered_and_accepted(engine)
    auction, bidder = deciding.auction, deciding.bidder

    # The outcome in the room: the auction's new status, and `won` to the bidder alone.
    # Counters are no room event (API.md lists none), so the outcome is the next seq.
    state = await deciding.guest.expect("state", status="pending_settlement")
    assert state["seq"] == deciding.ended["seq"] + 1
    await deciding.high.expect("you", status="won")
    heard = deciding.guest.seen + await deciding.guest.silence(0.3)
    assert [m for m in heard if m["type"] == "you"] == []  # a guest is told no standing

    # The public API: the auction pending settlement, the bidder its winner.
    assert await engine.status_of(auction) == "pending_settlement"
    status, mine = await engine.call("GET", f"/api/auctions/{auction}", bidder.token)
    assert status == 200 and mine["you"]["status"] == "won", mine
    status, bids = await engine.call("GET", "/api/me/bids", bidder.token)
    assert status == 200, bids
    (entry,) = [a for a in bids["auctions"] if a["auction"]["id"] == str(auction)]
    assert entry["you"]["status"] == "won"

    # The deposit hold at deposit(agreed amount) has left the balance; nothing due.
    wallet = await engine.wallet(bidder)
    assert wallet["held_kobo"] == deposit(COUNTER)
    assert wallet["balance_kobo"] == FUNDS - deposit(COUNTER)
    assert (wallet["exposure_kobo"], wallet["due_kobo"]) == (0, 0)
    assert wallet["available_kobo"] == FUNDS - deposit(COUNTER)


async def test_the_countered_sale_settles_and_reaches_the_revenue_report_at_the_agreed_price(
    engine: Engine,
) -> None:
    since = now_ms()
    deciding = await countered_and_accepted(engine)
    auction, bidder = deciding.auction, deciding.bidder

    # The platform settles the sale as API.md lets it: the rest of the price.
    status, paid = await engine.call(
        "POST",
        f"/internal/auctions/{auction}/payments",
        SERVICE_TOKEN,
        {"amount_kobo": COUNTER - deposit(COUNTER), "reference": f"pay-{auction.hex}"},
    )
    assert status == 201, (status, paid)
    assert paid["settlement"]["paid_kobo"] == COUNTER - deposit(COUNTER)
    assert await engine.status_of(auction) == "settled"
    wallet = await engine.wallet(bidder)  # the hold became payment; the payment came from outside
    assert (wallet["balance_kobo"], wallet["held_kobo"], wallet["due_kobo"]) == (
        FUNDS - deposit(COUNTER),
        0,
        0,
    )

    report = await engine.revenue(since, now_ms() + 1)
    assert (report["gmv_kobo"], report["sold"], report["unsold"]) == (COUNTER, 1, 0)
    assert report["forfeited_deposits_kobo"] == 0
    assert report["commissions_kobo"] == 0


async def test_an_if_bid_nobody_answers_is_unsold_after_its_window_once(engine: Engine) -> None:
    since = now_ms()
    window_ms = 1_000
    deciding = await engine.deciding(if_bid_window_ms=window_ms)
    auction, seller, bidder = deciding.auction, deciding.seller, deciding.bidder
    assert deciding.ended["result"] == "seller_decision"
    opened = await engine.offer(auction, seller)
    assert (opened["state"], opened["turn"]) == ("open", "seller")
    deadline_ms = opened["deadline_ms"]

    # RULES.md gives no bound on how soon after its deadline; the test allows 15 s.
    unsold = await deciding.guest.expect("state", wait_s=15, status="unsold")
    heard_at = now_ms()
    assert heard_at >= deadline_ms
    await deciding.high.expect("you", status="lost")

    assert await engine.status_of(auction) == "unsold"
    expired = await engine.offer(auction, bidder)
    assert await engine.offer(auction, seller) == expired
    assert (expired["state"], expired["turn"], expired["offers"]) == ("expired", None, [])
    await refused(engine, deciding, seller, "accept", None, (409, "offer_expired"))
    await refused(engine, deciding, bidder, "counter", COUNTER, (409, "offer_expired"))
    wallet = await engine.wallet(bidder)  # the decision made: the bid binds no more
    assert (wallet["exposure_kobo"], wallet["available_kobo"]) == (0, FUNDS)

    # Once: no second outcome reaches the room, and the report counts one unsold.
    rest = await deciding.guest.silence(max(0.0, 6.0 - (now_ms() - heard_at) / 1000))
    assert [m for m in rest if m["type"] in ("state", "ended")] == []
    fresh = await engine.room(auction)
    assert fresh.snapshot["seq"] == unsold["seq"]
    assert fresh.snapshot["auction"]["status"] == "unsold"
    report = await engine.revenue(since, now_ms() + 1)
    assert (report["unsold"], report["sold"], report["gmv_kobo"]) == (1, 0, 0)
