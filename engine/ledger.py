"""The write-behind ledger: accepted bids, committed in batches under row locks.

Bids are decided in memory by the core; this writer makes them durable. It
drains its queue in batches (bounded by size and a short window) and writes
each batch in one transaction: lock the touched `auctions` rows in id order
with SELECT … FOR UPDATE (checking the fencing epoch), insert the bids, update
each auction once, commit (a batch of bids alone is one statement, sql/0015's
ledger_write_bids; one with state changes is several, the bids by COPY). Only
then are the bids' awaitables completed and `on_commit` called, in order:
nothing is acknowledged before it is durable.

State changes (an auction going live, extended, cancelled, ended) and maximum
bids travel the same queue, so the ledger applies every event of an auction in
the core's order: a bid accepted just before a cancel is written before it. A
decision that placed several rows (a bid and the proxy answering it, a maximum
and the rows it placed, an opening and its pre-bids' rows) is written in one
transaction and acknowledged as one.

A batch that fails for a passing reason (connection lost, database
restarting) is retried with backoff. If the ledger stays unreachable past a
bound, or a batch is refused for good (a newer owner's epoch), the writer
gives up: every waiting bid fails with `LedgerUnavailable` (its outcome is
unknown to the bidder, who retries with the same client_bid_id), the writer
refuses new bids, and once the database answers again it calls `on_recovered`
(which rebuilds the core from the ledger) before taking bids again. For a node
alone, a batch fenced off by a newer owner's epoch stops the writer for good:
another process took every auction, and two owners must never take turns. For
a node of several (`stop_when_fenced=False`) it means a partition's lease moved
on: the writer gives up as above and the rebuild claims only the partitions
whose leases are still the node's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from engine import metrics
from engine.bids import DurableBid, DurableMax
from engine.clock import to_datetime
from engine.errors import UNREACHABLE, Fenced, LedgerConflict, LedgerUnavailable
from engine.money import kobo_to_naira
from engine.state_changes import StateChange

logger = logging.getLogger(__name__)

BID_COLUMNS = (
    "id",
    "auction_id",
    "user_id",
    "amount",
    "is_platform_bid",
    "is_winning",
    "client_bid_id",
    "seq",
    "extended",
    "end_time_after",
    "created_at",
    "is_proxy",
    "epoch",
    "hash",
)

_LOCK_AUCTIONS = """
SELECT id, epoch, status FROM auctions WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""
_OPEN_STATUSES = frozenset({"scheduled", "live"})
_ALREADY_WRITTEN = "SELECT count(*) FROM bids WHERE id = ANY($1::uuid[])"
_MAXES_WRITTEN = "SELECT count(*) FROM max_bids WHERE id = ANY($1::uuid[])"
_INSERT_MAXES = """
INSERT INTO max_bids (id, auction_id, user_id, max_amount, client_bid_id, created_at)
SELECT id, auction_id, user_id, max_kobo * 0.01, client_bid_id,
       timestamptz 'epoch' + at_ms * interval '1 ms'
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::bigint[])
     AS m(id, auction_id, user_id, max_kobo, client_bid_id, at_ms)
"""
_LAST_SEQ = "SELECT last_seq FROM auctions WHERE id = $1"
_BATCHES_DONE = "SELECT batches FROM ledger_progress WHERE epoch = $1"
_CLEAR_LEADERS = "SELECT ledger_clear_leaders($1::uuid[])"  # sql/0014
# One row per touched auction: NULL leaves a column as it is (no bid in the
# batch leaves the price alone; no state change leaves the status alone). Kobo
# and milliseconds are converted exactly as in sql/0014.
_UPDATE_AUCTIONS = """
UPDATE auctions AS a
SET current_price = COALESCE(v.price_kobo * 0.01, a.current_price),
    bid_count = COALESCE(v.bid_count, a.bid_count),
    bidder_count = COALESCE(v.bidder_count, a.bidder_count),
    ai_bids_placed = a.ai_bids_placed + v.platform_bids,
    end_time = timestamptz 'epoch' + v.end_ms * interval '1 ms',
    status = COALESCE(v.status, a.status),
    ended_at = CASE WHEN v.status = 'ended' THEN now() ELSE a.ended_at END,
    cancel_reason = COALESCE(v.cancel_reason, a.cancel_reason),
    last_seq = GREATEST(a.last_seq, v.seq),
    updated_at = now()
FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::int[], $5::int[], $6::bigint[],
            $7::bigint[], $8::text[], $9::text[])
     AS v(id, price_kobo, bid_count, bidder_count, platform_bids, end_ms, seq, status,
          cancel_reason)
WHERE a.id = v.id
"""

