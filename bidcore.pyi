"""Type stubs for ``bidcore``, the compiled bid core (Rust, PyO3).

The core holds every loaded auction and bidder in memory and decides bids by
the rules in RULES.md. Amounts are integer kobo, times integer milliseconds
since the Unix epoch: the core never reads a clock.

Auctions and users are registered under their 128-bit ids (``uuid.UUID.int``)
and get back a small integer *handle*; every hot call takes handles, so a
batch crosses the language boundary as plain machine integers.
"""

from collections.abc import Sequence
from typing import Final, Literal, final

__all__ = [
    "MAX_AMOUNT_KOBO",
    "MAX_SHARDS",
    "MAX_TIME_MS",
    "REASON_CODES",
    "Accepted",
    "AuctionState",
    "BatchResult",
    "BidBatch",
    "Closed",
    "Core",
    "CoreError",
    "DuplicateAuction",
    "InvalidArgument",
    "InvalidTransition",
    "LogBatch",
    "MaxSet",
    "Opened",
    "Rejected",
    "UnknownAuction",
    "UnknownUser",
    "UserState",
    "__version__",
    "deposit",
]

__version__: Final[str]

#: Reason codes, indexed by the byte ``BatchResult.codes()`` gives (0 = accepted).
REASON_CODES: Final[tuple[str, ...]]
#: Exclusive upper bound of a valid amount: 10**15 kobo.
MAX_AMOUNT_KOBO: Final[int]
#: Largest time the core accepts (9999-12-31T23:59:59.999Z).
MAX_TIME_MS: Final[int]
#: Most shards a core may have.
MAX_SHARDS: Final[int]

Reason = Literal[
    "invalid_amount",
    "unknown_auction",
    "auction_not_live",
    "auction_ended",
    "own_auction",
    "not_eligible",
    "already_leading",
    "below_minimum",
    "insufficient_buying_power",
]
AuctionStatus = Literal["scheduled", "live", "ended", "cancelled"]

class CoreError(Exception):
    """Base class of the core's errors: misuse, never a rejected bid."""

class InvalidArgument(CoreError):
    """A value out of its documented range (a price, a time, a percentage)."""

class UnknownAuction(CoreError):
    """No auction with that handle is loaded."""

class UnknownUser(CoreError):
    """No user with that handle is loaded."""

class DuplicateAuction(CoreError):
    """An auction with that id is already loaded."""

class InvalidTransition(CoreError):
    """The auction's status does not allow that operation."""

def deposit(amount_kobo: int, deposit_pct_bp: int) -> int:
    """``ceil(amount * bp / 10000)``, exactly, in integers."""

@final
class Accepted:
    """An accepted bid (one bid row) and the auction's state right after it."""

    @property
    def accepted(self) -> Literal[True]: ...
    @property
    def code(self) -> Literal["accepted"]: ...
    @property
    def auction(self) -> int: ...
    @property
    def user(self) -> int: ...
    @property
    def amount_kobo(self) -> int: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def is_platform(self) -> bool: ...
    @property
    def is_proxy(self) -> bool:
        """Placed by the core for a maximum (RULES.md, maximum bids), not by its bidder."""
    @property
    def answer(self) -> Accepted | None:
        """The leader's proxy answering this bid in the same decision (the bid did
        not pass the leader's maximum), placed right after it; None otherwise."""
    @property
    def seq(self) -> int: ...
    @property
    def end_time_ms(self) -> int: ...
    @property
    def extended(self) -> bool: ...
    @property
    def min_next_bid_kobo(self) -> int: ...
    @property
    def bid_count(self) -> int: ...
    @property
    def bidder_count(self) -> int: ...
    @property
    def bidder_number(self) -> int:
        """The bidder's stable number here (1 = first real bidder); 0 for the platform."""
    @property
    def deposit_kobo(self) -> int:
        """What this bid adds to the bidder's exposure: deposit(max) for a row
        carrying a maximum, else deposit(amount); 0 for a platform bid."""
    @property
    def hash(self) -> bytes:
        """This row's hash in the auction's bid log (32 bytes): SHA-256 over its
        canonical encoding and the previous row's hash (engine/bidlog.py)."""
    @property
    def previous_leader(self) -> int | None:
        """The user handle this bid outbid, if any."""
    @property
    def previous_amount_kobo(self) -> int | None: ...
    @property
    def previous_was_platform(self) -> bool: ...

@final
class LogBatch:
    """Bid log records as machine integers, to hash in one call: the hashing that
    placing those rows does in the core, with no decision around it."""

    @staticmethod
    def from_columns(
        auction_ids: Sequence[int],
        seqs: Sequence[int],
        numbers: Sequence[int],
        amounts_kobo: Sequence[int],
        at_ms: Sequence[int],
        platform: Sequence[bool],
        proxy: Sequence[bool],
    ) -> LogBatch:
        """Columns of one length; InvalidArgument for a value the record cannot
        hold (a seq from 2**40, an amount from 2**56, a time below 0 or from 2**48)."""
    def __len__(self) -> int: ...
    def heads(self) -> list[tuple[int, bytes]]:
        """Each auction's head after the rows (its chain from its genesis), in the
        order auctions first appear."""

