"""An auction's public bid log: what GET /api/auctions/{id}/log shows, the result
end processing signs, and the opening that proves a bidder's handle is theirs
(RULES.md "The public bid log"; the encoding is engine/bidlog.py's).

The log is read from the ledger: every bid in seq order with its handle, the
hash stored when it was decided, and its handle's commitment (made here from the
auction's secret, sql/0031). End processing signs the result in the transaction
that ends the auction, after checking that the chain it signs verifies; a result
signed once is never signed again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg
import msgspec

from engine import bidlog
from engine.clock import to_ms
from engine.errors import BidLogBroken, Refused
from engine.money import naira_to_kobo
from engine.signing import LogSigner

_AUCTION = "SELECT log_secret, published_at FROM auctions WHERE id = $1"
_BIDS = """
SELECT user_id, amount, is_platform_bid, is_proxy, seq, created_at, hash
FROM bids WHERE auction_id = $1 ORDER BY seq
"""
_RESULT = """
SELECT final_seq, head, winner_number, final_price_kobo, signature, key_id
FROM bid_log_results WHERE auction_id = $1
"""
_STORE_RESULT = """
INSERT INTO bid_log_results (auction_id, final_seq, head, winner_number, final_price_kobo,
                             handles, signature, key_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


@dataclass(frozen=True, slots=True)
class LoggedBid:
    entry: bidlog.Entry
    user_id: uuid.UUID
    hash: bytes | None  # as stored when it was decided


@dataclass
class AuctionLog:
    """One auction's bids as the log has them."""

    auction_id: uuid.UUID
    secret: bytes
    bids: list[LoggedBid]
    #: Bidder n's user is `bidders[n - 1]`.
    bidders: list[uuid.UUID]
    _commitments: dict[int, bytes] = field(default_factory=dict)

    def commitment(self, number: int) -> bytes:
        """Bidder `number`'s commitment."""
        found = self._commitments.get(number)
        if found is None:
            user = self.bidders[number - 1]
            found = self._commitments[number] = bidlog.commitment(
                self.auction_id, number, user, self.secret
            )
        return found

    def number_of(self, user_id: uuid.UUID) -> int | None:
        """The user's bidder number here (None: no bid of theirs)."""
        return self.bidders.index(user_id) + 1 if user_id in self.bidders else None

    def handles(self) -> bytes:
        commitments = [self.commitment(n) for n in range(1, len(self.bidders) + 1)]
        return bidlog.handles_digest(self.auction_id, commitments)

    def breaks(self) -> list[int]:
        return bidlog.breaks(self.auction_id, ((bid.entry, bid.hash) for bid in self.bids))

    @property
    def head(self) -> bytes:
        last = self.bids[-1].hash if self.bids else None
        return last if last is not None else bidlog.genesis(self.auction_id)


@dataclass(frozen=True, slots=True)
class _Found:
    log: AuctionLog
    published: bool


async def _read(conn: asyncpg.Connection, auction_id: uuid.UUID) -> _Found | None:
    auction = await conn.fetchrow(_AUCTION, auction_id)
    if auction is None:
        return None
    rows = await conn.fetch(_BIDS, auction_id)
    bidders: list[uuid.UUID] = []
    numbers: dict[uuid.UUID, int] = {}
    bids = []
    for row in rows:
        user, platform = row["user_id"], row["is_platform_bid"]
        number = 0
        if not platform:
            number = numbers.get(user, 0)
            if not number:
                bidders.append(user)
                number = numbers[user] = len(bidders)
        entry = bidlog.Entry(
            row["seq"],
            number,
            naira_to_kobo(row["amount"]),
            to_ms(row["created_at"]),
            platform,
            row["is_proxy"],
        )
        bids.append(LoggedBid(entry, user, row["hash"]))
    log = AuctionLog(auction_id, auction["log_secret"], bids, bidders)
    return _Found(log, auction["published_at"] is not None)


async def read_log(conn: asyncpg.Connection, auction_id: uuid.UUID) -> AuctionLog | None:
    found = await _read(conn, auction_id)
    return found.log if found is not None else None


# ---- the signed result ------------------------------------------------------------


async def sign_result(
    conn: asyncpg.Connection,
    signer: LogSigner,
    auction_id: uuid.UUID,
    winner_number: int | None,
) -> None:
    """Sign and store the auction's result (end processing's transaction, which holds
    the auction's row lock): its last bid's seq and hash, the winner's handle (None:
    no winner) and the last bid's amount. Raises BidLogBroken, storing nothing, if
    the chain to be signed does not verify."""
    log = await read_log(conn, auction_id)
    if log is None:
        raise ValueError(f"no auction {auction_id} to sign a result for")
    broken = log.breaks()
    if broken:
        raise BidLogBroken(auction_id, broken[0])
    last = log.bids[-1].entry if log.bids else None
    final_seq = last.seq if last is not None else 0
    price = last.amount_kobo if last is not None else None
    handles = log.handles()
    message = bidlog.result_message(auction_id, final_seq, log.head, winner_number, price, handles)
    await conn.execute(
        _STORE_RESULT,
        auction_id,
        final_seq,
        log.head,
        winner_number,
        price,
        handles,
        signer.sign(message),
        signer.key_id,
    )


# ---- the log as the API gives it ----------------------------------------------------


class LogBid(msgspec.Struct, frozen=True):
    seq: int
    bidder: str  # "Bidder 3", or "Reserve protection"
    amount_kobo: int
    at_ms: int
    is_platform_bid: bool
    is_proxy: bool
    hash: str | None  # hex; null only for a row written without one
    commitment: str | None  # hex, the handle's (engine/bidlog.py); null for a platform bid


class LogResult(msgspec.Struct, frozen=True):
    auction_id: str
    final_seq: int
    head: str
    winner: str | None
    final_price_kobo: int | None
    signature: str
    key_id: str


class LogBody(msgspec.Struct, frozen=True):
    bids: list[LogBid]
    result: LogResult | None


_NO_AUCTION = Refused("not_found", "not_found", "No auction has this id.")


async def log_body(pool: asyncpg.Pool, auction_id: uuid.UUID) -> LogBody:
    """The auction's log; refused as not found for no auction, or one that was
    never public (a draft)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        found = await _read(conn, auction_id)
        if found is None or not found.published:
            raise _NO_AUCTION
        result = await conn.fetchrow(_RESULT, auction_id)
    log = found.log
    bids = [
        LogBid(
            seq=bid.entry.seq,
            bidder=bidlog.handle(bid.entry.number),
            amount_kobo=bid.entry.amount_kobo,
            at_ms=bid.entry.at_ms,
            is_platform_bid=bid.entry.is_platform,
            is_proxy=bid.entry.is_proxy,
            hash=bid.hash.hex() if bid.hash is not None else None,
            commitment=log.commitment(bid.entry.number).hex() if bid.entry.number else None,
        )
        for bid in log.bids
    ]
    return LogBody(bids, _result(auction_id, result))


def _result(auction_id: uuid.UUID, row: asyncpg.Record | None) -> LogResult | None:
    if row is None:
        return None
    winner = row["winner_number"]
    return LogResult(
        auction_id=str(auction_id),
        final_seq=row["final_seq"],
        head=row["head"].hex(),
        winner=bidlog.handle(winner) if winner is not None else None,
        final_price_kobo=row["final_price_kobo"],
        signature=row["signature"].hex(),
        key_id=row["key_id"],
    )


class Opening(msgspec.Struct, frozen=True):
    """What proves to an arbiter that a handle in the log is the caller's:
    commitment = SHA-256(`D360com\\x01` ‖ auction id ‖ n ‖ user id ‖ nonce)."""

    auction_id: str
    bidder: str
    number: int
    user_id: str
    nonce: str  # hex
    commitment: str  # hex, as the log shows it on this bidder's bids


async def opening(pool: asyncpg.Pool, auction_id: uuid.UUID, user_id: uuid.UUID) -> Opening:
    """The caller's opening; refused as not found for no public auction, or one
    with no bid of theirs."""
    async with pool.acquire() as conn:
        found = await _read(conn, auction_id)
    if found is None or not found.published:
        raise _NO_AUCTION
    log = found.log
    number = log.number_of(user_id)
    if number is None:
        raise Refused(
            "not_found",
            "no_handle",
            "You have no bid in this auction, so no handle of yours to prove.",
        )
    return Opening(
        auction_id=str(auction_id),
        bidder=bidlog.handle(number),
        number=number,
        user_id=str(user_id),
        nonce=bidlog.nonce(log.secret, number).hex(),
        commitment=log.commitment(number).hex(),
    )