_WRITE_BIDS = """
SELECT ledger_write_bids($1::bigint, $2::bigint, $3::ledger_auction[], $4::ledger_bid[])
"""

# Failures worth another try: the connection or the server went away, or the
# transaction lost a race it can win next time.
_TRANSIENT: tuple[type[BaseException], ...] = (
    *UNREACHABLE,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


#: Bids per batch at most. Under load a bigger batch spreads the per-auction work
#: (locks, the auctions' UPDATE, is_winning) over more bids: bench ledger, 200
#: auctions, 1,000 submitters: 17,122/s with 500, 19,237/s with 1,000.
DEFAULT_BATCH_MAX = 1000


#: Batches of bids in flight at once: one committing, the next waiting behind it
#: in PostgreSQL (sql/0012 applies them in order).
PIPELINE_DEPTH = 2
#: A queue of at least twice this many bids, with nothing in flight, goes out as
#: two batches (LedgerWriter._take_bids).
_SPLIT_FROM = 64

_FENCED_STATE = "DLF01"  # sql/0012: an auction belongs to a newer epoch
_CONFLICT_STATE = "DLC01"  # sql/0012: the ledger contradicts the core


class _OutOfOrder(Exception):
    """The batch ahead of this one is not in the ledger (yet): nothing was written;
    tried again once that one is."""


_RETRYABLE: tuple[type[BaseException], ...] = (*_TRANSIENT, _OutOfOrder)

#: What the ledger writes, in the core's order: an accepted bid, a state change (with
#: the rows it placed), or a maximum (with the rows it placed).
LedgerWrite = DurableBid | StateChange | DurableMax
Entry = tuple[LedgerWrite, "asyncio.Future[None]"]


@dataclass(slots=True)
class _Batch:
    entries: list[Entry]
    #: A batch of bids alone: its number in the epoch's order (sql/0012); a batch
    #: with state changes: None (written by several statements, never pipelined).
    number: int | None
    started: float = field(default_factory=time.monotonic)

    @property
    def events(self) -> list[LedgerWrite]:
        return [event for event, _ in self.entries]


class LedgerWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        epoch: int,
        batch_max: int = DEFAULT_BATCH_MAX,
        window_ms: float = 2,
        unavailable_after_ms: int = 3000,
        attempt_timeout_s: float = 5.0,
        on_commit: Callable[[Sequence[LedgerWrite]], None] | None = None,
        on_unavailable: Callable[[], None] | None = None,
        on_recovered: Callable[[], Awaitable[None]] | None = None,
        on_resumed: Callable[[float], None] | None = None,
        stop_when_fenced: bool = True,
    ) -> None:
        self._pool = pool
        self._stop_when_fenced = stop_when_fenced
        self._batches = 0
        self.epoch = epoch
        self._batch_max = batch_max
        self._window_s = window_ms / 1000
        self._unavailable_after_s = unavailable_after_ms / 1000
        self._attempt_timeout_s = attempt_timeout_s
        self._on_commit = on_commit
        self._on_unavailable = on_unavailable
        self._on_recovered = on_recovered
        self._on_resumed = on_resumed
        self._queue: collections.deque[Entry] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._available = True
        self._stalled = False
        self.fenced = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._releasing: set[asyncio.Task[None]] = set()  # connections going back to the pool
        self._last: asyncio.Future[None] | None = None  # the entry submitted last
        metrics.LEDGER_AVAILABLE.set(1)

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        """Every writer session (a start, a rebuild) has an epoch of its own, whose
        batches of bids are numbered from 1."""
        self._epoch = epoch
        self._batches = 0

    @property
    def available(self) -> bool:
        return self._available

    @property
    def stalled(self) -> bool:
        """A batch failed and waits for its retry: what it holds may never be written."""
        return self._stalled

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger-writer")
            self._task.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """The writer only ends when stopped; if it ever dies, refuse bids loudly."""
        if task.cancelled() or self._task is None:
            return
        logger.critical("the ledger writer stopped: %r", task.exception())
        self._refuse(self._drain())

    def _drain(self) -> list[Entry]:
        batch = list(self._queue)
        self._queue.clear()
        return batch

    async def stop(self) -> None:
        """Write what is queued (while the ledger takes it), then stop."""
        with contextlib.suppress(LedgerUnavailable):
            await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_queued()
        await asyncio.gather(*self._releasing, return_exceptions=True)

    async def flush(self) -> None:
        """Wait until every bid submitted so far is durable (or has failed)."""
        if not self._available and self._queue:
            raise LedgerUnavailable("the ledger is unavailable")
        await self._idle.wait()

    async def written(self) -> None:
        """Wait until every entry submitted so far is durable or has failed (what
        comes later is not waited for; entries complete in the order submitted)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])

    def submit(self, bid: LedgerWrite) -> asyncio.Future[None]:
        """Queue an accepted bid or a state change; the future completes once it
        is committed."""
        loop = self._loop
        if loop is None:  # looked up once: asyncio asks the OS for its pid on every lookup
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._available:
            future.set_exception(LedgerUnavailable("the ledger is unavailable"))
            return future
        self._queue.append((bid, future))
        self._last = future
        self._idle.clear()
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await self._gather()
            if self._queue and isinstance(self._queue[0][0], DurableBid):
                await self._pipeline()
            elif self._queue:
                entries = [
                    self._queue.popleft() for _ in range(min(self._batch_max, len(self._queue)))
                ]
                self._take_answers(entries)
                await self._write_or_give_up(_Batch(entries, None), retried=False)
            if not self._queue:
                self._wake.clear()
                self._idle.set()

    async def _gather(self) -> None:
        if self._window_s and len(self._queue) < self._batch_max:
            await asyncio.sleep(self._window_s)  # let a batch gather
        metrics.LEDGER_QUEUE.set(len(self._queue))  # once a batch, not once a bid

    def _bids_ready(self) -> bool:
        return self._available and bool(self._queue) and isinstance(self._queue[0][0], DurableBid)

    def _take_bids(self, *, first: bool = False) -> _Batch:
        """The queue's leading bids (up to the cap), numbered next in this epoch.

        `first`: nothing is in flight. Then a long queue is split in two halves, so
        that the second goes out at once behind the first and PostgreSQL works on
        one while this loop answers the other's bidders (bench/README.md, "ledger",
        has the measurement)."""
        limit = self._batch_max
        if first and len(self._queue) >= 2 * _SPLIT_FROM:
            limit = min(limit, (len(self._queue) + 1) // 2)
        entries: list[Entry] = []
        while self._queue and len(entries) < limit and isinstance(self._queue[0][0], DurableBid):
            entries.append(self._queue.popleft())
        self._take_answers(entries)
        self._batches += 1
        return _Batch(entries, self._batches)

    def _take_answers(self, entries: list[Entry]) -> None:
        """A bid and the proxy answer placed right after it are written together:
        the cap never falls between them."""
        while entries and self._queue and _answers(self._queue[0][0], entries[-1][0]):
            entries.append(self._queue.popleft())

    async def _pipeline(self) -> None:
        """Batches of bids, the next sent while the one ahead of it commits (at most
        PIPELINE_DEPTH in flight, each on a connection of its own), so PostgreSQL
        goes from one to the next without waiting for this event loop; the database
        applies them strictly in order (sql/0012) and they are acknowledged in order.
        Returns when none is in flight and the queue holds no bid at its head."""
        inflight: collections.deque[tuple[_Batch, asyncio.Task[str]]] = collections.deque()
        try:
            while True:
                if len(inflight) < PIPELINE_DEPTH and self._bids_ready():
                    if inflight:
                        await self._gather()
                    if self._bids_ready() and not (inflight and inflight[-1][0].number == 1):
                        batch = self._take_bids(first=not inflight)
                        inflight.append((batch, asyncio.create_task(self._attempt(batch))))
                        continue
                if not inflight:
                    return
                batch, task = inflight[0]
                try:
                    await task
                except Exception:
                    behind = list(inflight)
                    inflight.clear()
                    await self._settle_after_failure(behind)
                    return
                inflight.popleft()
                # The next batch goes out before this one's bidders are told: its
                # task then runs ahead of the thousand coroutines the acknowledgements
                # wake (the loop is first in, first out), and PostgreSQL works on it
                # while they decide the bids after it. It is encoded and on the wire
                # before the acknowledgements too (the yield): PostgreSQL, not this
                # loop, is the slower side when batches touch many auctions.
                try:
                    if self._bids_ready() and not (inflight and inflight[-1][0].number == 1):
                        upcoming = self._take_bids()
                        inflight.append((upcoming, asyncio.create_task(self._attempt(upcoming))))
                        await asyncio.sleep(0)
                finally:  # whatever happens, a committed batch is acknowledged
                    self._committed(batch)
        finally:
            for batch, task in inflight:  # cancelled (a stop): their outcome is unknown
                task.cancel()
                self._fail(batch.entries)

    async def _attempt(self, batch: _Batch, *, retried: bool = False) -> str:
        async with asyncio.timeout(self._attempt_timeout_s):
            return await self._write(batch, retried=retried)

    async def _settle_after_failure(self, batches: list[tuple[_Batch, asyncio.Task[str]]]) -> None:
        """The oldest batch in flight failed: let the others finish, acknowledge what
        the ledger holds (a later batch that landed proves every earlier one did),
        then retry the rest one at a time, in order."""
        self._stalled = True
        try:
            results = await asyncio.gather(*(task for _, task in batches), return_exceptions=True)
            landed = max(
                (i for i, result in enumerate(results) if not isinstance(result, BaseException)),
                default=-1,
            )
            for batch, _ in batches[: landed + 1]:
                self._committed(batch)
            rest = [batch for batch, _ in batches[landed + 1 :]]
            for index, batch in enumerate(rest):
                if not await self._write_or_give_up(batch, retried=True, behind=rest[index + 1 :]):
                    return
        finally:
            self._stalled = False

    async def _write_or_give_up(
        self, batch: _Batch, *, retried: bool, behind: Sequence[_Batch] = ()
    ) -> bool:
        """Write one batch, retrying passing failures; False if it was given up (with
        every batch `behind` it, which rests on it)."""
        attempt = 0
        refused = batch.entries + [entry for later in behind for entry in later.entries]
        self._stalled = retried  # a batch being retried: decide nothing on top of it
        try:
            while True:
                try:
                    await self._attempt(batch, retried=retried or attempt > 0)
                    break
                except _RETRYABLE as exc:
                    attempt += 1
                    self._stalled = True
                    metrics.LEDGER_RETRIES.inc()
                    waited = time.monotonic() - batch.started
                    if waited >= self._unavailable_after_s:
                        logger.error(
                            "ledger unreachable for %.1fs (%s): refusing bids", waited, exc
                        )
                        await self._give_up(refused, since=batch.started)
                        return False
                    logger.warning("ledger batch failed (%s); retry %d", exc, attempt)
                    await asyncio.sleep(min(0.01 * 2**attempt, 0.5))
                except LedgerConflict as exc:
                    logger.error("ledger batch refused: %s", exc)
                    await self._give_up(refused)
                    return False
                except Fenced as exc:
                    if self._stop_when_fenced:
                        logger.critical("this node lost its auctions to a newer owner: %s", exc)
                        self._stop_for_good(refused)
                    else:
                        metrics.LEDGER_FENCED.inc()
                        logger.error("a batch was fenced off (%s): rebuilding without it", exc)
                        await self._give_up(refused)
                    return False
                except Exception:
                    # Anything else (a constraint the core should have made impossible,
                    # an unknown server error) must not stop the writer silently with
                    # bids waiting forever: refuse them, rebuild from the ledger.
                    logger.exception("ledger batch failed unexpectedly")
                    await self._give_up(refused)
                    return False
        finally:
            self._stalled = False
        self._committed(batch)
        return True

    def _committed(self, batch: _Batch) -> None:
        metrics.LEDGER_FLUSH.observe(time.monotonic() - batch.started)
        metrics.LEDGER_BATCH_SIZE.observe(len(batch.entries))
        if self._on_commit is not None:
            self._on_commit(batch.events)
        for _, future in batch.entries:
            if not future.done():
                future.set_result(None)

    async def _write(self, batch: _Batch, *, retried: bool) -> str:
        if batch.number is not None:  # bids alone (_take_bids)
            bids = cast(list[DurableBid], batch.events)
            return await self._write_bids(bids, batch.number)
        await self._write_events(batch.events, retry=retried)
        return "ok"

    async def _write_bids(self, bids: Sequence[DurableBid], number: int) -> str:
        """A batch of bids alone: one statement, one round trip (sql/0012)."""
        conn = await self._pool.acquire()
        try:
            leaders = _last_per_auction(bids)
            answer: str = await conn.fetchval(
                _WRITE_BIDS,
                self.epoch,
                number,
                _auction_rows(bids, leaders),
                _bid_rows(bids, leaders),
            )
        except asyncpg.PostgresError as err:
            if err.sqlstate == _FENCED_STATE:
                raise Fenced(str(err)) from err
            if err.sqlstate == _CONFLICT_STATE:
                raise LedgerConflict(str(err)) from err
            raise
        finally:
            self._release_later(conn)
        if answer.startswith("out of order"):
            raise _OutOfOrder(answer)
        return answer

    def _release_later(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        """Give a connection back to the pool without waiting: the pool resets it
        first, a round trip the batch's bidders need not wait for."""
        release = asyncio.create_task(self._pool.release(conn))
        self._releasing.add(release)
        release.add_done_callback(self._released)

    def _released(self, release: asyncio.Task[None]) -> None:
        self._releasing.discard(release)
        if not release.cancelled() and (error := release.exception()) is not None:
            # The pool has dropped the connection (a lost server, say); nothing waits on it.
            logger.warning("a ledger connection could not be reset for reuse: %r", error)

    async def _write_events(self, writes: Sequence[LedgerWrite], *, retry: bool) -> None:
        """Bids, state changes (which carry statements of their own) and maximums:
        one transaction of several statements."""
        events = flatten(writes)
        auction_ids = sorted({event.auction_id for event in events})
        bids = [event for event in events if isinstance(event, DurableBid)]
        changes = [event for event in events if isinstance(event, StateChange)]
        maxes = [event for event in events if isinstance(event, DurableMax)]
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock(conn, auction_ids)
            if retry and await self._written_before(conn, bids, changes, maxes):
                return
            if maxes:
                await conn.execute(_INSERT_MAXES, *_max_columns(maxes))
            if bids:
                # Only auctions with a bid in this batch have a new leader; one
                # that is merely opened, extended or closed keeps its own.
                await conn.execute(_CLEAR_LEADERS, sorted({bid.auction_id for bid in bids}))
                await conn.copy_records_to_table(
                    "bids", records=copy_rows(bids, self.epoch), columns=BID_COLUMNS
                )
            await conn.execute(_UPDATE_AUCTIONS, *_auction_columns(events))
            for change in changes:
                if change.also is not None:
                    await change.also(conn)

    async def _lock(self, conn: asyncpg.Connection, auction_ids: list[uuid.UUID]) -> None:
        rows = await conn.fetch(_LOCK_AUCTIONS, auction_ids)
        if len(rows) != len(auction_ids):
            raise LedgerConflict("a bid names an auction the ledger does not hold")
        for row in rows:
            if row["epoch"] != self.epoch:
                raise Fenced(
                    f"auction {row['id']} belongs to epoch {row['epoch']}, not {self.epoch}"
                )
            if row["status"] not in _OPEN_STATUSES:
                raise LedgerConflict(f"auction {row['id']} is {row['status']} in the ledger")

    @staticmethod
    async def _written_before(
        conn: asyncpg.Connection,
        bids: Sequence[DurableBid],
        changes: Sequence[StateChange],
        maxes: Sequence[DurableMax],
    ) -> bool:
        """After a lost connection the last COMMIT may have landed: never write twice.

        Bids are found by id, then maximums by id; a batch of state changes alone
        by its last seq.
        """
        if not bids and maxes:
            written = await conn.fetchval(_MAXES_WRITTEN, [row.id for row in maxes])
            if written and written != len(maxes):
                raise LedgerConflict(f"{written} of {len(maxes)} maximums are already written")
            return bool(written)
        if not bids:
            last = changes[-1]
            seq = await conn.fetchval(_LAST_SEQ, last.auction_id)
            return bool(seq is not None and seq >= last.seq)
        written = await conn.fetchval(_ALREADY_WRITTEN, [bid.id for bid in bids])
        if written == len(bids):
            return True
        if written:
            raise LedgerConflict(f"{written} of {len(bids)} bids of one batch are already written")
        return False

    async def _give_up(self, batch: list[Entry], since: float | None = None) -> None:
        """Refuse `batch` and every bid until the ledger answers and the core is
        rebuilt; `since`: when bids stopped being taken (default: now), told to
        `on_resumed` the moment they are taken again."""
        since = since if since is not None else time.monotonic()
        self._refuse(batch)
        self._stalled = False
        while True:
            # Whatever the wait or the rebuild raises, the writer must live on:
            # a dead writer would refuse every bid until the process restarts.
            try:
                await self._await_database()
                if self._on_recovered is not None:
                    await self._on_recovered()  # a new epoch: batches numbered from 1
                await self._resume_numbering()
                break
            except Exception:
                logger.exception("ledger recovery failed; trying again in 1s")
                await asyncio.sleep(1.0)
        self._available = True
        metrics.LEDGER_AVAILABLE.set(1)
        logger.info("ledger available again")
        if self._on_resumed is not None:
            try:  # before anything else runs: writes it queues go first
                self._on_resumed(since)
            except Exception:
                logger.exception("a listener failed on the ledger's return")

    def _stop_for_good(self, batch: list[Entry]) -> None:
        """Fenced: refuse every bid from now on; a restart takes ownership again."""
        self.fenced = True
        self._refuse(batch)

    def _refuse(self, batch: list[Entry]) -> None:
        self._available = False
        metrics.LEDGER_AVAILABLE.set(0)
        self._fail(batch)
        self._fail_queued()
        self._idle.set()  # nothing waits on the writer now: a flush or stop returns
        if self._on_unavailable is not None:
            self._on_unavailable()

    @staticmethod
    def _fail(entries: list[Entry]) -> None:
        for _, future in entries:
            if not future.done():
                future.set_exception(LedgerUnavailable("the ledger did not take this bid"))

    def _fail_queued(self) -> None:
        self._fail(self._drain())
        metrics.LEDGER_QUEUE.set(0)

    async def _resume_numbering(self) -> None:
        """Number the next batch of bids after the last the ledger holds in this
        epoch (batches given up were never written)."""
        async with asyncio.timeout(self._attempt_timeout_s), self._pool.acquire() as conn:
            done = await conn.fetchval(_BATCHES_DONE, self.epoch)
        self._batches = done or 0

    async def _await_database(self) -> None:
        delay = 0.1
        while True:
            try:
                async with asyncio.timeout(self._attempt_timeout_s), self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
                return
            except _TRANSIENT:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