@final
class Rejected:
    """A rejected bid: nothing changed anywhere."""

    @property
    def accepted(self) -> Literal[False]: ...
    @property
    def code(self) -> Reason: ...
    @property
    def auction(self) -> int: ...
    @property
    def user(self) -> int: ...
    @property
    def amount_kobo(self) -> int: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def is_platform(self) -> bool: ...

Outcome = Accepted | Rejected

@final
class MaxSet:
    """A maximum set or raised: where it stands and the bid rows it placed."""

    @property
    def accepted(self) -> Literal[True]: ...
    @property
    def code(self) -> Literal["accepted"]: ...
    @property
    def auction(self) -> int: ...
    @property
    def user(self) -> int: ...
    @property
    def max_kobo(self) -> int: ...
    @property
    def leading(self) -> bool:
        """This maximum leads (on a scheduled auction: would lead when it opens)."""
    @property
    def price_kobo(self) -> int:
        """The auction's price after resolution (scheduled: the price it would open at)."""
    @property
    def bids(self) -> list[Accepted]:
        """The rows it placed, in order, all ``is_proxy``: none (a raise by the
        leader, a pre-bid), one, or two (a maximum met in full and the row passing
        it, or this maximum's row and the leader's answer)."""

@final
class Opened:
    """An auction opened: the state change's seq, then the rows its pre-bids placed."""

    @property
    def seq(self) -> int:
        """The room's seq of the state change (the rows' seqs follow it)."""
    @property
    def bids(self) -> list[Accepted]:
        """The pre-bids' rows, in order: none, one (alone, at the start price) or two."""

