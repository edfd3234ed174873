"""The seed's own bid path, kept for side-by-side measurement: one transaction per bid.

Each bid is decided and written in its own READ COMMITTED transaction:

1. lock the auction row (`SELECT … FROM auctions … FOR UPDATE`), which
   serialises every bid on that auction — on a hot auction, a lock convoy;
2. lock the bidder's `users` row (FOR NO KEY UPDATE, after the auction, so the
   order is always the same): without it two bids by one bidder on two
   auctions could each count the other's deposit as absent and both pass
   the buying-power rule;
3. read what the rules need, in a statement that starts after both locks are
   held (so it sees every bid committed before them): the auction's leading
   bid (its highest seq), the bidder's exposure (deposits of their `is_winning`
   bids on other live auctions), whether they bid here before, and whether
   this `client_bid_id` is already in the ledger;
4. check RULES.md's rules in order, in Python, from those rows;
5. give the bid its bidder number and its hash in the bid log, chained on the
   leading (latest) bid's (engine/bidlog.py, as the core does);
6. insert the bid, flip `is_winning`, update the auction, COMMIT.

A rejected bid rolls back (so it never waits on a WAL flush). Outcomes, reason
codes and ledger rows are the Sequencer's: the same stream of bids with the
same clock gives the same codes and the same rows (tests/test_per_bid_ledger.py
holds the two equal). As there, only scheduled and live auctions take bids
(a bid on any other is `auction_ended` or `auction_not_live`), a `client_bid_id` already in
the ledger returns that bid, and a rejection is remembered in this process for
the same key. Like the seed says, a transaction that loses to a serialization
failure or a deadlock is tried once more, then refused with `unavailable`.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from dataclasses import dataclass

import asyncpg

import bidcore
from engine import bidlog, metrics
from engine.bids import (
    UNAVAILABLE,
    BidAccepted,
    BidOutcome,
    BidRejected,
    DurableBid,
    refusal_for_status,
    rejection,
)
from engine.clock import Clock, SystemClock, to_datetime, to_ms
from engine.errors import UNREACHABLE
from engine.money import deposit_bp, kobo_to_naira, naira_to_kobo
from engine.recovery import IdempotencyKey, find_bid
from engine.roles import PLATFORM_USER_ID, may_bid
from engine.sequencer import REJECTIONS_REMEMBERED

logger = logging.getLogger(__name__)

#: Bidder numbers ("Bidder 3") remembered per (auction, bidder); older ones are
#: read back from the ledger when asked for again.
BIDDER_NUMBERS_REMEMBERED = 1_000_000

_LOCK_AUCTION = """
SELECT a.status, a.created_by, v.listed_by, v.owner_id, a.start_time, a.end_time,
       a.start_price, a.bid_increment, a.deposit_pct, a.anti_snipe_window_ms,
       a.anti_snipe_extension_ms, a.bid_count, a.bidder_count, a.ai_bids_placed, a.last_seq
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id
WHERE a.id = $1
FOR UPDATE OF a
"""
_LOCK_BIDDER = """
SELECT role, kyc_status, is_active, wallet_balance FROM users WHERE id = $1 FOR NO KEY UPDATE
"""
# deposit(a) = ceil(a_kobo * bp / 10000) = ceil(a_naira * deposit_pct) kobo, exactly.
# The exposure starts from the bidder's own bids (a few), never from every live
# auction; the deposit of a lead on an auction no longer live is NULL, which
# sum() skips.
_STATE = """
SELECT lead.user_id AS leader, lead.amount AS leading_amount, lead.hash AS leading_hash,
       (SELECT min(seq) FROM bids
        WHERE auction_id = $1 AND user_id = $2 AND NOT is_platform_bid) AS first_seq,
       EXISTS (SELECT 1 FROM bids
               WHERE auction_id = $1 AND user_id = $2 AND client_bid_id = $3) AS duplicate,
       (SELECT coalesce(sum(ceil(b.amount * (SELECT a.deposit_pct FROM auctions a
                                             WHERE a.id = b.auction_id AND a.status = 'live'))), 0)
        FROM bids b
        WHERE b.user_id = $2 AND b.is_winning AND NOT b.is_platform_bid
          AND b.auction_id <> $1) AS exposure_kobo
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT user_id, amount, hash FROM bids WHERE auction_id = $1 ORDER BY seq DESC LIMIT 1
) AS lead ON true
"""
_WRITE = """
WITH outbid AS (
    UPDATE bids SET is_winning = false  -- the leader: the latest bid (sql/0014)
    WHERE id = (SELECT id FROM bids WHERE auction_id = $2 ORDER BY seq DESC LIMIT 1) AND is_winning
), bid AS (
    INSERT INTO bids (id, auction_id, user_id, amount, is_platform_bid, is_winning,
                      client_bid_id, seq, extended, end_time_after, created_at, hash)
    VALUES ($1, $2, $3, $4, $5, true, $6, $7, $8, $9, $10, $14)
)
UPDATE auctions
SET current_price = $4, bid_count = $11, bidder_count = $12, ai_bids_placed = $13,
    end_time = $9, last_seq = $7, updated_at = now()