def _bid_rows(
    bids: Sequence[DurableBid], leaders: dict[uuid.UUID, DurableBid]
) -> list[tuple[Any, ...]]:
    """The bids' rows (BID_COLUMNS but the epoch, which ledger_write_bids adds:
    sql/0014's ledger_bid, with sql/0019's is_proxy and sql/0030's hash), each
    auction's leader
    (`_last_per_auction`) marked winning; amounts in kobo and instants in ms.

    The leaders are spread evenly among the other rows. Each is updated once, when
    outbid (its `is_winning` cleared), and that update stays on its page, with no
    new index entries (a heap-only update), only if the page has room for the new
    version: sql/0014 keeps part of each page free, enough while at most a share of
    a page's rows are leaders. In core order the leaders come last (each auction's
    last bid), filling whole pages, and many clears then wrote four index entries
    each; spread, none does (bench/README.md, "ledger")."""
    winners = {bid.id for bid in leaders.values()}
    outbid: list[tuple[Any, ...]] = []
    leading: list[tuple[Any, ...]] = []
    for bid in bids:
        winning = bid.id in winners
        (leading if winning else outbid).append(
            (
                bid.id,
                bid.auction_id,
                bid.user_id,
                bid.amount_kobo,
                bid.is_platform,
                winning,
                bid.client_bid_id,
                bid.seq,
                bid.extended,
                bid.end_time_ms,
                bid.at_ms,
                bid.is_proxy,
                bid.hash,
            )
        )
    return _spread(leading, among=outbid)


