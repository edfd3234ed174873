"""The bid core in plain Python, written from RULES.md and bidcore/README.md
(maximum bids included: set_max, proxy answers, pre-bids resolved at open).

`ReferenceCore` mirrors `bidcore.Core` (same methods, keyword arguments,
defaults, results and exceptions) so that property tests can drive both with
the same operations and require the same answers. It is also the baseline the
benchmarks compare the compiled core against, so it stays direct rather than
clever, but does no needless work.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from bidcore import (
    MAX_SHARDS,  # a build limit, not a rule: taken from the core
    CoreError,
    DuplicateAuction,
    InvalidArgument,
    InvalidTransition,
    UnknownAuction,
    UnknownUser,
)
from engine import bidlog

__all__ = [
    "ACCEPTED_FIELDS",
    "AUCTION_FIELDS",
    "CLOSED_FIELDS",
    "MAX_AMOUNT_KOBO",
    "MAX_BALANCE_KOBO",
    "MAX_SELLERS",
    "MAX_SETTING_MS",
    "MAX_SET_FIELDS",
    "MAX_SHARDS",
    "MAX_TIME_MS",
    "OPENED_FIELDS",
    "REASONS",
    "REASON_CODES",
    "REJECTED_FIELDS",
    "RESERVE_PROTECTION_HORIZON_MS",
    "STATUSES",
    "USER_FIELDS",
    "Accepted",
    "AuctionState",
    "Closed",
    "CoreError",
    "DuplicateAuction",
    "InvalidArgument",
    "InvalidTransition",
    "MaxSet",
    "Opened",
    "ReferenceBidBatch",
    "ReferenceCore",
    "Rejected",
    "UnknownAuction",
    "UnknownUser",
    "UserState",
    "attributes",
    "deposit",
    "opened_fields",
    "outcome_fields",
    "state_of",
]

#: Exclusive upper bound of a valid amount (and of prices): 10**15 kobo.
MAX_AMOUNT_KOBO = 10**15
#: Exclusive upper bound of a wallet balance.
MAX_BALANCE_KOBO = 10**18
#: 9999-12-31T23:59:59.999Z in ms since the epoch.
MAX_TIME_MS = 253_402_300_799_999
#: Longest anti-sniping window or extension: 7 days.
MAX_SETTING_MS = 604_800_000
MAX_SELLERS = 8
ID_LIMIT = 2**128
RESERVE_PROTECTION_HORIZON_MS = 3_600_000
STATUSES = ("scheduled", "live", "ended", "cancelled")

#: Rejection reasons in order of precedence: the first that applies is the answer.
REASONS = (
    "invalid_amount",
    "unknown_auction",
    "auction_not_live",
    "auction_ended",
    "own_auction",
    "not_eligible",
    "already_leading",
    "below_minimum",
    "insufficient_buying_power",
)
#: Indexed by the byte a batch's codes give (0 = accepted).
REASON_CODES = ("accepted", *REASONS)


def deposit(amount_kobo: int, deposit_pct_bp: int) -> int:
    """``ceil(amount * bp / 10000)`` in integers."""
    return -(-amount_kobo * deposit_pct_bp // 10_000)


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    auction: int
    user: int
    amount_kobo: int
    at_ms: int
    is_platform: bool
    #: Placed by the core for a maximum, not by its bidder.
    is_proxy: bool
    seq: int
    end_time_ms: int
    extended: bool
    min_next_bid_kobo: int
    bid_count: int
    bidder_count: int
    bidder_number: int
    deposit_kobo: int
    previous_leader: int | None
    previous_amount_kobo: int | None
    previous_was_platform: bool
    #: This row's hash in the bid log (engine/bidlog.py).
    hash: bytes
    #: The leader's proxy answering this bid, placed right after it.
    answer: Accepted | None = None

    @property
    def accepted(self) -> bool:
        return True

    @property
    def code(self) -> str:
        return "accepted"


@dataclass(frozen=True)
class Rejected:
    code: str
    auction: int
    user: int
    amount_kobo: int
    at_ms: int
    is_platform: bool

    @property
    def accepted(self) -> bool:
        return False


Outcome = Accepted | Rejected


@dataclass(frozen=True)
class MaxSet:
    """A maximum set or raised, and the rows it placed in order."""

    auction: int
    user: int
    max_kobo: int
    #: It leads (on a scheduled auction: would lead when it opens).
    leading: bool
    #: The price after resolution (scheduled: the price it would open at).
    price_kobo: int
    bids: list[Accepted]

    @property
    def accepted(self) -> bool:
        return True

    @property
    def code(self) -> str:
        return "accepted"


@dataclass(frozen=True)
class Opened:
    """An auction opened: the state change's seq, then the rows its pre-bids placed."""

    seq: int
    bids: list[Accepted]


@dataclass(frozen=True)
class Closed:
    auction: int
    seq: int
    leader: int | None
    leading_amount_kobo: int | None
    leader_is_platform: bool
    bid_count: int
    bidder_count: int
    platform_bid_count: int
    end_time_ms: int