@final
class Closed:
    """What closing an auction leaves: its result, for end processing."""

    @property
    def auction(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def leader(self) -> int | None: ...
    @property
    def leading_amount_kobo(self) -> int | None: ...
    @property
    def leader_is_platform(self) -> bool: ...
    @property
    def bid_count(self) -> int: ...
    @property
    def bidder_count(self) -> int: ...
    @property
    def platform_bid_count(self) -> int: ...
    @property
    def end_time_ms(self) -> int: ...

@final
class AuctionState:
    """A read-only copy of one auction's state."""

    @property
    def handle(self) -> int: ...
    @property
    def auction_id(self) -> int: ...
    @property
    def status(self) -> AuctionStatus: ...
    @property
    def sellers(self) -> list[int]: ...
    @property
    def start_time_ms(self) -> int: ...
    @property
    def end_time_ms(self) -> int: ...
    @property
    def original_end_ms(self) -> int: ...
    @property
    def start_price_kobo(self) -> int: ...
    @property
    def bid_increment_kobo(self) -> int: ...
    @property
    def reserve_price_kobo(self) -> int | None: ...
    @property
    def deposit_pct_bp(self) -> int: ...
    @property
    def anti_snipe_window_ms(self) -> int: ...
    @property
    def anti_snipe_extension_ms(self) -> int: ...
    @property
    def current_price_kobo(self) -> int | None:
        """The leading amount, or None while there is no bid."""
    @property
    def min_next_bid_kobo(self) -> int: ...
    @property
    def leader(self) -> int | None: ...
    @property
    def leader_is_platform(self) -> bool: ...
    @property
    def leader_max_kobo(self) -> int | None:
        """The leader's active maximum (None: a plain lead, a platform lead, or no lead)."""
    @property
    def prebids(self) -> list[tuple[int, int]]:
        """A scheduled auction's pre-bids, (user, max) in the order their amounts were
        set; empty once it is not scheduled."""
    @property
    def bid_count(self) -> int: ...
    @property
    def bidder_count(self) -> int: ...
    @property
    def platform_bid_count(self) -> int: ...
    @property
    def bidders(self) -> list[int]:
        """Real bidders' user handles in the order of their first bid."""
    @property
    def seq(self) -> int: ...
    @property
    def log_head(self) -> bytes:
        """The bid log's head: the last bid's hash, the auction's genesis before any."""

@final
class UserState:
    """A read-only copy of one bidder's state."""

    @property
    def handle(self) -> int: ...
    @property
    def user_id(self) -> int: ...
    @property
    def balance_kobo(self) -> int: ...
    @property
    def eligible(self) -> bool: ...
    @property
    def exposure_kobo(self) -> int:
        """Sum of deposits over the live and ended auctions this user leads
        (deposit(max) where its lead has a maximum), plus deposit(max) for each
        scheduled auction whose pre-bids it would lead."""

@final
class BidBatch:
    """Bids in arrival order, held as machine integers for ``Core.place_batch``."""

    def __new__(cls) -> BidBatch: ...
    @staticmethod
    def from_columns(
        auctions: Sequence[int],
        users: Sequence[int],
        amounts_kobo: Sequence[int],
        at_ms: Sequence[int],
        platform: Sequence[bool] | None = None,
    ) -> BidBatch:
        """Build a batch from equal-length columns (ValueError if lengths differ)."""
    def append(
        self, auction: int, user: int, amount_kobo: int, at_ms: int, platform: bool = False
    ) -> None: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...

@final
class BatchResult:
    """Outcomes of a batch, in the batch's order."""

    @property
    def accepted_count(self) -> int: ...
    def codes(self) -> bytes:
        """One byte per bid: 0 accepted, else the index of its reason in REASON_CODES."""
    def accepted(self) -> list[Accepted]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Outcome: ...

@final
class Core:
    """Every loaded auction (spread over shards) and every bidder's exposure."""

    def __new__(cls, shards: int = 8, parallel_min_batch: int = 4096) -> Core:
        """``shards`` (1..MAX_SHARDS) spread auctions; a batch of at least
        ``parallel_min_batch`` bids is worked by several threads where that
        cannot change any outcome."""
    @property
    def shard_count(self) -> int: ...
    @property
    def auction_count(self) -> int: ...
    @property
    def user_count(self) -> int: ...

    # Users
    def upsert_user(self, user_id: int, *, balance_kobo: int, eligible: bool) -> int:
        """Register a bidder, or update its balance and eligibility; returns its handle."""
    def user_handle(self, user_id: int) -> int | None: ...
    def set_balance(self, user: int, balance_kobo: int) -> None: ...
    def set_eligible(self, user: int, eligible: bool) -> None: ...
    def user(self, user: int) -> UserState: ...
    def set_allowance(self, user: int, pool: int, allowance_kobo: int) -> None:
        """Set what `pool` may commit of the user's balance (several nodes: the
        partition's allowance). An auction added with a `pool` weighs its
        bidders' buying power against that pool's allowance and exposure only."""
    def allowance(self, user: int, pool: int) -> tuple[int, int]:
        """(allowance, exposure) of the user in `pool`; (0, 0) for none."""
    def close_pool(self, pool: int) -> None:
        """Forget every user's allowance in `pool` (once its auctions are gone)."""
    def exposed_here(self, auction: int, user: int) -> int:
        """What the auction adds to the user's exposure now (a lead's deposit,
        a leading pre-bid's)."""

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
        pool: int | None = None,
    ) -> int:
        """Load a new auction (scheduled, or live); returns its handle. `pool`:
        its bidders' deposits are backed by their allowances in that pool
        (`set_allowance`) instead of their whole balances."""
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
        pool: int | None = None,
        log_head: bytes | None = None,
    ) -> int:
        """Load an auction with its state as the ledger has it (recovery); `ended`
        (with `live`): closed, its end processing not yet done, the leader exposed;
        `leader_max_kobo`: a real leader's active maximum; `prebids`: a scheduled
        auction's (user, max) in the order their amounts were set; `log_head`:
        its last bid's hash (None: no bid, the chain starts at its genesis)."""
    def auction_handle(self, auction_id: int) -> int | None: ...
    def auction(self, auction: int) -> AuctionState: ...
    def auction_handles(self) -> list[int]: ...
    def status_counts(self) -> dict[AuctionStatus, int]:
        """How many loaded auctions are in each status."""
    def open_auction(self, auction: int, now_ms: int) -> Opened:
        """scheduled -> live at `now_ms`; its pre-bids (of bidders still eligible)
        resolve into bid rows placed right after the state change."""
    def close_auction(self, auction: int) -> Closed:
        """scheduled/live -> ended; the leader stays exposed until `remove_auction`
        (end processing takes the deposit in between); pre-bids are released."""
    def cancel_auction(self, auction: int) -> int:
        """scheduled/live -> cancelled; releases exposure (a lead's, pre-bids');
        returns the new seq."""
    def extend_auction(self, auction: int, end_time_ms: int) -> int:
        """Move a scheduled/live auction's end later; returns the new seq."""
    def remove_auction(self, auction: int) -> None:
        """Forget an ended or cancelled auction; an ended one's leader is no longer exposed."""
    def evict_auction(self, auction: int) -> None:
        """Let an auction go whatever its status (its partition moved to another node),
        releasing what it exposed: a live or ended lead, a scheduled one's pre-bids."""

    # Bids
    def place_bid(
        self, auction: int, user: int, amount_kobo: int, now_ms: int, platform: bool = False
    ) -> Outcome:
        """Decide one bid; an accepted one may carry the leader's proxy `answer`."""
    def set_max(self, auction: int, user: int, max_kobo: int, now_ms: int) -> MaxSet | Rejected:
        """Set or raise `user`'s maximum (a pre-bid on a scheduled auction); the
        rows it places are in `MaxSet.bids`. Rejected: nothing changed."""
    def place_batch(self, batch: BidBatch) -> BatchResult:
        """Decide a batch with the interpreter detached; equal to placing its bids one by one."""
    def due(self, now_ms: int) -> tuple[list[int], list[int]]:
        """(to open, to close): scheduled auctions whose start has come and live
        auctions whose end has, in handle order."""
    def reserve_protection(self, now_ms: int) -> list[tuple[int, int]]:
        """The platform bids due now: (auction handle, amount) pairs, not yet placed."""