def _spread(rows: list[Any], *, among: list[Any]) -> list[Any]:
    """`rows` spread evenly among `among` (each list keeps its order)."""
    spread: list[Any] = []
    others = iter(among)
    for index, row in enumerate(rows):
        # row `index` sits in the middle of its share of `among`
        before = (2 * index + 1) * len(among) // (2 * len(rows))
        spread.extend(itertools.islice(others, before - (len(spread) - index)))
        spread.append(row)
    spread.extend(others)
    return spread


def copy_rows(bids: Sequence[DurableBid], epoch: int) -> list[tuple[Any, ...]]:
    """The bids' rows, for COPY (BID_COLUMNS): naira and datetimes, the columns'
    own types, and the epoch they are written under."""
    return [
        (
            *row[:3],
            kobo_to_naira(row[3]),
            *row[4:9],
            to_datetime(row[9]),
            to_datetime(row[10]),
            row[11],
            epoch,
            row[12],
        )
        for row in _bid_rows(bids, _last_per_auction(bids))
    ]


def _auction_rows(
    bids: Sequence[DurableBid], leaders: dict[uuid.UUID, DurableBid]
) -> list[tuple[Any, ...]]:
    """Each touched auction's state after a batch of bids alone (its leader from
    `_last_per_auction`), in id order (the order sql/0014 locks them in): sql/0014's
    ledger_auction."""
    platform_bids: collections.Counter[uuid.UUID] = collections.Counter(
        bid.auction_id for bid in bids if bid.is_platform
    )
    return [
        (
            auction,
            (last := leaders[auction]).amount_kobo,
            last.bid_count,
            last.bidder_count,
            platform_bids[auction],
            last.end_time_ms,
            last.seq,
        )
        for auction in sorted(leaders)
    ]


