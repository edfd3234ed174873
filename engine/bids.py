"""A bid's life outside the core: the durable record and the outcome a bidder sees."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
from asyncpg.pgproto.pgproto import UUID

from engine.money import format_naira

_IDS_PER_DRAW = 1024


def _random_ids() -> Iterator[uuid.UUID]:
    """Version 4 UUIDs, from the OS's random bytes 16 KiB at a time (uuid.uuid4 makes
    a system call for each, a measurable share of a bid's cost under load).

    They are asyncpg's UUIDs, the type it returns for a uuid column: a subclass of
    uuid.UUID (equal, same hash and order, same JSON) built in C, where uuid.UUID
    builds in Python; and asyncpg writes its own UUID's bytes directly where a
    uuid.UUID is asked for its `bytes` (bench/README.md, "ledger")."""
    while True:
        raw = bytearray(os.urandom(16 * _IDS_PER_DRAW))
        raw[6::16] = bytes(octet & 0x0F | 0x40 for octet in raw[6::16])  # version 4
        raw[8::16] = bytes(octet & 0x3F | 0x80 for octet in raw[8::16])  # RFC 4122 variant
        for at in range(0, len(raw), 16):
            yield UUID(bytes(raw[at : at + 16]))


_ids = _random_ids()


def _fresh_ids_after_fork() -> None:
    global _ids  # a forked child must not repeat its parent's unused ids
    _ids = _random_ids()


os.register_at_fork(after_in_child=_fresh_ids_after_fork)


def new_bid_id() -> uuid.UUID:
    """A new random bid id (version 4)."""
    return next(_ids)


class DurableBid(msgspec.Struct, frozen=True, gc=False):
    """An accepted bid with everything the ledger writes and the room shows.

    A struct, not a dataclass: one is made for every accepted bid, and a frozen
    dataclass sets each of its fields through object.__setattr__, several times
    slower; it holds no references to containers, so the collector need not track it.
    """

    id: uuid.UUID
    auction_id: uuid.UUID
    user_id: uuid.UUID
    amount_kobo: int
    at_ms: int
    is_platform: bool
    client_bid_id: str | None
    seq: int
    end_time_ms: int
    extended: bool
    min_next_bid_kobo: int
    bid_count: int
    bidder_count: int
    bidder_number: int  # "Bidder 3" in this auction; 0 for platform bids
    previous_leader: uuid.UUID | None
    previous_amount_kobo: int | None
    is_proxy: bool = False  # placed by the engine for a maximum
    #: Its hash in the auction's bid log (engine/bidlog.py), as the core made it;
    #: None only for a ledger row written without one (recovery reports it).
    hash: bytes | None = None

    def body(self) -> BidBody:
        return BidBody(
            id=str(self.id),
            auction_id=str(self.auction_id),
            amount_kobo=self.amount_kobo,
            at_ms=self.at_ms,
            end_time_ms=self.end_time_ms,
            extended=self.extended,
            client_bid_id=self.client_bid_id,
        )


class BidBody(msgspec.Struct, frozen=True):
    """The accepted bid as API.md gives it (`POST /api/bids`, `bid_result.bid`)."""

    id: str
    auction_id: str
    amount_kobo: int
    at_ms: int
    end_time_ms: int
    extended: bool
    client_bid_id: str | None


class DurableMax(msgspec.Struct, frozen=True):
    """A maximum set or raised, with the bid rows it placed (`is_proxy`, in order):
    the ledger writes them in one transaction, and acknowledges them together."""

    id: uuid.UUID
    auction_id: uuid.UUID
    user_id: uuid.UUID
    max_kobo: int
    at_ms: int
    client_bid_id: str | None
    leading: bool  # this maximum leads (scheduled: would lead when the auction opens)
    price_kobo: int  # the price after it (scheduled: the price it would open at)
    bids: tuple[DurableBid, ...] = ()
    prebid: bool = False  # set on a scheduled auction: it resolves when the auction opens

    def body(self) -> MaxBody:
        return MaxBody(max_kobo=self.max_kobo, leading=self.leading, price_kobo=self.price_kobo)


class MaxBody(msgspec.Struct, frozen=True):
    """A maximum as API.md gives it (`POST /api/auctions/{id}/max`, `bid_result.max`)."""

    max_kobo: int
    leading: bool
    price_kobo: int


@dataclass(slots=True, frozen=True)
class BidAccepted:
    bid: DurableBid
    accepted: bool = True


@dataclass(slots=True, frozen=True)
class MaxAccepted:
    max: DurableMax
    accepted: bool = True


@dataclass(slots=True, frozen=True)
class BidRejected:
    code: str
    message: str
    accepted: bool = False


BidOutcome = BidAccepted | BidRejected
MaxOutcome = MaxAccepted | BidRejected

UNAVAILABLE = BidRejected(
    "unavailable",
    "Bidding is paused for a moment while the ledger catches up. Your bid was not "
    "placed; please try again shortly.",
)
#: An auction of a partition this node does not hold (several nodes): another
#: node decides it, or will once its lease moves.
NOT_HERE = BidRejected(
    "unavailable",
    "This auction's bids are taken by another node of the engine right now. Your "
    "bid was not placed; please try again shortly.",
)
#: An auction whose bid log did not verify against its bid rows when loaded
#: (engine/recovery.py): nothing is decided for it until staff have put it right.
LOG_BROKEN = BidRejected(
    "bid_log_broken",
    "Bidding on this auction is suspended: its public bid log does not match the "
    "recorded bids, and staff have been alerted. Your bid was not placed.",
)
#: LEDGER_MODE=baseline (the seed's per-bid path, for measurement) has no maximums.
MAXIMUMS_NOT_OFFERED = BidRejected(
    "maximums_not_offered",
    "This server runs the per-bid measurement ledger (LEDGER_MODE=baseline), which "
    "takes single bids only. Your maximum was not set.",
)
#: A bid the core accepted whose batch the ledger did not confirm: its COMMIT may
#: or may not have landed before the connection died.
UNCONFIRMED = BidRejected(
    "unavailable",
    "The ledger stopped answering while your bid was being recorded, so its outcome "
    "is not known yet. Send it again with the same client_bid_id once bidding "
    "resumes: you will get its outcome, never a second bid.",
)


def rejection(
    code: str, min_next_bid_kobo: int | None = None, *, maximum: bool = False
) -> BidRejected:
    """A rejected bid (or `maximum`) with a sentence the bidder can act on."""
    what = "maximum" if maximum else "bid"
    if code == "below_minimum" and min_next_bid_kobo is not None:
        return BidRejected(code, f"Your {what} must be at least {format_naira(min_next_bid_kobo)}.")
    messages = _MAX_MESSAGES if maximum else {}
    return BidRejected(
        code, messages.get(code) or _MESSAGES.get(code, f"Your {what} was not accepted.")
    )


#: Auction statuses past bidding for good: a bid on one is `auction_ended`.
_ENDED_STATUSES = frozenset(
    {"ended", "seller_decision", "pending_settlement", "settled", "unsold", "relisted"}
)


def refusal_for_status(status: str | None) -> str:
    """The rule a bid breaks on an auction the core does not hold, from the
    ledger's status (None: no such auction): RULES.md rule 1's note."""
    if status is None:
        return "unknown_auction"
    return "auction_ended" if status in _ENDED_STATUSES else "auction_not_live"


_MESSAGES = {
    "invalid_amount": "Enter a whole amount in kobo above zero and below ₦10 trillion.",
    "unknown_auction": "There is no auction with this id.",
    "auction_not_live": "This auction is not open for bidding right now.",
    "auction_ended": "This auction has ended; no more bids are taken.",
    "own_auction": "You cannot bid on your own auction.",
    "not_eligible": "Complete your KYC verification to bid; only verified accounts can bid.",
    "already_leading": "You already have the highest bid.",
    "below_minimum": "Your bid is below the minimum next bid.",
    "insufficient_buying_power": (
        "Your wallet does not cover the deposit for this bid alongside your other "
        "leading bids. Fund your wallet or wait to be outbid elsewhere."
    ),
}

#: Where a maximum's refusal reads otherwise than a bid's.
_MAX_MESSAGES = {
    "invalid_amount": "Enter a maximum in whole kobo above zero and below ₦10 trillion.",
    "own_auction": "You cannot set a maximum on your own auction.",
    "not_eligible": (
        "Complete your KYC verification to set a maximum; only verified accounts can bid."
    ),
    "below_minimum": "Your maximum is below the least you may set now.",
    "insufficient_buying_power": (
        "Your wallet does not cover the deposit for this maximum alongside your other "
        "leading bids. Fund your wallet, or set a lower maximum."
    ),
}
