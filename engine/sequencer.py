"""The sequencer: every bid goes through here, to the core and on to the ledger.

It asks `bidcore` for a decision (microseconds, nothing written), hands an
accepted bid to the ledger writer and answers only once that bid is durable.
It keeps `client_bid_id` idempotent — the same id from the same bidder on the
same auction gets the first outcome, never a second bid — and refuses bids
with `unavailable` while the ledger cannot take them, rebuilding the core
from the ledger before it takes bids again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import asyncpg
import msgspec

import bidcore
from engine import metrics
from engine.allowances import Escrow, forget_all
from engine.audit import write_audit
from engine.bids import (
    LOG_BROKEN,
    NOT_HERE,
    UNAVAILABLE,
    UNCONFIRMED,
    BidAccepted,
    BidOutcome,
    BidRejected,
    DurableBid,
    DurableMax,
    MaxAccepted,
    MaxOutcome,
    new_bid_id,
    refusal_for_status,
    rejection,
)
from engine.clock import Clock, SystemClock
from engine.errors import UNREACHABLE_OR_REFUSED, LedgerUnavailable
from engine.leases import Fence
from engine.ledger import DEFAULT_BATCH_MAX, LedgerWrite, LedgerWriter
from engine.locks import KeyedLocks, user_lock
from engine.money import naira_to_kobo
from engine.partitions import partition_of
from engine.recovery import (
    Held,
    IdempotencyKey,
    Recovered,
    find_bid,
    load_auction,
    load_partitions,
    read_decision,
    recover,
    restore_decision,
    stray_auctions,
)
from engine.registry import NO_HANDLE, Registry
from engine.roles import PLATFORM_USER_ID, may_bid
from engine.state_changes import InTransaction, StateChange

logger = logging.getLogger(__name__)

#: Rejections that may hide a bid the ledger already holds for an auction the
#: core has let go of (ended, removed): worth one look at the ledger.
_LOOK_IN_LEDGER = frozenset({"unknown_auction", "auction_not_live", "auction_ended"})

#: Rejected outcomes are remembered for idempotent retries, up to this many.
REJECTIONS_REMEMBERED = 100_000

#: Why bids on auctions the core does not hold are refused (ended, draft, no such
#: id), remembered for this many auctions so a stream of such bids reads the
#: ledger once per auction, not once per bid.
STATUSES_REMEMBERED = 10_000

_AUCTION_STATUS = "SELECT status FROM auctions WHERE id = $1"
_USER = "SELECT wallet_balance, role, kyc_status, is_active FROM users WHERE id = $1"

_ACCEPTED = metrics.BIDS.labels("accepted", "none")  # the hot path's counter, looked up once


class _Pending(NamedTuple):
    """An accepted bid or maximum on its way to the ledger: `written` completes
    once it is durable (None: its first caller went away; LedgerWriter.flush tells)."""

    bid: DurableBid | DurableMax
    written: asyncio.Future[None] | None


_Known = DurableBid | DurableMax | _Pending | BidRejected

#: Bids and maximums share one client_bid_id namespace per bidder: an id that
#: named one cannot name the other.
_REUSED = BidRejected(
    "client_bid_id_reused",
    "This client_bid_id already named another bid or maximum of yours on this "
    "auction; send this one with a new client_bid_id.",
)

DurableListener = Callable[[Sequence[DurableBid]], None]
StateListener = Callable[[StateChange], None]
MaxListener = Callable[[DurableMax], None]
LoadedListener = Callable[[Sequence[tuple[uuid.UUID, int]]], None]


class Elsewhere(Protocol):
    """The other nodes, as this node's sequencer needs them (web/peers.py): the
    owner of an auction this node does not decide loads it, and every node takes
    a user's committed balance or eligibility, before an internal call returns."""

    async def load_auction(self, auction_id: uuid.UUID) -> bool: ...

    async def user_changed(self, user_id: uuid.UUID) -> None: ...

    async def release_allowances(self, user_id: uuid.UUID) -> None: ...