def _last_per_auction(bids: Sequence[DurableBid]) -> dict[uuid.UUID, DurableBid]:
    """Each auction's leading bid after the batch: its last (highest) one."""
    return {bid.auction_id: bid for bid in bids}


def flatten(writes: Sequence[LedgerWrite]) -> list[LedgerWrite]:
    """The writes in the core's order, each unit followed by the rows it placed."""
    events: list[LedgerWrite] = []
    for write in writes:
        if isinstance(write, DurableBid) or not write.bids:
            events.append(write)
        else:
            events.append(write)
            events.extend(write.bids)
    return events


def _answers(bid: LedgerWrite, trigger: LedgerWrite) -> bool:
    """`bid` is the proxy answer placed right after `trigger`, in the same decision."""
    return (
        isinstance(bid, DurableBid)
        and bid.is_proxy
        and isinstance(trigger, DurableBid)
        and bid.auction_id == trigger.auction_id
        and bid.seq == trigger.seq + 1
    )


def _max_columns(maxes: Sequence[DurableMax]) -> tuple[list[Any], ...]:
    return (
        [row.id for row in maxes],
        [row.auction_id for row in maxes],
        [row.user_id for row in maxes],
        [row.max_kobo for row in maxes],
        [row.client_bid_id for row in maxes],
        [row.at_ms for row in maxes],
    )