@dataclass(frozen=True)
class AuctionState:
    handle: int
    auction_id: int
    status: str
    sellers: list[int]
    start_time_ms: int
    end_time_ms: int
    original_end_ms: int
    start_price_kobo: int
    bid_increment_kobo: int
    reserve_price_kobo: int | None
    deposit_pct_bp: int
    anti_snipe_window_ms: int
    anti_snipe_extension_ms: int
    current_price_kobo: int | None
    min_next_bid_kobo: int
    leader: int | None
    leader_is_platform: bool
    leader_max_kobo: int | None
    prebids: list[tuple[int, int]]
    bid_count: int
    bidder_count: int
    platform_bid_count: int
    bidders: list[int]
    seq: int
    log_head: bytes


@dataclass(frozen=True)
class UserState:
    handle: int
    user_id: int
    balance_kobo: int
    eligible: bool
    exposure_kobo: int


# --- argument checks (TypeError for a wrong type, InvalidArgument for a wrong value) ---


def _int(value: Any) -> int:
    """An int as the core's integer conversion takes it (anything with __index__)."""
    return operator.index(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected bool, got {type(value).__name__}")
    return value


def _in_range(name: str, value: Any, low: int, high: int) -> int:
    """`low <= value <= high`, else InvalidArgument."""
    number = _int(value)
    if not low <= number <= high:
        raise InvalidArgument(f"{name} must be in [{low}, {high}], got {number}")
    return number


def _log_hash(name: str, value: Any) -> bytes | None:
    """32 bytes (a chain head) or None, as the core takes it."""
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != 32:
        raise InvalidArgument(f"{name} must be 32 bytes (got {len(value)})")
    return value


def _id(name: str, value: Any) -> int:
    return _in_range(name, value, 0, ID_LIMIT - 1)


def _price(name: str, value: Any) -> int:
    return _in_range(name, value, 1, MAX_AMOUNT_KOBO - 1)


# --- state ---------------------------------------------------------------------------


_NO_ID = uuid.UUID(int=0)  # replaced when the auction is loaded


@dataclass
class _User:
    user_id: int
    balance: int
    eligible: bool
    exposure: int = 0


@dataclass
class _Auction:
    auction_id: int
    status: str
    sellers: list[int]
    start: int
    end: int
    original_end: int
    start_price: int
    increment: int
    reserve: int | None
    deposit_bp: int
    window: int
    extension: int
    leader: int | None = None
    leading_amount: int | None = None
    leader_is_platform: bool = False
    #: The lead's maximum, if it has one (never a platform lead's).
    leader_max: int | None = None
    #: A scheduled auction's pre-bids, (user, max), in the order their amounts were set.
    prebids: list[tuple[int, int]] = field(default_factory=list)
    bidders: list[int] = field(default_factory=list)
    #: Each real bidder's 1-based place in `bidders` (kept beside it for speed).
    bidder_numbers: dict[int, int] = field(default_factory=dict)
    bid_count: int = 0
    platform_bid_count: int = 0
    #: The bid log: the auction's id as a UUID, and its head (the last bid's hash).
    log_id: uuid.UUID = _NO_ID
    head: bytes = b""
    seq: int = 0

    def min_next(self) -> int:
        if self.leading_amount is None:
            return self.start_price
        return self.leading_amount + self.increment

    def reach(self) -> int:
        """The most the lead goes to without a new bid: its max, else its amount."""
        assert self.leading_amount is not None
        return self.leading_amount if self.leader_max is None else self.leader_max

    def real_lead_deposit(self) -> int:
        """What the current lead adds to its holder's exposure (0 for none or platform):
        deposit(max) with a max, else deposit(amount)."""
        if self.leader is None or self.leader_is_platform:
            return 0
        assert self.leading_amount is not None
        reach = self.leading_amount if self.leader_max is None else self.leader_max
        return deposit(reach, self.deposit_bp)

    def ranked_prebids(self) -> list[tuple[int, int]]:
        """Highest max first; among equal maxes, the one set earlier."""
        order = sorted(range(len(self.prebids)), key=lambda i: (-self.prebids[i][1], i))
        return [self.prebids[i] for i in order]

    def would_be_leader(self) -> tuple[int, int] | None:
        """The pre-bid ranked first, (user, max), if any."""
        ranked = self.ranked_prebids()
        return ranked[0] if ranked else None

    def prebid_price(self) -> int:
        """The price the pre-bids would open at."""
        ranked = self.ranked_prebids()
        if len(ranked) < 2:
            return self.start_price
        return min(ranked[0][1], ranked[1][1] + self.increment)


@dataclass(frozen=True)
class _AuctionSettings:
    start: int
    end: int
    start_price: int
    increment: int
    reserve: int | None
    deposit_bp: int
    window: int
    extension: int
    sellers: list[int]


def _check_settings(
    start_time_ms: Any,
    end_time_ms: Any,
    start_price_kobo: Any,
    bid_increment_kobo: Any,
    reserve_price_kobo: Any,
    deposit_pct_bp: Any,
    anti_snipe_window_ms: Any,
    anti_snipe_extension_ms: Any,
    sellers: Any,
) -> _AuctionSettings:
    start = _in_range("start_time_ms", start_time_ms, 0, MAX_TIME_MS)
    end = _in_range("end_time_ms", end_time_ms, 0, MAX_TIME_MS)
    if not start < end:
        raise InvalidArgument(f"start_time_ms {start} must be before end_time_ms {end}")
    reserve = (
        None if reserve_price_kobo is None else _price("reserve_price_kobo", reserve_price_kobo)
    )
    seller_ids = [_id("seller id", seller) for seller in sellers]
    if len(seller_ids) > MAX_SELLERS:
        raise InvalidArgument(f"at most {MAX_SELLERS} sellers, got {len(seller_ids)}")
    return _AuctionSettings(
        start=start,
        end=end,
        start_price=_price("start_price_kobo", start_price_kobo),
        increment=_price("bid_increment_kobo", bid_increment_kobo),
        reserve=reserve,
        deposit_bp=_in_range("deposit_pct_bp", deposit_pct_bp, 0, 10_000),
        window=_in_range("anti_snipe_window_ms", anti_snipe_window_ms, 0, MAX_SETTING_MS),
        extension=_in_range("anti_snipe_extension_ms", anti_snipe_extension_ms, 0, MAX_SETTING_MS),
        sellers=seller_ids,
    )


# --- batches -------------------------------------------------------------------------


class ReferenceBidBatch:
    """Bids in arrival order, as `bidcore.BidBatch` holds them."""

    def __init__(self) -> None:
        self.bids: list[tuple[int, int, int, int, bool]] = []

    @staticmethod
    def from_columns(
        auctions: Sequence[int],
        users: Sequence[int],
        amounts_kobo: Sequence[int],
        at_ms: Sequence[int],
        platform: Sequence[bool] | None = None,
    ) -> ReferenceBidBatch:
        flags = [False] * len(auctions) if platform is None else list(platform)
        columns: list[list[Any]] = [
            list(auctions),
            list(users),
            list(amounts_kobo),
            list(at_ms),
            flags,
        ]
        if len({len(column) for column in columns}) != 1:
            raise ValueError("columns differ in length")
        batch = ReferenceBidBatch()
        for auction, user, amount, at, is_platform in zip(*columns, strict=True):
            batch.append(auction, user, amount, at, is_platform)
        return batch

    def append(
        self, auction: int, user: int, amount_kobo: int, at_ms: int, platform: bool = False
    ) -> None:
        self.bids.append(
            (_int(auction), _int(user), _int(amount_kobo), _int(at_ms), _flag(platform))
        )

    def clear(self) -> None:
        self.bids.clear()

    def __len__(self) -> int:
        return len(self.bids)


# --- the core ------------------------------------------------------------------------


class ReferenceCore:
    """Every loaded auction and every bidder's exposure, decided by the rules."""

    def __init__(self, shards: int = 8, parallel_min_batch: int = 4096) -> None:
        # Shards and parallelism change nothing an observer can see, only speed.
        self._shards = _in_range("shards", shards, 1, MAX_SHARDS)
        self._parallel_min_batch = _in_range("parallel_min_batch", parallel_min_batch, 0, 2**64)
        self._users: list[_User] = []
        self._user_by_id: dict[int, int] = {}
        self._auctions: dict[int, _Auction] = {}
        self._auction_by_id: dict[int, int] = {}
        self._next_auction = 0

    @property
    def shard_count(self) -> int:
        return self._shards

    @property
    def auction_count(self) -> int:
        return len(self._auctions)

    @property
    def user_count(self) -> int:
        return len(self._users)

    # Users

    def upsert_user(self, user_id: int, *, balance_kobo: int, eligible: bool) -> int:
        user_id = _id("user_id", user_id)
        balance = _in_range("balance_kobo", balance_kobo, 0, MAX_BALANCE_KOBO - 1)
        eligible = _flag(eligible)
        handle = self._user_by_id.get(user_id)
        if handle is None:
            handle = len(self._users)
            self._users.append(_User(user_id, balance, eligible))
            self._user_by_id[user_id] = handle
        else:
            self._users[handle].balance = balance
            self._users[handle].eligible = eligible
        return handle

    def user_handle(self, user_id: int) -> int | None:
        return self._user_by_id.get(_int(user_id))

    def set_balance(self, user: int, balance_kobo: int) -> None:
        balance = _in_range("balance_kobo", balance_kobo, 0, MAX_BALANCE_KOBO - 1)
        self._user(user).balance = balance

    def set_eligible(self, user: int, eligible: bool) -> None:
        eligible = _flag(eligible)
        self._user(user).eligible = eligible

    def user(self, user: int) -> UserState:
        record = self._user(user)
        return UserState(
            handle=user,
            user_id=record.user_id,
            balance_kobo=record.balance,
            eligible=record.eligible,
            exposure_kobo=record.exposure,
        )

    def _user(self, handle: Any) -> _User:
        index = _int(handle)
        if not 0 <= index < len(self._users):
            raise UnknownUser(f"no user with handle {index}")
        return self._users[index]

    # Auctions

    def add_auction(
        self,
        auction_id: int,
        *,
        start_time_ms: int,
        end_time_ms: int,
        start_price_kobo: int,
        bid_increment_kobo: int,
        reserve_price_kobo: int | None = None,
        deposit_pct_bp: int = 2000,
        anti_snipe_window_ms: int = 120_000,
        anti_snipe_extension_ms: int = 120_000,
        sellers: Sequence[int] | None = None,
        live: bool = False,
    ) -> int:
        auction_id = _id("auction_id", auction_id)
        settings = _check_settings(
            start_time_ms,
            end_time_ms,
            start_price_kobo,
            bid_increment_kobo,
            reserve_price_kobo,
            deposit_pct_bp,
            anti_snipe_window_ms,
            anti_snipe_extension_ms,
            () if sellers is None else sellers,
        )
        live = _flag(live)
        self._check_not_loaded(auction_id)
        return self._load(auction_id, settings, "live" if live else "scheduled", settings.end)

    def restore_auction(
        self,
        auction_id: int,
        *,
        start_time_ms: int,
        end_time_ms: int,
        original_end_ms: int,
        start_price_kobo: int,
        bid_increment_kobo: int,
        reserve_price_kobo: int | None,
        deposit_pct_bp: int,
        anti_snipe_window_ms: int,
        anti_snipe_extension_ms: int,
        sellers: Sequence[int],
        live: bool,
        leader: int | None,
        leading_amount_kobo: int | None,
        leader_is_platform: bool,
        bidders: Sequence[int],
        bid_count: int,
        platform_bid_count: int,
        seq: int,
        ended: bool = False,
        leader_max_kobo: int | None = None,
        prebids: Sequence[tuple[int, int]] = (),
        log_head: bytes | None = None,
    ) -> int:
        auction_id = _id("auction_id", auction_id)
        head = _log_hash("log_head", log_head)
        settings = _check_settings(
            start_time_ms,
            end_time_ms,
            start_price_kobo,
            bid_increment_kobo,
            reserve_price_kobo,
            deposit_pct_bp,
            anti_snipe_window_ms,
            anti_snipe_extension_ms,
            sellers,
        )
        original_end = _int(original_end_ms)
        if not settings.start < original_end <= settings.end:
            raise InvalidArgument("original_end_ms must be after the start and not after the end")
        live = _flag(live)
        if _flag(ended) and not live:
            raise InvalidArgument("an ended auction was live: live and ended go together")
        leader_is_platform = _flag(leader_is_platform)
        bidder_handles = [_int(bidder) for bidder in bidders]
        bid_count = _in_range("bid_count", bid_count, 0, 2**64 - 1)
        platform_bid_count = _in_range("platform_bid_count", platform_bid_count, 0, 2**64 - 1)
        seq = _in_range("seq", seq, 0, 2**64 - 1)
        if leader is None:
            if leading_amount_kobo is not None or bid_count:
                raise InvalidArgument("a leading amount or bids need a leader")
            leader_is_platform = False  # says nothing without a leader
        else:
            leader = _int(leader)
            if not live:
                raise InvalidArgument("only a live auction can have a leader")
            if leading_amount_kobo is None:
                raise InvalidArgument("a leader needs a leading amount")
            leading_amount = _price("leading_amount_kobo", leading_amount_kobo)
            if leading_amount < settings.start_price:
                raise InvalidArgument("leading_amount_kobo is below start_price_kobo")
            if not leader_is_platform and leader not in bidder_handles:
                raise InvalidArgument("a real leader must be among the bidders")
        if len(set(bidder_handles)) != len(bidder_handles):
            raise InvalidArgument("bidders must be distinct")
        if bid_count < len(bidder_handles) + platform_bid_count:
            raise InvalidArgument("bid_count is below bidders plus platform bids")
        if head is not None and not bid_count:
            raise InvalidArgument("a bid log head needs bids")
        leader_max = None
        if leader_max_kobo is not None:
            leader_max = _price("leader_max_kobo", leader_max_kobo)
            if leader is None or leader_is_platform:
                raise InvalidArgument("a leader's max needs a real leader")
            if leader_max < _int(leading_amount_kobo):
                raise InvalidArgument("leader_max_kobo is below leading_amount_kobo")
        prebid_pairs = [(_int(user), _int(max_kobo)) for user, max_kobo in prebids]
        if prebid_pairs and live:
            raise InvalidArgument("pre-bids belong to a scheduled auction")
        for _, max_kobo in prebid_pairs:
            if not settings.start_price <= max_kobo < MAX_AMOUNT_KOBO:
                raise InvalidArgument("a pre-bid's max must be valid and >= start_price_kobo")
        if len({user for user, _ in prebid_pairs}) != len(prebid_pairs):
            raise InvalidArgument("one pre-bid per bidder")
        prebidders = [user for user, _ in prebid_pairs]
        for handle in [*([] if leader is None else [leader]), *bidder_handles, *prebidders]:
            self._user(handle)
        self._check_not_loaded(auction_id)

        status = "ended" if ended else "live" if live else "scheduled"
        handle = self._load(auction_id, settings, status, original_end)
        auction = self._auctions[handle]
        if head is not None:
            auction.head = head
        auction.leader = leader
        auction.leading_amount = None if leader is None else _int(leading_amount_kobo)
        auction.leader_is_platform = leader_is_platform
        auction.bidders = bidder_handles
        auction.bidder_numbers = {user: place for place, user in enumerate(bidder_handles, 1)}
        auction.bid_count = bid_count
        auction.platform_bid_count = platform_bid_count
        auction.seq = seq
        auction.leader_max = leader_max
        auction.prebids = prebid_pairs
        if leader is not None:
            self._users[leader].exposure += auction.real_lead_deposit()
        self._expose_prebid_leader(auction, +1)
        return handle

    def _check_not_loaded(self, auction_id: int) -> None:
        if auction_id in self._auction_by_id:
            raise DuplicateAuction(f"auction {auction_id} is already loaded")

    def _load(
        self,
        auction_id: int,
        settings: _AuctionSettings,
        status: str,
        original_end: int,
    ) -> int:
        handle = self._next_auction
        log_id = uuid.UUID(int=auction_id)
        self._next_auction += 1
        self._auctions[handle] = _Auction(
            auction_id=auction_id,
            status=status,
            sellers=settings.sellers,
            start=settings.start,
            end=settings.end,
            original_end=original_end,
            start_price=settings.start_price,
            increment=settings.increment,
            reserve=settings.reserve,
            deposit_bp=settings.deposit_bp,
            window=settings.window,
            extension=settings.extension,
            log_id=log_id,
            head=bidlog.genesis(log_id),
        )
        self._auction_by_id[auction_id] = handle
        return handle

    def auction_handle(self, auction_id: int) -> int | None:
        return self._auction_by_id.get(_int(auction_id))

    def auction(self, auction: int) -> AuctionState:
        record = self._auction(auction)
        return AuctionState(
            handle=auction,
            auction_id=record.auction_id,
            status=record.status,
            sellers=list(record.sellers),
            start_time_ms=record.start,
            end_time_ms=record.end,
            original_end_ms=record.original_end,
            start_price_kobo=record.start_price,
            bid_increment_kobo=record.increment,
            reserve_price_kobo=record.reserve,
            deposit_pct_bp=record.deposit_bp,
            anti_snipe_window_ms=record.window,
            anti_snipe_extension_ms=record.extension,
            current_price_kobo=record.leading_amount,
            min_next_bid_kobo=record.min_next(),
            leader=record.leader,
            leader_is_platform=record.leader_is_platform,
            leader_max_kobo=record.leader_max,
            prebids=list(record.prebids),
            bid_count=record.bid_count,
            bidder_count=len(record.bidders),
            platform_bid_count=record.platform_bid_count,
            bidders=list(record.bidders),
            seq=record.seq,
            log_head=record.head,
        )

    def auction_handles(self) -> list[int]:
        return sorted(self._auctions)

    def status_counts(self) -> dict[str, int]:
        """How many loaded auctions are in each status (every status, zeros too)."""
        counts = dict.fromkeys(STATUSES, 0)
        for record in self._auctions.values():
            counts[record.status] += 1
        return counts

    def due(self, now_ms: int) -> tuple[list[int], list[int]]:
        """(to open, to close): scheduled auctions whose start has come, live ones whose
        end has, in handle order."""
        now = _int(now_ms)
        to_open, to_close = [], []
        for handle in sorted(self._auctions):
            record = self._auctions[handle]
            if record.status == "scheduled" and record.start <= now:
                to_open.append(handle)
            elif record.status == "live" and record.end <= now:
                to_close.append(handle)
        return to_open, to_close

    def _auction(self, handle: Any) -> _Auction:
        handle = _int(handle)
        record = self._auctions.get(handle)
        if record is None:
            raise UnknownAuction(f"no auction with handle {handle}")
        return record

    def _auction_in(self, handle: Any, statuses: tuple[str, ...], operation: str) -> _Auction:
        record = self._auction(handle)
        if record.status not in statuses:
            raise InvalidTransition(f"cannot {operation} a {record.status} auction")
        return record

    def open_auction(self, auction: int, now_ms: int) -> Opened:
        """scheduled -> live; then the pre-bids of bidders still eligible resolve."""
        now = _int(now_ms)
        record = self._auction_in(auction, ("scheduled",), "open")
        record.status = "live"
        record.seq += 1
        seq = record.seq
        ranked = [
            (user, max_kobo)
            for user, max_kobo in record.ranked_prebids()
            if self._users[user].eligible
        ]
        self._drop_prebids(record)
        handle = _int(auction)
        bids = []
        if len(ranked) == 1:
            user, max_kobo = ranked[0]
            bids.append(self._row(handle, record, user, record.start_price, now, max_kobo))
        elif len(ranked) >= 2:
            (first, first_max), (second, second_max) = ranked[0], ranked[1]
            bids.append(self._row(handle, record, second, second_max, now, second_max))
            price = min(first_max, second_max + record.increment)
            bids.append(self._row(handle, record, first, price, now, first_max))
        return Opened(seq=seq, bids=bids)

    def close_auction(self, auction: int) -> Closed:
        record = self._auction_in(auction, ("scheduled", "live"), "close")
        self._finish(record, "ended")
        self._drop_prebids(record)  # a closed auction never opens: they never resolve
        return Closed(
            auction=auction,
            seq=record.seq,
            leader=record.leader,
            leading_amount_kobo=record.leading_amount,
            leader_is_platform=record.leader_is_platform,
            bid_count=record.bid_count,
            bidder_count=len(record.bidders),
            platform_bid_count=record.platform_bid_count,
            end_time_ms=record.end,
        )

    def cancel_auction(self, auction: int) -> int:
        record = self._auction_in(auction, ("scheduled", "live"), "cancel")
        self._finish(record, "cancelled")
        self._release(record)
        self._drop_prebids(record)
        return record.seq

    def _finish(self, record: _Auction, status: str) -> None:
        record.status = status
        record.seq += 1

    def _release(self, record: _Auction) -> None:
        """A lead counts as exposure while its auction is live or ended (its end
        processing not done): leaving those releases it."""
        if record.leader is not None:
            self._users[record.leader].exposure -= record.real_lead_deposit()

    def _expose_prebid_leader(self, record: _Auction, sign: int) -> None:
        """Adds (+1) or takes off (-1) what the pre-bids' would-be leader is exposed."""
        top = record.would_be_leader()
        if top is not None:
            user, max_kobo = top
            self._users[user].exposure += sign * deposit(max_kobo, record.deposit_bp)

    def _drop_prebids(self, record: _Auction) -> None:
        self._expose_prebid_leader(record, -1)
        record.prebids = []

    def extend_auction(self, auction: int, end_time_ms: int) -> int:
        record = self._auction_in(auction, ("scheduled", "live"), "extend")
        end = _int(end_time_ms)
        if not record.end < end <= MAX_TIME_MS:
            raise InvalidArgument(
                f"end_time_ms must be after the current end {record.end} and at most {MAX_TIME_MS}"
            )
        record.end = end
        record.seq += 1
        return record.seq

    def remove_auction(self, auction: int) -> None:
        record = self._auction_in(auction, ("ended", "cancelled"), "remove")
        if record.status == "ended":
            self._release(record)
        del self._auctions[_int(auction)]
        del self._auction_by_id[record.auction_id]

    def evict_auction(self, auction: int) -> None:
        """Let an auction go whatever its status (its partition moved to another
        node), releasing what it exposed: a live or ended lead, a scheduled
        auction's pre-bids (a cancelled one released both when cancelled)."""
        record = self._auction(auction)
        if record.status in ("live", "ended"):
            self._release(record)
        if record.status == "scheduled":
            self._drop_prebids(record)
        del self._auctions[_int(auction)]
        del self._auction_by_id[record.auction_id]

    # Bids

    def place_bid(
        self, auction: int, user: int, amount_kobo: int, now_ms: int, platform: bool = False
    ) -> Outcome:
        return self._decide(
            _int(auction), _int(user), _int(amount_kobo), _int(now_ms), _flag(platform)
        )

    def place_batch(self, batch: ReferenceBidBatch) -> list[Outcome]:
        return [self._decide(*bid) for bid in batch.bids]

    def _decide(self, auction: int, user: int, amount: int, now: int, platform: bool) -> Outcome:
        reason = self._refusal(auction, user, amount, now, platform)
        if reason is not None:
            return Rejected(reason, auction, user, amount, now, platform)
        return self._accept(auction, user, amount, now, platform)

    def _refusal(
        self, auction: int, user: int, amount: int, now: int, platform: bool
    ) -> str | None:
        """The first rule the bid breaks, or None when it is to be accepted."""
        if not 0 < amount < MAX_AMOUNT_KOBO:
            return "invalid_amount"
        record = self._auctions.get(auction)
        if record is None:
            return "unknown_auction"
        if record.status == "ended":
            return "auction_ended"  # closed, whatever the clock says (a forced end)
        if record.status != "live" or now < record.start:
            return "auction_not_live"
        if now >= record.end:
            return "auction_ended"
        bidder = self._users[user] if 0 <= user < len(self._users) else None
        if bidder is not None and bidder.user_id in record.sellers:
            return "own_auction"
        if bidder is None or not bidder.eligible:
            return "not_eligible"
        if record.leader == user:
            return "already_leading"
        if amount < record.min_next():
            return "below_minimum"
        if not platform and bidder.balance < bidder.exposure + deposit(amount, record.deposit_bp):
            return "insufficient_buying_power"
        return None

    def _accept(self, auction: int, user: int, amount: int, now: int, platform: bool) -> Accepted:
        record = self._auctions[auction]
        holder, holder_max = record.leader, record.leader_max
        accepted = self._place_row(auction, record, user, amount, now, platform, False, None)
        if holder is None or holder_max is None or amount > holder_max:
            return accepted
        # Not past the leader's max: its proxy answers at once (a tie to the max,
        # set earlier).
        price = min(holder_max, amount + record.increment)
        answer = self._row(auction, record, holder, price, now, holder_max)
        return replace(accepted, answer=answer)

    def _row(
        self, auction: int, record: _Auction, user: int, amount: int, now: int, max_kobo: int
    ) -> Accepted:
        """A row placed for a maximum: real, a proxy's, carrying that max."""
        return self._place_row(auction, record, user, amount, now, False, True, max_kobo)

    def _place_row(
        self,
        auction: int,
        record: _Auction,
        user: int,
        amount: int,
        now: int,
        platform: bool,
        is_proxy: bool,
        max_kobo: int | None,
    ) -> Accepted:
        previous_leader = record.leader
        previous_amount = record.leading_amount
        previous_was_platform = record.leader_is_platform
        if previous_leader is not None:
            self._users[previous_leader].exposure -= record.real_lead_deposit()

        if platform:
            added = 0
        else:
            added = deposit(amount if max_kobo is None else max_kobo, record.deposit_bp)
        self._users[user].exposure += added
        record.leader = user
        record.leading_amount = amount
        record.leader_is_platform = platform
        record.leader_max = max_kobo
        record.bid_count += 1
        if platform:
            record.platform_bid_count += 1
            bidder_number = 0
        else:
            bidder_number = record.bidder_numbers.get(user, 0)
            if not bidder_number:
                record.bidders.append(user)
                bidder_number = record.bidder_numbers[user] = len(record.bidders)
        extended = record.end - now < record.window
        if extended:
            record.end = min(record.end + record.extension, MAX_TIME_MS)
        record.seq += 1
        entry = bidlog.Entry(record.seq, bidder_number, amount, now, platform, is_proxy)
        record.head = bidlog.bid_hash(record.log_id, entry, record.head)
        return Accepted(
            auction=auction,
            user=user,
            amount_kobo=amount,
            at_ms=now,
            is_platform=platform,
            is_proxy=is_proxy,
            seq=record.seq,
            end_time_ms=record.end,
            extended=extended,
            min_next_bid_kobo=record.min_next(),
            bid_count=record.bid_count,
            bidder_count=len(record.bidders),
            bidder_number=bidder_number,
            deposit_kobo=added,
            previous_leader=previous_leader,
            previous_amount_kobo=previous_amount,
            previous_was_platform=previous_was_platform,
            hash=record.head,
        )

    # Maximum (proxy) bids

    def set_max(self, auction: int, user: int, max_kobo: int, now_ms: int) -> MaxSet | Rejected:
        """Set or raise `user`'s maximum (a pre-bid on a scheduled auction)."""
        auction, user, max_kobo, now = _int(auction), _int(user), _int(max_kobo), _int(now_ms)
        reason = self._max_refusal(auction, user, max_kobo, now)
        if reason is not None:
            return Rejected(reason, auction, user, max_kobo, now, False)
        record = self._auctions[auction]
        if record.status == "scheduled":
            return self._set_prebid(auction, record, user, max_kobo)
        return self._set_live_max(auction, record, user, max_kobo, now)

    def _max_refusal(self, auction: int, user: int, max_kobo: int, now: int) -> str | None:
        """The first rule the max breaks, or None when it is to be accepted."""
        if not 0 < max_kobo < MAX_AMOUNT_KOBO:
            return "invalid_amount"
        record = self._auctions.get(auction)
        if record is None:
            return "unknown_auction"
        if record.status == "ended":
            return "auction_ended"
        if record.status == "cancelled" or (record.status == "live" and now < record.start):
            return "auction_not_live"
        if now >= record.end:
            return "auction_ended"
        bidder = self._users[user] if 0 <= user < len(self._users) else None
        if bidder is not None and bidder.user_id in record.sellers:
            return "own_auction"
        if bidder is None or not bidder.eligible:
            return "not_eligible"
        # No already_leading: the leader may raise its own max, never lower it.
        own: int | None
        if record.status == "scheduled":
            floor = record.start_price
            own = next((mine for holder, mine in record.prebids if holder == user), None)
        else:
            floor = record.min_next()
            own = record.leader_max if record.leader == user else None
        if max_kobo < floor or (own is not None and max_kobo <= own):
            return "below_minimum"
        if bidder.balance < bidder.exposure - self._exposed_here(record, user) + deposit(
            max_kobo, record.deposit_bp
        ):
            return "insufficient_buying_power"
        return None

    def _exposed_here(self, record: _Auction, user: int) -> int:
        """What this auction adds to `user`'s exposure now."""
        here = record.real_lead_deposit() if record.leader == user else 0
        top = record.would_be_leader()
        if top is not None and top[0] == user:
            here += deposit(top[1], record.deposit_bp)
        return here

    def _set_prebid(self, auction: int, record: _Auction, user: int, max_kobo: int) -> MaxSet:
        self._expose_prebid_leader(record, -1)
        # Set or raised now: it goes after every pre-bid set earlier.
        record.prebids = [prebid for prebid in record.prebids if prebid[0] != user]
        record.prebids.append((user, max_kobo))
        self._expose_prebid_leader(record, +1)
        top = record.would_be_leader()
        return MaxSet(
            auction=auction,
            user=user,
            max_kobo=max_kobo,
            leading=top is not None and top[0] == user,
            price_kobo=record.prebid_price(),
            bids=[],
        )

    def _set_live_max(
        self, auction: int, record: _Auction, user: int, max_kobo: int, now: int
    ) -> MaxSet:
        holder, holder_max = record.leader, record.leader_max
        bids = []
        if holder == user and not record.leader_is_platform:
            # The leader raises its own max: no row, only more exposure.
            self._users[user].exposure -= record.real_lead_deposit()
            record.leader_max = max_kobo
            self._users[user].exposure += record.real_lead_deposit()
        elif holder is None:
            bids.append(self._row(auction, record, user, record.start_price, now, max_kobo))
        elif max_kobo > record.reach():
            reach = record.reach()
            assert record.leading_amount is not None
            if holder_max is not None and holder_max > record.leading_amount:
                # The leader's max is met in full first, then passed.
                bids.append(self._row(auction, record, holder, holder_max, now, holder_max))
            price = min(max_kobo, reach + record.increment)
            bids.append(self._row(auction, record, user, price, now, max_kobo))
        else:
            # Not past the leader's max (so it has one): this one places its all
            # and is answered at once; a tie goes to the leader's, set earlier.
            assert holder_max is not None
            bids.append(self._row(auction, record, user, max_kobo, now, max_kobo))
            price = min(holder_max, max_kobo + record.increment)
            bids.append(self._row(auction, record, holder, price, now, holder_max))
        assert record.leading_amount is not None
        return MaxSet(
            auction=auction,
            user=user,
            max_kobo=max_kobo,
            leading=record.leader == user,
            price_kobo=record.leading_amount,
            bids=bids,
        )

    def reserve_protection(self, now_ms: int) -> list[tuple[int, int]]:
        """The platform bids due now: (auction handle, amount), not yet placed."""
        now = _int(now_ms)
        due = []
        for handle in sorted(self._auctions):
            record = self._auctions[handle]
            if record.reserve is None or record.status != "live" or record.leader_is_platform:
                continue
            if not record.start <= now < record.end:
                continue
            if record.end - now >= RESERVE_PROTECTION_HORIZON_MS:
                continue
            current = record.leading_amount or 0
            min_next = record.min_next()
            if current * 10 < record.reserve * 9 and min_next * 100 <= record.reserve * 95:
                due.append((handle, min_next))
        return due


# --- observing a core: the same for the model and the compiled core -------------------

ACCEPTED_FIELDS = ("accepted", "code", *(f.name for f in fields(Accepted)))
REJECTED_FIELDS = ("accepted", *(f.name for f in fields(Rejected)))
MAX_SET_FIELDS = ("accepted", "code", *(f.name for f in fields(MaxSet)))
OPENED_FIELDS = tuple(f.name for f in fields(Opened))
CLOSED_FIELDS = tuple(f.name for f in fields(Closed))
AUCTION_FIELDS = tuple(f.name for f in fields(AuctionState))
USER_FIELDS = tuple(f.name for f in fields(UserState))


def attributes(value: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(value, name) for name in names}


def outcome_fields(outcome: Any) -> dict[str, Any]:
    """Every attribute of an outcome (a bid's, with its answer, or a max's, with its
    rows), from either implementation."""
    if not outcome.accepted:
        return attributes(outcome, REJECTED_FIELDS)
    if hasattr(outcome, "max_kobo"):
        observed = attributes(outcome, MAX_SET_FIELDS)
        observed["bids"] = [outcome_fields(bid) for bid in outcome.bids]
        return observed
    observed = attributes(outcome, ACCEPTED_FIELDS)
    if outcome.answer is not None:
        observed["answer"] = outcome_fields(outcome.answer)
    return observed


def opened_fields(opened: Any) -> dict[str, Any]:
    """Every attribute of what `open_auction` returns, from either implementation."""
    return {"seq": opened.seq, "bids": [outcome_fields(bid) for bid in opened.bids]}


def state_of(core: Any) -> dict[str, Any]:
    """Everything a core lets an observer see: every auction and every user."""
    handles = core.auction_handles()
    auctions = {handle: attributes(core.auction(handle), AUCTION_FIELDS) for handle in handles}
    users = [attributes(core.user(handle), USER_FIELDS) for handle in range(core.user_count)]
    return {
        "auction_count": core.auction_count,
        "user_count": core.user_count,
        "auction_handles": handles,
        "status_counts": core.status_counts(),
        "auction_handle_by_id": {
            state["auction_id"]: core.auction_handle(state["auction_id"])
            for state in auctions.values()
        },
        "user_handle_by_id": {
            state["user_id"]: core.user_handle(state["user_id"]) for state in users
        },
        "auctions": auctions,
        "users": users,
    }