class Sequencer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        recovered: Recovered,
        *,
        clock: Clock | None = None,
        shards: int = 8,
        batch_max: int = DEFAULT_BATCH_MAX,
        window_ms: float = 2,
        unavailable_after_ms: int = 3000,
        outage_min_ms: int = 5000,
    ) -> None:
        self._pool = pool
        self._outage_min_ms = outage_min_ms
        #: The partitions this node holds leases on (None: every auction is its own).
        self._held = recovered.held
        self._clock = clock or SystemClock()
        self._shards = shards
        self._adopt(recovered)
        self._listeners: list[DurableListener] = []
        self._state_listeners: list[StateListener] = []
        self._max_listeners: list[MaxListener] = []
        self._loaded_listeners: list[LoadedListener] = []
        metrics.LIVE_AUCTIONS.set_function(lambda: self.core.status_counts().get("live", 0))
        metrics.BID_LOGS_BROKEN.set_function(lambda: len(self._recovered.broken))
        self._rebuilding = False
        self._decide_until = math.inf
        self._fences: Callable[[int], Fence] | None = None
        self._elsewhere: Elsewhere | None = None
        #: With leases, buying power is split into allowances per partition.
        self.escrow = (
            None
            if self._held is None or not self._held.pooled
            else Escrow(
                pool,
                lambda: self.registry,
                self.fence_partition,
                self._pools,
                self.writer_caught_up,
            )
        )
        self._took_allowances()
        self._announcing: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._decision_locks = KeyedLocks()
        self._covering: set[asyncio.Task[None]] = set()
        self.writer = LedgerWriter(
            pool,
            epoch=recovered.epoch,
            batch_max=batch_max,
            window_ms=window_ms,
            unavailable_after_ms=unavailable_after_ms,
            on_commit=self._committed,
            on_unavailable=self._lost_ledger,
            on_recovered=self.rebuild,
            on_resumed=self._resumed,
            # Alone, a newer epoch is another process that took everything over;
            # with leases, a partition another node took: rebuild without it.
            stop_when_fenced=self._held is None,
        )

    @classmethod
    async def open(
        cls,
        pool: asyncpg.Pool,
        *,
        clock: Clock | None = None,
        shards: int = 8,
        batch_max: int = DEFAULT_BATCH_MAX,
        window_ms: float = 2,
        unavailable_after_ms: int = 3000,
        held: Held | None = None,
        interrupted: Mapping[int, int] | None = None,
        outage_min_ms: int = 5000,
    ) -> Sequencer:
        """Recover the core from the ledger (with `held`: those partitions'
        auctions only) and start writing. `interrupted`: since when (ms) each
        partition's bids could not be taken (the outage rule, `outage`)."""
        sequencer = cls(
            pool,
            await recover(pool, shards=shards, held=held),
            clock=clock,
            shards=shards,
            batch_max=batch_max,
            window_ms=window_ms,
            unavailable_after_ms=unavailable_after_ms,
            outage_min_ms=outage_min_ms,
        )
        sequencer._after_interruptions(interrupted or {}, sequencer.registry.auction_ids())
        if held is not None and not held.pooled:
            await forget_all(pool)
        sequencer.writer.start()
        return sequencer

    def _after_interruptions(
        self, interrupted: Mapping[int, int], auction_ids: Iterable[uuid.UUID]
    ) -> None:
        """The outage rule for auctions just loaded, by their partition's interruption."""
        held = self._held
        if held is None or not interrupted:
            return
        by_partition: dict[int, list[uuid.UUID]] = collections.defaultdict(list)
        for auction_id in auction_ids:
            by_partition[partition_of(auction_id, held.count)].append(auction_id)
        for partition, since_ms in interrupted.items():
            self.outage(since_ms, by_partition.get(partition, ()))

    async def flush(self) -> None:
        """Wait until everything decided so far is durable (or has failed)."""
        await self.writer.flush()

    async def writer_caught_up(self) -> None:
        """Wait until everything decided so far is durable or has failed (what is
        decided meanwhile is not waited for, unlike `flush`)."""
        await self.writer.written()

    async def close(self) -> None:
        """Stop taking bids, write what was accepted, stop the writer."""
        self._rebuilding = True
        await self.writer.stop()

    @property
    def available(self) -> bool:
        """Taking bids: the ledger takes writes, no batch is waiting on a retry (a
        bid decided now would build on bids that may never be written), the core
        is not being rebuilt, and (several nodes) the leases held are within their
        deadline on this node's clock (a process paused past it, say, decides
        nothing until its leases are renewed or dropped)."""
        return (
            self.writer.available
            and not self.writer.stalled
            and not self._rebuilding
            and time.monotonic() < self._decide_until
        )

    def fence_with(self, fences: Callable[[int], Fence]) -> None:
        """Where a partition's fence comes from: the membership's leases (several
        nodes). Leads recovery loaded beyond their allowance are allotted now
        (that takes the fences)."""
        self._fences = fences
        if self.escrow is not None and self._recovered.exposed:
            task = asyncio.create_task(self._cover_loaded())
            self._covering.add(task)
            task.add_done_callback(self._covering.discard)

    def fence(self, auction_id: uuid.UUID) -> Fence | None:
        """What a write outside the writer (end processing, settlement) checks for this auction:
        None for a node alone without leases (nothing to check)."""
        held = self._held
        if held is None or self._fences is None:
            return None
        return self._fences(partition_of(auction_id, held.count))

    def fence_partition(self, partition: int) -> Fence:
        """The fence of one partition (several nodes; one that always fails when no
        leases are known)."""
        if self._fences is None:
            return Fence(partition, "", -1)
        return self._fences(partition)

    def _pools(self) -> tuple[int, frozenset[int]]:
        held = self._held
        return (0, frozenset()) if held is None else (held.count, held.partitions)

    def _took_allowances(self) -> None:
        """Allowances recovery or a load read into the core, watched from now."""
        if self.escrow is not None:
            self.escrow.loaded(self._recovered.allowances)
        self._recovered.allowances.clear()

    async def _cover_loaded(self) -> None:
        """Leads just loaded beyond their partition's allowance are allotted now."""
        exposed, self._recovered.exposed = self._recovered.exposed, {}
        if self.escrow is not None and exposed:
            await self.escrow.cover(exposed)

    def decide_until(self, deadline: float) -> None:
        """Stop deciding at `deadline` (time.monotonic()) unless told a later one:
        the earliest deadline of the leases this node holds."""
        self._decide_until = deadline

    @property
    def core(self) -> bidcore.Core:
        return self._recovered.registry.core

    @property
    def registry(self) -> Registry:
        return self._recovered.registry

    def suspended(self, auction_id: uuid.UUID) -> bool:
        """The auction's bid log did not verify when it was loaded: nothing is
        decided for it (engine/recovery.py)."""
        return auction_id in self._recovered.broken

    @property
    def broken_logs(self) -> dict[uuid.UUID, int]:
        """Suspended auctions → the first bid (seq) whose hash does not verify."""
        return dict(self._recovered.broken)

    def held(self, auction_id: uuid.UUID) -> bidcore.AuctionState | None:
        """The core's state of the auction, if the core holds it as an auction (not one
        awaiting its seller's decision, held only for its bidder's exposure)."""
        if auction_id in self._recovered.decisions:
            return None
        return self._in_core(auction_id)

    def _in_core(self, auction_id: uuid.UUID) -> bidcore.AuctionState | None:
        handle = self._recovered.registry.auction_handle(auction_id)
        if handle == NO_HANDLE:
            return None
        try:
            return self.core.auction(handle)
        except bidcore.UnknownAuction:
            return None

    # ---- partitions (several nodes) ------------------------------------------------

    @property
    def partitions(self) -> Held | None:
        """The partitions this node decides for (None: all, a node alone without leases)."""
        return self._held

    def decides(self, auction_id: uuid.UUID) -> bool:
        """Whether this node decides the auction's bids (its partition is held)."""
        held = self._held
        return held is None or partition_of(auction_id, held.count) in held.partitions

    async def adopt_partitions(
        self, partitions: Collection[int], interrupted: Mapping[int, int] | None = None
    ) -> list[uuid.UUID]:
        """Take the open auctions of newly leased partitions into the core (claimed
        under this node's epoch, verified against the ledger); their ids.
        `interrupted`: since when (ms) each partition's bids could not be taken
        (the outage rule, `outage`)."""
        held = self._held
        if held is None or not partitions:
            return []
        started = time.monotonic()
        async with self._pool.acquire() as conn:
            taken, loaded = await load_partitions(conn, self._recovered, held.only(partitions))
            # Before any other task runs: no retry goes by unknown, no bid forwarded away.
            self._take_remembered()
            self._took_allowances()
            now = self._held or held  # re-read: a partition may have been dropped meanwhile
            self._held = now.only(now.partitions | taken.partitions)
            self._after_interruptions(
                {p: t for p, t in (interrupted or {}).items() if p in taken.partitions}, loaded
            )
        self._off_core.clear()  # refusals remembered for auctions now held
        logger.info(
            "took partitions %s: %d open auctions, loaded in %.3f s",
            sorted(taken.partitions),
            len(loaded),
            time.monotonic() - started,
        )
        self._tell_loaded(loaded)
        await self._cover_loaded()
        return loaded

    def _tell_loaded(self, auction_ids: Iterable[uuid.UUID]) -> None:
        loaded = self.seqs(auction_ids)
        for listener in self._loaded_listeners:
            try:
                listener(loaded)
            except Exception:
                logger.exception("a listener failed on auctions taken")

    async def adopt_strays(self) -> list[uuid.UUID]:
        """Load the open auctions of this node's partitions that it has not claimed
        (made or approved through another node); their ids."""
        held = self._held
        if held is None or not held.partitions or not self.available:
            return []
        loaded = []
        async with self._pool.acquire() as conn:
            for auction_id in await stray_auctions(conn, self._recovered, held):
                if await self._load(conn, auction_id):
                    self._off_core.pop(auction_id, None)
                    loaded.append(auction_id)
        if loaded:
            logger.info("loaded %d auctions made through other nodes", len(loaded))
        return loaded

    def drop_partitions(self, partitions: Collection[int]) -> list[uuid.UUID]:
        """Stop deciding for these partitions at once: their auctions leave the core
        (releasing what they exposed) and bids on them are refused `unavailable`
        until another node (or this one again) takes them; their ids. Bids already
        decided are still written, or refused by the fencing if a new owner took over."""
        held = self._held
        if held is None or not partitions:
            return []
        dropping = frozenset(partitions)
        self._held = held.only(held.partitions - dropping)
        registry = self._recovered.registry
        gone = [a for a in registry.auction_ids() if partition_of(a, held.count) in dropping]
        for auction_id in gone:
            self._evict(auction_id)
        if self.escrow is not None:
            self.escrow.dropped(dropping)
        self._forget_answers(set(gone))
        logger.warning("dropped partitions %s: %d auctions", sorted(partitions), len(gone))
        return gone

    def _evict(self, auction_id: uuid.UUID) -> None:
        registry = self._recovered.registry
        self.core.evict_auction(registry.auction_handle(auction_id))
        registry.forget_auction(auction_id)
        self._recovered.maxes.pop(auction_id, None)
        self._recovered.decisions.pop(auction_id, None)
        self._recovered.broken.pop(auction_id, None)

    def _forget_answers(self, dropped: set[uuid.UUID]) -> None:
        for key in [key for key in self._accepted if key[0] in dropped]:
            if not isinstance(self._accepted[key], _Pending):
                del self._accepted[key]  # the ledger answers retries from now on

    def subscribe(self, listener: DurableListener) -> None:
        """Call `listener` with the bids of every committed batch, in commit order."""
        self._listeners.append(listener)

    def subscribe_state(self, listener: StateListener) -> None:
        """Call `listener` with every committed state change, in commit order."""
        self._state_listeners.append(listener)

    def subscribe_loaded(self, listener: LoadedListener) -> None:
        """Call `listener` with (auction, seq) of the auctions this node takes when
        it takes a partition, as rebuilt from the ledger."""
        self._loaded_listeners.append(listener)

    def seqs(self, auction_ids: Iterable[uuid.UUID]) -> list[tuple[uuid.UUID, int]]:
        """(auction, seq) as the core has them, for those it holds."""
        found = []
        for auction_id in auction_ids:
            state = self._in_core(auction_id)
            if state is not None:
                found.append((auction_id, state.seq))
        return found

    def subscribe_maxes(self, listener: MaxListener) -> None:
        """Call `listener` with every committed maximum, once the listeners of
        bids have heard of the rows it placed."""
        self._max_listeners.append(listener)

    # ---- a bidder's standing ----------------------------------------------------

    def max_of(self, auction_id: uuid.UUID, user_id: uuid.UUID) -> int | None:
        """The latest (so the highest) maximum the bidder has set on an auction the
        core holds, as committed: whether it still leads or was passed (None: none,
        or the core does not hold the auction)."""
        return self._recovered.maxes.get(auction_id, {}).get(user_id)

    def available_of(self, user_id: uuid.UUID) -> int | None:
        """The bidder's buying power left, as the core has it: the committed balance
        less the deposits of what they lead (None: a user the core does not know)."""
        handle = self._recovered.registry.user_handle(user_id)
        if handle == NO_HANDLE:
            return None
        user = self.core.user(handle)
        return user.balance_kobo - user.exposure_kobo

    # ---- bids ---------------------------------------------------------------

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
        if key is not None and (known := self._accepted.get(key) or self._rejections.get(key)):
            return await self._again(key, known)
        if not self.available:
            return UNAVAILABLE
        if self._recovered.broken and auction_id in self._recovered.broken:
            return LOG_BROKEN
        outcome = self._decide(auction_id, user_id, amount_kobo, platform)
        if isinstance(outcome, bidcore.Rejected) and await self._learned(outcome, user_id):
            outcome = self._decide(auction_id, user_id, amount_kobo, platform)
        if (
            isinstance(outcome, bidcore.Rejected)
            and (widened := await self._widened(outcome, amount_kobo)) is not False
        ):
            if widened is None or not self.available:
                return UNAVAILABLE
            outcome = self._decide(auction_id, user_id, amount_kobo, platform)
        if isinstance(outcome, bidcore.Rejected):
            result = await self._rejected(outcome, auction_id, key)
            if isinstance(result, BidRejected):
                metrics.BIDS.labels("rejected", result.code).inc()
            return result
        bid = self._durable(outcome, client_bid_id)
        written = self.writer.submit(bid)
        answer = outcome.answer
        if answer is not None:
            # The leader's proxy answer, in the same batch (the writer keeps a bid
            # and its answer together): the bid is acknowledged once both are durable.
            written = self.writer.submit(self._durable(answer, None))
        if key is not None:
            self._accepted[key] = _Pending(bid, written)  # _committed records the bid
        try:
            await written
        except LedgerUnavailable:
            if key is not None and isinstance(self._accepted.get(key), _Pending):
                del self._accepted[key]  # unknown outcome: a retry looks again
            metrics.BIDS.labels("rejected", "unavailable").inc()
            return UNCONFIRMED
        except asyncio.CancelledError:
            if key is not None and isinstance(self._accepted.get(key), _Pending):
                # This caller went away (a shutdown); the writer still has the bid,
                # and a retry must not wait on a future nobody will complete.
                self._accepted[key] = _Pending(bid, None)
            raise
        metrics.BID_LATENCY.observe(time.perf_counter() - received)
        return BidAccepted(bid)

    async def _again(self, key: IdempotencyKey, known: _Known) -> BidOutcome:
        """The first outcome of a bid sent again with its client_bid_id."""
        first = await self._first(key, known)
        if isinstance(first, BidRejected):
            return first
        return BidAccepted(first) if isinstance(first, DurableBid) else _REUSED

    async def _first(
        self, key: IdempotencyKey, known: _Known
    ) -> DurableBid | DurableMax | BidRejected:
        """What a client_bid_id first named, once durable; or its refusal."""
        if isinstance(known, BidRejected | DurableBid | DurableMax):
            return known
        if known.written is not None and not known.written.cancelled():
            try:
                # Shielded: this retry going away must not cancel the first caller's wait.
                await asyncio.shield(known.written)
            except LedgerUnavailable:
                return UNCONFIRMED
            return known.bid
        try:  # its first caller went away: wait for the writer instead
            await self.writer.flush()
        except LedgerUnavailable:
            return UNCONFIRMED
        settled = self._accepted.get(key)
        return settled if isinstance(settled, DurableBid | DurableMax) else UNCONFIRMED

    # ---- maximums -------------------------------------------------------------

    async def set_max(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        max_kobo: int,
        client_bid_id: str | None = None,
    ) -> MaxOutcome:
        """Set or raise a maximum (a pre-bid on a scheduled auction), with the rows
        it places; answered once durable. Idempotent by client_bid_id, in the
        namespace of the bidder's bids."""
        key = (auction_id, user_id, client_bid_id) if client_bid_id is not None else None
        if key is not None and (known := self._accepted.get(key) or self._rejections.get(key)):
            first = await self._first(key, known)
            if isinstance(first, BidRejected):
                return first
            if not isinstance(first, DurableMax):
                return _REUSED
            return MaxAccepted(self._standing_now(first) if first.price_kobo == 0 else first)
        if not self.available:
            return UNAVAILABLE
        if self._recovered.broken and auction_id in self._recovered.broken:
            return LOG_BROKEN
        now = self._clock.now_ms()
        outcome = self._decide_max(auction_id, user_id, max_kobo, now)
        if isinstance(outcome, bidcore.Rejected) and await self._learned(outcome, user_id):
            outcome = self._decide_max(auction_id, user_id, max_kobo, now)
        if (
            isinstance(outcome, bidcore.Rejected)
            and (widened := await self._widened(outcome, max_kobo)) is not False
        ):
            if widened is None or not self.available:
                return UNAVAILABLE
            now = self._clock.now_ms()
            outcome = self._decide_max(auction_id, user_id, max_kobo, now)
        if isinstance(outcome, bidcore.Rejected):
            rejected = await self._rejected(outcome, auction_id, key, floor=self._max_floor)
            if isinstance(rejected, BidAccepted):
                return _REUSED  # the ledger holds a bid under this id
            return rejected
        registry = self._recovered.registry
        row = DurableMax(
            id=new_bid_id(),
            auction_id=registry.auction_id(outcome.auction),
            user_id=registry.user_id(outcome.user),
            max_kobo=outcome.max_kobo,
            at_ms=now,
            client_bid_id=client_bid_id,
            leading=outcome.leading,
            price_kobo=outcome.price_kobo,
            bids=tuple(self._durable(placed, None) for placed in outcome.bids),
            prebid=registry.core.auction(outcome.auction).status == "scheduled",
        )
        written = self.writer.submit(row)
        if key is not None:
            self._accepted[key] = _Pending(row, written)  # _committed records it
        try:
            await written
        except LedgerUnavailable:
            if key is not None and isinstance(self._accepted.get(key), _Pending):
                del self._accepted[key]
            return UNCONFIRMED
        except asyncio.CancelledError:
            if key is not None and isinstance(self._accepted.get(key), _Pending):
                self._accepted[key] = _Pending(row, None)
            raise
        return MaxAccepted(row)

    def _standing_now(self, durable: DurableMax) -> DurableMax:
        """A maximum read back from the ledger (engine.recovery keeps no price: 0),
        with where it stands now: whether its bidder leads (on a scheduled auction:
        would lead), and the price (scheduled: the price the pre-bids would open at,
        RULES.md's resolution among them)."""
        state = self.held(durable.auction_id)
        if state is None:
            return durable
        user = self._recovered.registry.user_handle(durable.user_id)
        if state.status != "scheduled":
            leading = state.leader == user and not state.leader_is_platform
            price = state.current_price_kobo or state.start_price_kobo
        else:  # the highest pre-bid leads, the earlier among equals
            ranked = sorted(enumerate(state.prebids), key=lambda p: (-p[1][1], p[0]))
            maxes = [amount for _, (_, amount) in ranked]
            leading = bool(ranked) and ranked[0][1][0] == user
            price = state.start_price_kobo
            if len(maxes) > 1:
                price = max(price, min(maxes[0], maxes[1] + state.bid_increment_kobo))
        return msgspec.structs.replace(durable, leading=leading, price_kobo=price)

    def _max_floor(self, outcome: bidcore.Rejected) -> int:
        """The least maximum this bidder may set now (for the refusal's sentence)."""
        state = self.core.auction(outcome.auction)
        if state.status == "scheduled":
            own = dict(state.prebids).get(outcome.user)
            return state.start_price_kobo if own is None else own + 1
        own = state.leader_max_kobo if state.leader == outcome.user else None
        return state.min_next_bid_kobo if own is None else max(own + 1, state.min_next_bid_kobo)

    def _decide(
        self, auction_id: uuid.UUID, user_id: uuid.UUID, amount_kobo: int, platform: bool
    ) -> bidcore.Outcome:
        registry = self._recovered.registry
        return registry.core.place_bid(
            registry.auction_handle(auction_id),
            registry.user_handle(user_id),
            amount_kobo,
            self._clock.now_ms(),
            platform,
        )

    def _decide_max(
        self, auction_id: uuid.UUID, user_id: uuid.UUID, max_kobo: int, now_ms: int
    ) -> bidcore.MaxSet | bidcore.Rejected:
        registry = self._recovered.registry
        return registry.core.set_max(
            registry.auction_handle(auction_id), registry.user_handle(user_id), max_kobo, now_ms
        )

    async def _learned(self, outcome: bidcore.Rejected, user_id: uuid.UUID) -> bool:
        """A bidder the core has not heard of (made through another node since this
        one started) is read from the ledger once; True: now known, decide again."""
        registry = self._recovered.registry
        if outcome.code != "not_eligible" or registry.user_handle(user_id) != NO_HANDLE:
            return False
        return await self._read_user(user_id)

    async def _widened(self, outcome: bidcore.Rejected, amount_kobo: int) -> bool | None:
        """A bid or maximum the partition's allowance could not back (several
        nodes): the ledger is asked for more of the bidder's balance; True: it
        was granted, decide again; None: the ledger could not say (unavailable)
        (engine/allowances.py)."""
        escrow = self.escrow
        if escrow is None or outcome.code != "insufficient_buying_power":
            return False
        registry = self._recovered.registry
        deposit_bp = self.core.auction(outcome.auction).deposit_pct_bp
        return await escrow.widen(
            registry.auction_id(outcome.auction),
            registry.user_id(outcome.user),
            bidcore.deposit(amount_kobo, deposit_bp),
        )

    async def release_allowances(self, user_id: uuid.UUID) -> None:
        """Give back what this node's pools of the user do not expose (another
        node's grant or a withdrawal needs it)."""
        if self.escrow is not None:
            await self.escrow.release(user_id)

    async def release_everywhere(self, user_id: uuid.UUID) -> None:
        """Every node gives back what its pools of the user do not expose (a
        withdrawal is about to weigh the allowances left as committed)."""
        if self.escrow is None:
            return
        await self.escrow.release(user_id)
        if self._elsewhere is not None:
            await self._elsewhere.release_allowances(user_id)

    async def in_ledger(
        self, auction_id: uuid.UUID, user_id: uuid.UUID, client_bid_id: str
    ) -> DurableBid | None:
        """The bid the ledger holds under this idempotency key, if any (whoever
        decided it: a retry is answered as that bid even while no node decides
        its auction)."""
        async with self._pool.acquire() as conn:
            return await find_bid(conn, auction_id, user_id, client_bid_id)

    async def _rejected(
        self,
        outcome: bidcore.Rejected,
        auction_id: uuid.UUID,
        key: IdempotencyKey | None,
        *,
        floor: Callable[[bidcore.Rejected], int] | None = None,
    ) -> BidRejected | BidAccepted:
        """The refusal (`floor`: a maximum's least amount, else the next bid's), or
        the earlier bid the ledger holds under this key for an auction the core let go."""
        code: str = outcome.code
        if key is not None and code in _LOOK_IN_LEDGER:
            async with self._pool.acquire() as conn:
                earlier = await find_bid(conn, *key)
            if earlier is not None:
                return BidAccepted(earlier)
        if code == "unknown_auction" and not self.decides(auction_id):
            return NOT_HERE  # not remembered: another node decides it, or will
        if code == "unknown_auction":
            code = await self._refusal_off_core(auction_id)
        least = None
        if code == "below_minimum":
            least = (
                floor(outcome)
                if floor is not None
                else self.core.auction(outcome.auction).min_next_bid_kobo
            )
        result = rejection(code, least, maximum=floor is not None)
        if key is not None:
            self._rejections[key] = result
            if len(self._rejections) > REJECTIONS_REMEMBERED:
                self._rejections.popitem(last=False)
        return result

    async def _refusal_off_core(self, auction_id: uuid.UUID) -> str:
        """Why a bid on an auction the core does not hold is refused: it ended and
        left memory, it is not live yet (a draft), or there is no such auction."""
        code = self._off_core.get(auction_id)
        if code is None:
            status = await self._pool.fetchval(_AUCTION_STATUS, auction_id)
            code = refusal_for_status(status)
            self._remember_off_core(auction_id, code)
        return code

    def _remember_off_core(self, auction_id: uuid.UUID, code: str) -> None:
        # Safe to keep: an auction the core later takes (a draft approved) is
        # decided by the core, which is asked first.
        self._off_core[auction_id] = code
        if len(self._off_core) > STATUSES_REMEMBERED:
            self._off_core.popitem(last=False)

    def _durable(self, outcome: bidcore.Accepted, client_bid_id: str | None) -> DurableBid:
        registry = self._recovered.registry
        previous = outcome.previous_leader
        return DurableBid(
            id=new_bid_id(),
            # The registry's own ids (asyncpg's UUIDs, as the ledger returned them):
            # cheaper to hash, sort and encode than the caller's uuid.UUIDs.
            auction_id=registry.auction_id(outcome.auction),
            user_id=registry.user_id(outcome.user),
            amount_kobo=outcome.amount_kobo,
            at_ms=outcome.at_ms,
            is_platform=outcome.is_platform,
            client_bid_id=client_bid_id,
            seq=outcome.seq,
            end_time_ms=outcome.end_time_ms,
            extended=outcome.extended,
            min_next_bid_kobo=outcome.min_next_bid_kobo,
            bid_count=outcome.bid_count,
            bidder_count=outcome.bidder_count,
            bidder_number=outcome.bidder_number,
            previous_leader=registry.user_id(previous) if previous is not None else None,
            previous_amount_kobo=outcome.previous_amount_kobo,
            is_proxy=outcome.is_proxy,
            hash=outcome.hash,
        )

    def _committed(self, writes: Sequence[LedgerWrite]) -> None:
        """A batch is durable: record its outcomes for retries and tell the
        listeners, bids and state changes in the order they were decided."""
        accepted = self._accepted
        bids: list[DurableBid] = []
        maxes: list[DurableMax] = []
        for event in writes:
            if isinstance(event, DurableBid):
                bids.append(event)
                if event.client_bid_id is not None:  # settled: the record, not the future
                    accepted[(event.auction_id, event.user_id, event.client_bid_id)] = event
                continue
            if isinstance(event, DurableMax):
                if event.client_bid_id is not None:
                    accepted[(event.auction_id, event.user_id, event.client_bid_id)] = event
                # Before the listeners hear of its rows: what they tell the bidder
                # carries the maximum that placed them.
                self._recovered.maxes.setdefault(event.auction_id, {})[event.user_id] = (
                    event.max_kobo
                )
                bids.extend(event.bids)
                maxes.append(event)
                continue
            self._tell(bids)
            bids = []
            for state_listener in self._state_listeners:
                try:
                    state_listener(event)
                except Exception:
                    logger.exception("a listener failed on a state change")
            bids.extend(event.bids)
        self._tell(bids)
        for durable_max in maxes:
            for max_listener in self._max_listeners:
                try:
                    max_listener(durable_max)
                except Exception:
                    logger.exception("a listener failed on a committed maximum")

    def _tell(self, bids: list[DurableBid]) -> None:
        if not bids:
            return
        _ACCEPTED.inc(len(bids))  # once a batch: every bid in it is acknowledged now
        # A listener's failure must not stop acknowledgements: log it loudly.
        for listener in self._listeners:
            try:
                listener(bids)
            except Exception:
                logger.exception("a listener failed on a committed batch")

    # ---- what the core holds ------------------------------------------------

    def upsert_user(self, user_id: uuid.UUID, *, balance_kobo: int, eligible: bool) -> None:
        """Take a committed balance or eligibility into the core (and, several
        nodes, into every other node's: `settled` waits for that)."""
        self._recovered.registry.upsert_user(user_id, balance_kobo=balance_kobo, eligible=eligible)
        self._announce(user_id)

    def set_balance(self, user_id: uuid.UUID, balance_kobo: int) -> None:
        """Take a committed balance into the core (call under `engine.locks.user_lock`)."""
        registry = self._recovered.registry
        handle = registry.user_handle(user_id)
        if handle != NO_HANDLE:
            registry.core.set_balance(handle, balance_kobo)
        self._announce(user_id)

    def reach(self, elsewhere: Elsewhere) -> None:
        """The other nodes (several nodes; alone there are none)."""
        self._elsewhere = elsewhere
        if self.escrow is not None:
            self.escrow.reach(elsewhere)

    def _announce(self, user_id: uuid.UUID) -> None:
        elsewhere = self._elsewhere
        if elsewhere is None:
            return
        before = self._announcing.get(user_id)

        async def announce() -> None:
            if before is not None:  # in commit order: the later read is the newer row
                await asyncio.wait([before])
            await elsewhere.user_changed(user_id)

        task = asyncio.create_task(announce())
        self._announcing[user_id] = task
        task.add_done_callback(lambda done: self._announced(user_id, done))

    def _announced(self, user_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        if self._announcing.get(user_id) is task:
            del self._announcing[user_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.warning("user %s: other nodes not told of a change: %r", user_id, error)

    async def settled(self, user_id: uuid.UUID) -> None:
        """Wait until every node has taken the user's latest committed change."""
        task = self._announcing.get(user_id)
        if task is not None:
            await asyncio.wait([task])

    async def refresh_user(self, user_id: uuid.UUID) -> bool:
        """Read the user's committed balance and eligibility into the core (another
        node changed them); False: no such user."""
        async with user_lock(user_id):  # reads in order, so the last applied is the newest
            return await self._read_user(user_id)

    async def _read_user(self, user_id: uuid.UUID) -> bool:
        """The user's committed balance and eligibility from the ledger into the
        core (telling no other node: it is theirs already); False: no such user."""
        row = await self._pool.fetchrow(_USER, user_id)
        if row is None:
            return False
        self._recovered.registry.upsert_user(
            user_id,
            balance_kobo=naira_to_kobo(row["wallet_balance"]),
            eligible=may_bid(row["role"], row["kyc_status"], row["is_active"]),
        )
        return True

    async def load_auction(self, auction_id: uuid.UUID) -> bool:
        """Take a scheduled or live auction from the ledger into the core (False:
        none such). One whose partition another node holds is loaded by that node."""
        if not self.decides(auction_id):
            elsewhere = self._elsewhere
            return elsewhere is not None and await elsewhere.load_auction(auction_id)
        async with self._pool.acquire() as conn:
            return await self._load(conn, auction_id)

    async def load_here(self, auction_id: uuid.UUID) -> bool | None:
        """An owner asked by another node to load an auction: None if it is not
        this node's (its partition moved), else whether it was loaded."""
        if not self.decides(auction_id):
            return None
        async with self._pool.acquire() as conn:
            return await self._load(conn, auction_id)

    async def _load(self, conn: asyncpg.Connection, auction_id: uuid.UUID) -> bool:
        loaded = await load_auction(conn, self._recovered, auction_id, self._held)
        self._take_remembered()  # no await since the load: no retry goes by unknown
        if loaded and not self.decides(auction_id):  # its partition left while it loaded
            self._evict(auction_id)
            self._forget_answers({auction_id})
            return False
        return loaded

    # ---- state changes --------------------------------------------------------
    # Each is decided by the core first (so it is ordered with the bids around
    # it), then travels the ledger's queue and returns once durable. Misuse
    # raises the core's errors (bidcore.InvalidTransition, UnknownAuction, …).

    async def open_auction(self, auction_id: uuid.UUID) -> StateChange:
        """scheduled → live; its pre-bids resolve into bid rows written with it."""
        placed: list[DurableBid] = []

        def open_(handle: int) -> int:
            opened = self.core.open_auction(handle, self._clock.now_ms())
            placed.extend(self._durable(row, None) for row in opened.bids)
            return opened.seq

        return await self._change(auction_id, "live", open_, bids=placed)

    async def extend_auction(
        self, auction_id: uuid.UUID, end_time_ms: int, *, also: InTransaction | None = None
    ) -> StateChange:
        """Move the end later (an admin's extension)."""
        return await self._change(
            auction_id, "extended", lambda h: self.core.extend_auction(h, end_time_ms), also=also
        )

    async def cancel_auction(
        self, auction_id: uuid.UUID, reason: str, *, also: InTransaction | None = None
    ) -> StateChange:
        """scheduled/live → cancelled; the leader's exposure is released."""
        return await self._change(
            auction_id, "cancelled", self.core.cancel_auction, reason=reason, also=also
        )

    async def close_auction(
        self, auction_id: uuid.UUID, *, also: InTransaction | None = None
    ) -> tuple[StateChange, bidcore.Closed]:
        """live → ended, durable; end processing follows in its own transaction."""
        closed: list[bidcore.Closed] = []

        def close(handle: int) -> int:
            closed.append(self.core.close_auction(handle))
            return closed[0].seq

        change = await self._change(auction_id, "ended", close, also=also)
        return change, closed[0]

    def forget_auction(self, auction_id: uuid.UUID) -> None:
        """Let an ended or cancelled auction go from memory (retries of its bids
        are then answered from the ledger)."""
        registry = self._recovered.registry
        handle = registry.auction_handle(auction_id)
        ended = self.core.auction(handle).status != "cancelled"
        self.core.remove_auction(handle)
        registry.forget_auction(auction_id)
        self._recovered.maxes.pop(auction_id, None)
        self._recovered.decisions.pop(auction_id, None)
        self._recovered.broken.pop(auction_id, None)
        self._remember_off_core(auction_id, "auction_ended" if ended else "auction_not_live")
        for key in [key for key in self._accepted if key[0] == auction_id]:
            del self._accepted[key]

    # ---- the if-bid: a closed auction awaiting its seller's decision ------------------
    # The core holds it closed, its high bidder leading at what they are bound to, so
    # that they stay exposed deposit(that) until the decision (RULES.md, if-bid).

    def deciding(self, auction_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[None]:
        """Held by every step of an auction's if-bid on this node, from its first read
        of the ledger to the core's update (`sync_decision`), so the core ends with
        the ledger's last word."""
        return self._decision_locks.hold(auction_id)

    def decision_of(self, auction_id: uuid.UUID) -> tuple[uuid.UUID, int] | None:
        """(high bidder, what they are bound to) of an if-bid the core holds."""
        return self._recovered.decisions.get(auction_id)

    async def sync_decision(self, auction_id: uuid.UUID) -> None:
        """The core takes the ledger's view of the auction (call under `deciding`):
        while it awaits its seller's decision, closed with its high bidder leading
        at what they are bound to; otherwise it leaves the core, and with it that
        exposure. Only for auctions this node decides."""
        if not self.decides(auction_id):
            return
        async with self._pool.acquire() as conn:
            ledger = await read_decision(conn, auction_id)
        if not self.decides(auction_id):  # its partition left meanwhile
            return
        held = self._in_core(auction_id)
        if held is not None and held.status in ("scheduled", "live"):
            return  # open: bids, not a decision, are what it holds (nothing to follow)
        if held is not None:
            self._evict(auction_id)
            self._remember_off_core(auction_id, "auction_ended")
            for key in [key for key in self._accepted if key[0] == auction_id]:
                if not isinstance(self._accepted[key], _Pending):
                    del self._accepted[key]  # the ledger answers retries from now on
        if ledger is None:
            return
        restore_decision(self._recovered, ledger)
        pool = self._recovered.pool_of(auction_id)
        decision = self._recovered.decisions.get(auction_id)
        if pool is not None and decision is not None:  # covered below, the pool's whole exposure
            self._recovered.exposed.pop((decision[0], pool), None)
        await self._cover_decision(auction_id)

    def bind_decision(self, auction_id: uuid.UUID, amount_kobo: int) -> bool | None:
        """Bind the if-bid's bidder to `amount_kobo` in the core before the ledger
        (their counter, or their acceptance of the seller's): only if their buying
        power covers deposit(amount) beyond what this auction exposes already — a
        node alone: their balance less their other exposure; several: the
        partition's allowance less its other exposure. False: it does not (nothing
        changed); None: the core does not hold this if-bid."""
        decision = self._recovered.decisions.get(auction_id)
        if decision is None or not self.decides(auction_id):
            return None
        bidder, bound = decision
        if amount_kobo <= bound:
            return True
        registry, core = self._recovered.registry, self.core
        handle, user = registry.auction_handle(auction_id), registry.user_handle(bidder)
        state = core.auction(handle)
        here = core.exposed_here(handle, user)
        pool = self._recovered.pool_of(auction_id)
        if pool is not None:
            allowance, exposure = core.allowance(user, pool)
            room = allowance - exposure + here
        else:
            standing = core.user(user)
            room = standing.balance_kobo - standing.exposure_kobo + here
        if room < bidcore.deposit(amount_kobo, state.deposit_pct_bp):
            return False
        core.evict_auction(handle)
        registry.forget_auction(auction_id)
        restored = core.restore_auction(
            auction_id.int,
            start_time_ms=state.start_time_ms,
            end_time_ms=state.end_time_ms,
            original_end_ms=state.original_end_ms,
            start_price_kobo=state.start_price_kobo,
            bid_increment_kobo=state.bid_increment_kobo,
            reserve_price_kobo=state.reserve_price_kobo,
            deposit_pct_bp=state.deposit_pct_bp,
            anti_snipe_window_ms=state.anti_snipe_window_ms,
            anti_snipe_extension_ms=state.anti_snipe_extension_ms,
            sellers=state.sellers,
            live=True,
            ended=True,
            leader=user,
            leading_amount_kobo=amount_kobo,
            leader_is_platform=False,
            bidders=state.bidders,
            bid_count=state.bid_count,
            platform_bid_count=state.platform_bid_count,
            seq=state.seq,
            pool=pool,
        )
        registry.track_auction(auction_id, restored)
        self._recovered.decisions[auction_id] = (bidder, amount_kobo)
        return True

    async def widen_for_decision(self, auction_id: uuid.UUID, amount_kobo: int) -> bool | None:
        """Several nodes: grow the if-bid bidder's allowance in the auction's partition
        so it backs deposit(amount) (engine/allowances.py); True granted, False the
        balance cannot, None the ledger could not say. A node alone: False."""
        decision = self._recovered.decisions.get(auction_id)
        escrow = self.escrow
        if escrow is None or decision is None:
            return False
        state = self.core.auction(self._recovered.registry.auction_handle(auction_id))
        return await escrow.widen(
            auction_id, decision[0], bidcore.deposit(amount_kobo, state.deposit_pct_bp)
        )

    async def _cover_decision(self, auction_id: uuid.UUID) -> None:
        """Several nodes: an if-bid bidder whose exposure passed their partition's
        allowance (a reserve-protection bid had outbid them, so nothing backed them)
        gets an allowance for it from the free balance, if it has room."""
        escrow, pool = self.escrow, self._recovered.pool_of(auction_id)
        decision = self._recovered.decisions.get(auction_id)
        if escrow is None or pool is None or decision is None:
            return
        user = self._recovered.registry.user_handle(decision[0])
        allowance, exposure = self.core.allowance(user, pool)
        if exposure > allowance:
            await escrow.cover({(decision[0], pool): exposure})

    async def _change(
        self,
        auction_id: uuid.UUID,
        kind: str,
        apply: Callable[[int], int],
        *,
        reason: str | None = None,
        also: InTransaction | None = None,
        bids: list[DurableBid] | None = None,
    ) -> StateChange:
        if not self.available:
            raise LedgerUnavailable("the ledger is unavailable")
        change, written = self._change_now(auction_id, kind, apply, reason, also, bids)
        await written
        return change

    def _change_now(
        self,
        auction_id: uuid.UUID,
        kind: str,
        apply: Callable[[int], int],
        reason: str | None,
        also: InTransaction | None,
        bids: list[DurableBid] | None,
    ) -> tuple[StateChange, asyncio.Future[None]]:
        """Decide the change in the core now and queue it for the ledger (its
        future completes once it is written)."""
        handle = self._recovered.registry.auction_handle(auction_id)
        seq = apply(handle)  # fills `bids` when the change placed rows
        state = self.core.auction(handle)
        change = StateChange(
            auction_id,
            seq,
            kind,
            state.status,
            state.end_time_ms,
            reason,
            also,
            tuple(bids or ()),
        )
        return change, self.writer.submit(change)

    # ---- the outage rule ----------------------------------------------------------

    def _extend_in_core(self, handle: int, end_time_ms: int) -> int:
        seq: int = self.core.extend_auction(handle, end_time_ms)
        return seq

    def outage(self, since_ms: int, auction_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """RULES.md "Outages": bids for these auctions could not be taken from
        `since_ms` until now (their partition moving, the engine down). If that
        lasted more than OUTAGE_MIN_MS, each live one whose end fell inside it or
        less than its anti-sniping window after it ends at now + its extension
        instead: decided in the core at once (before anything could close it),
        written with an audit row (reason `outage`), the room told by its state
        event. Call it right after the auctions were loaded, with no await in
        between. The ids of the auctions extended."""
        now = self._clock.now_ms()
        if now - since_ms <= self._outage_min_ms:
            return []
        registry, extended = self._recovered.registry, []
        for auction_id in auction_ids:
            handle = registry.auction_handle(auction_id)
            if handle == NO_HANDLE:
                continue
            state = self.core.auction(handle)
            end = state.end_time_ms
            if state.status != "live" or not since_ms <= end < now + state.anti_snipe_window_ms:
                continue
            new_end = now + state.anti_snipe_extension_ms
            if new_end <= end:
                continue
            _, written = self._change_now(
                auction_id,
                "extended",
                functools.partial(self._extend_in_core, end_time_ms=new_end),
                "outage",
                _outage_audit(auction_id, end, new_end, since_ms, now),
                None,
            )
            written.add_done_callback(_logged_outage)
            extended.append(auction_id)
        if extended:
            logger.warning(
                "outage of %.1f s: %d auctions end later (RULES.md)",
                (now - since_ms) / 1000,
                len(extended),
            )
        return extended

    # ---- outages -----------------------------------------------------------

    def _lost_ledger(self) -> None:
        self._rebuilding = True
        logger.error("ledger unavailable: bids are refused until it is back and the core rebuilt")

    async def rebuild(self) -> None:
        """Replace the core with one rebuilt from the ledger (after an outage)."""
        self._rebuilding = True
        try:
            while True:
                try:
                    recovered = await recover(
                        self._pool,
                        shards=self._shards,
                        previous_epoch=self.writer.epoch,
                        held=self._held,
                    )
                    break
                except UNREACHABLE_OR_REFUSED as exc:
                    logger.warning("rebuild failed (%s); trying again", exc)
                    await asyncio.sleep(0.5)
            self._adopt(recovered)
            if self._held is not None:
                self._held = recovered.held  # less what another node took meanwhile
            self._took_allowances()
            self._recovered.exposed.clear()  # allotted before the outage: nothing new
            self.writer.epoch = recovered.epoch
            logger.info("core rebuilt from the ledger under epoch %d", recovered.epoch)
        finally:
            self._rebuilding = False

    def _resumed(self, since: float) -> None:
        """Bids are taken again after a failed batch (the ledger away, a batch
        fenced): the outage rule for every auction of the rebuilt core, refused
        since `since` (time.monotonic()). Called with no await since the writer
        took writes again, so nothing has closed an auction it extends."""
        since_ms = self._clock.now_ms() - round((time.monotonic() - since) * 1000)
        self.outage(since_ms, self.registry.auction_ids())

    def _take_remembered(self) -> None:
        """The idempotency keys of what recovery (or a later load) read from the
        ledger, so a retry of a bid acknowledged before a restart or a move is
        answered as that bid."""
        for key, row in self._recovered.accepted.items():
            self._accepted.setdefault(key, row)
        self._recovered.accepted.clear()

    def _adopt(self, recovered: Recovered) -> None:
        self._recovered = recovered
        self._accepted: dict[IdempotencyKey, DurableBid | DurableMax | _Pending] = {}
        self._take_remembered()
        self._rejections: collections.OrderedDict[IdempotencyKey, BidRejected] = (
            collections.OrderedDict()
        )
        self._off_core: collections.OrderedDict[uuid.UUID, str] = collections.OrderedDict()


def _outage_audit(
    auction_id: uuid.UUID, end_ms: int, new_end_ms: int, since_ms: int, resumed_ms: int
) -> InTransaction:
    """The audit row of an end moved by the outage rule, in the change's transaction
    (the platform's account acts; the old and new end, and the interruption)."""

    async def audit(conn: asyncpg.Connection) -> None:
        await write_audit(
            conn,
            PLATFORM_USER_ID,
            "extend",
            auction_id,
            old={"end_time_ms": end_ms},
            new={
                "end_time_ms": new_end_ms,
                "interrupted_from_ms": since_ms,
                "resumed_ms": resumed_ms,
            },
            reason="outage",
        )

    return audit


def _logged_outage(written: asyncio.Future[None]) -> None:
    if not written.cancelled() and (error := written.exception()) is not None:
        logger.error("an end moved by the outage rule was not written: %r", error)