def _auction_columns(events: Sequence[LedgerWrite]) -> tuple[list[Any], ...]:
    """Each touched auction's state after the batch, for one UPDATE (a maximum
    alone changes no auction's row)."""
    last_event: dict[uuid.UUID, DurableBid | StateChange] = {}
    last_bid: dict[uuid.UUID, DurableBid] = {}
    last_change: dict[uuid.UUID, StateChange] = {}
    platform_bids: collections.Counter[uuid.UUID] = collections.Counter()
    for event in events:
        if isinstance(event, DurableMax):
            continue
        last_event[event.auction_id] = event
        if isinstance(event, DurableBid):
            last_bid[event.auction_id] = event
            platform_bids[event.auction_id] += event.is_platform
        else:
            last_change[event.auction_id] = event
    ids = list(last_event)
    bids = [last_bid.get(auction) for auction in ids]
    changes = [last_change.get(auction) for auction in ids]
    return (
        ids,
        [b.amount_kobo if b else None for b in bids],
        [b.bid_count if b else None for b in bids],
        [b.bidder_count if b else None for b in bids],
        [platform_bids[auction] for auction in ids],
        [last_event[auction].end_time_ms for auction in ids],
        [last_event[auction].seq for auction in ids],
        [c.status if c else None for c in changes],
        [c.reason if c and c.kind == "cancelled" else None for c in changes],
    )