WHERE id = $2
"""
# Real bidders whose first bid came before this one's: only ever this prefix of
# an auction's bids, which no later bid changes.
_BIDDERS_BEFORE = """
SELECT count(DISTINCT user_id) FROM bids
WHERE auction_id = $1 AND seq < $2 AND NOT is_platform_bid
"""

# Lost to another transaction: worth one more try.
_LOST_RACE: tuple[type[BaseException], ...] = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.UniqueViolationError,
)


@dataclass(frozen=True, slots=True)
class _Accept:
    """A bid that passed every rule, with what the writer and the outcome need."""

    bid: DurableBid
    ai_bids_placed: int


class _Refused(Exception):
    """Rolls back the bid's transaction; carries the outcome the bidder gets."""

    def __init__(self, outcome: BidOutcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class PerBidLedger:
    """Bids decided from the database rows and written one transaction each."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        self._rejections: collections.OrderedDict[IdempotencyKey, BidRejected] = (
            collections.OrderedDict()
        )
        self._bidder_numbers: dict[tuple[uuid.UUID, uuid.UUID], int] = {}

    async def place_bid(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome:
        received = time.perf_counter()
        key = (auction_id, user_id, client_bid_id) if client_bid_id is not None else None
        if key is not None and (known := self._rejections.get(key)) is not None:
            return known
        outcome: BidOutcome = UNAVAILABLE
        for attempt in (1, 2):
            try:
                outcome = await self._place(auction_id, user_id, amount_kobo, key, platform)
                break
            except _LOST_RACE as exc:
                logger.warning(
                    "bid lost a race in the database (%s); attempt %d of 2", exc, attempt
                )
            except UNREACHABLE as exc:
                logger.error("the ledger is unreachable (%s): bid refused", exc)
                break
        if isinstance(outcome, BidAccepted):
            metrics.BIDS.labels("accepted", "none").inc()
            metrics.BID_LATENCY.observe(time.perf_counter() - received)
        else:
            metrics.BIDS.labels("rejected", outcome.code).inc()
            if key is not None and outcome is not UNAVAILABLE:
                self._remember_rejection(key, outcome)
        return outcome

    async def _place(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        key: IdempotencyKey | None,
        platform: bool,
    ) -> BidOutcome:
        if not 0 < amount_kobo < bidcore.MAX_AMOUNT_KOBO:
            if key is None:
                return rejection("invalid_amount")
            async with self._pool.acquire() as conn:
                return await _prior_or(conn, key, rejection("invalid_amount"))
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    accept = await self._decide(
                        conn, auction_id, user_id, amount_kobo, key, platform
                    )
                    await _write(conn, accept)
            except _Refused as refused:
                return refused.outcome
            bid = accept.bid
            if not bid.is_platform:
                self._remember_number((bid.auction_id, bid.user_id), bid.bidder_number)
            return BidAccepted(bid)

    async def _decide(
        self,
        conn: asyncpg.Connection,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        key: IdempotencyKey | None,
        platform: bool,
    ) -> _Accept:
        """Lock, read and check every rule; raises `_Refused` to roll back."""
        client_bid_id = key[2] if key else None
        auction = await conn.fetchrow(_LOCK_AUCTION, auction_id)
        if auction is None:
            raise _Refused(rejection("unknown_auction"))  # so it holds no bid either
        bidder = await conn.fetchrow(_LOCK_BIDDER, user_id)
        state = await conn.fetchrow(_STATE, auction_id, user_id, client_bid_id)
        if state["duplicate"]:
            raise _Refused(await _prior_or(conn, key, UNAVAILABLE))
        now = self._clock.now_ms()
        increment = naira_to_kobo(auction["bid_increment"])
        leading = state["leading_amount"]
        leading_kobo = naira_to_kobo(leading) if leading is not None else None
        if leading_kobo is None:
            min_next = naira_to_kobo(auction["start_price"])
        else:
            min_next = leading_kobo + increment
        code = _first_broken_rule(
            auction, bidder, state, user_id, amount_kobo, now, min_next, platform
        )
        if code is not None:
            raise _Refused(rejection(code, min_next if code == "below_minimum" else None))
        end_ms = to_ms(auction["end_time"])
        extended = end_ms - now < auction["anti_snipe_window_ms"]
        if extended:
            end_ms = min(end_ms + auction["anti_snipe_extension_ms"], bidcore.MAX_TIME_MS)
        first_bid_here = not platform and state["first_seq"] is None
        bidder_count = auction["bidder_count"] + first_bid_here
        seq = auction["last_seq"] + 1
        number = 0
        if not platform:
            number = await self._bidder_number(conn, auction_id, user_id, state, bidder_count)
        if state["leader"] is None:
            previous = bidlog.genesis(auction_id)
        else:  # a row written without a hash: recovery names the break
            previous = state["leading_hash"] or bytes(32)
        entry = bidlog.Entry(seq, number, amount_kobo, now, platform, is_proxy=False)
        return _Accept(
            DurableBid(
                id=uuid.uuid4(),
                auction_id=auction_id,
                user_id=user_id,
                amount_kobo=amount_kobo,
                at_ms=now,
                is_platform=platform,
                client_bid_id=client_bid_id,
                seq=seq,
                end_time_ms=end_ms,
                extended=extended,
                min_next_bid_kobo=amount_kobo + increment,
                bid_count=auction["bid_count"] + 1,
                bidder_count=bidder_count,
                bidder_number=number,
                previous_leader=state["leader"],
                previous_amount_kobo=leading_kobo,
                hash=bidlog.bid_hash(auction_id, entry, previous),
            ),
            ai_bids_placed=auction["ai_bids_placed"] + platform,
        )

    async def _bidder_number(
        self,
        conn: asyncpg.Connection,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        state: asyncpg.Record,
        bidder_count: int,
    ) -> int:
        """The bidder's number ("Bidder 3"): the next one on a first bid, else their own.

        Remembered per (auction, bidder) once a bid of theirs committed; one not
        remembered (a restart, another process) is counted from the ledger, under
        the auction's lock, since the bid's hash holds it.
        """
        number = self._bidder_numbers.get((auction_id, user_id))
        if number is not None:
            return number
        if state["first_seq"] is None:
            return bidder_count
        before: int = await conn.fetchval(_BIDDERS_BEFORE, auction_id, state["first_seq"])
        return before + 1

    def _remember_number(self, key: tuple[uuid.UUID, uuid.UUID], number: int) -> None:
        self._bidder_numbers[key] = number
        if len(self._bidder_numbers) > BIDDER_NUMBERS_REMEMBERED:
            del self._bidder_numbers[next(iter(self._bidder_numbers))]

    def _remember_rejection(self, key: IdempotencyKey, outcome: BidRejected) -> None:
        self._rejections[key] = outcome
        if len(self._rejections) > REJECTIONS_REMEMBERED:
            self._rejections.popitem(last=False)


def _first_broken_rule(
    auction: asyncpg.Record,
    bidder: asyncpg.Record | None,
    state: asyncpg.Record,
    user_id: uuid.UUID,
    amount_kobo: int,
    now: int,
    min_next: int,
    platform: bool,
) -> str | None:
    """RULES.md's rules 1–8 in order (9, the amount, is checked before any read)."""
    if auction["status"] not in ("scheduled", "live"):
        return refusal_for_status(auction["status"])
    if auction["status"] != "live" or now < to_ms(auction["start_time"]):
        return "auction_not_live"
    if now >= to_ms(auction["end_time"]):
        return "auction_ended"
    if user_id in (auction["created_by"], auction["listed_by"], auction["owner_id"]):
        return "own_auction"
    if bidder is None or not (
        user_id == PLATFORM_USER_ID
        or may_bid(bidder["role"], bidder["kyc_status"], bidder["is_active"])
    ):
        return "not_eligible"
    if state["leader"] == user_id:
        return "already_leading"
    if amount_kobo < min_next:
        return "below_minimum"
    if not platform:
        needed = int(state["exposure_kobo"]) + bidcore.deposit(
            amount_kobo, deposit_bp(auction["deposit_pct"])
        )
        if naira_to_kobo(bidder["wallet_balance"]) < needed:
            return "insufficient_buying_power"
    return None


async def _write(conn: asyncpg.Connection, accept: _Accept) -> None:
    bid = accept.bid
    await conn.execute(
        _WRITE,
        bid.id,
        bid.auction_id,
        bid.user_id,
        kobo_to_naira(bid.amount_kobo),
        bid.is_platform,
        bid.client_bid_id,
        bid.seq,
        bid.extended,
        to_datetime(bid.end_time_ms),
        to_datetime(bid.at_ms),
        bid.bid_count,
        bid.bidder_count,
        accept.ai_bids_placed,
        bid.hash,
    )


async def _prior_or(
    conn: asyncpg.Connection, key: IdempotencyKey | None, otherwise: BidOutcome
) -> BidOutcome:
    """The bid the ledger already holds under this key, else `otherwise`."""
    if key is not None and (earlier := await find_bid(conn, *key)) is not None:
        return BidAccepted(earlier)
    return otherwise
