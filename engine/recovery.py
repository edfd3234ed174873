"""Rebuild the core from the ledger, and prove the rebuild equals the ledger.

On every start (and after an outage) the engine takes a new fencing epoch,
stamps it on the auctions it will own, then loads every user and every
scheduled, live or ended auction with its bids into a fresh `bidcore.Core`
(ended: closed, its end processing still to do — its leader stays exposed
until that has taken the deposit), and every auction awaiting its seller's
decision (the if-bid: closed in the core, its high bidder leading at what
they are bound to, so exposed until the decision). It then
compares the core with what the ledger says (price, leader, counts, seq,
every bidder's exposure) and refuses to serve if anything differs.

Each auction's bid log is checked too: every bid's hash is recomputed from its
row (engine/bidlog.py) and compared with the hash stored when it was decided. An
auction whose chain breaks (a row changed by hand, one removed) is loaded as the
ledger has it but suspended (`Recovered.broken`): no bid, maximum, opening or
close is taken for it until the rows are put right and the engine rebuilds; the
error log names the auction and the first bid (seq) that breaks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

import bidcore
from engine import bidlog
from engine.allowances import into_core, of_partitions
from engine.bids import DurableBid, DurableMax
from engine.clock import to_ms
from engine.errors import RecoveryMismatch
from engine.money import deposit_bp, effective_reserve_kobo, naira_to_kobo
from engine.partitions import partition_of
from engine.registry import NO_HANDLE, Registry
from engine.roles import PLATFORM_USER_ID, may_bid

logger = logging.getLogger(__name__)

IdempotencyKey = tuple[uuid.UUID, uuid.UUID, str]

# A restart takes every open auction; a rebuild after an outage ($2 = the
# node's epoch so far) takes back only what no newer owner has taken.
_CLAIM = """
UPDATE auctions SET epoch = $1
WHERE status IN ('scheduled', 'live', 'ended', 'seller_decision')
  AND ($2::bigint IS NULL OR epoch <= $2)
"""
# A node holding leases claims its partitions' open auctions, and only those: the
# leases, not the epochs' order, say what is whose (engine/leases.py). The claim
# first locks the lease rows it relies on (FOR SHARE, in the same transaction):
# those still this node's and unexpired; a take by another node waits for the
# claim's commit, then its own claim stamps its epoch over this one.
_LEASED = """
SELECT id FROM partition_leases
WHERE id = ANY($1::int[]) AND owner = $2 AND lease_until > now()
ORDER BY id FOR SHARE
"""
_CLAIM_PARTITIONS = """
UPDATE auctions SET epoch = $1
WHERE status IN ('scheduled', 'live', 'ended', 'seller_decision')
  AND auction_partition(id, $2) = ANY($3::int[])
"""
_USERS = "SELECT id, wallet_balance, role, kyc_status, is_active FROM users"
_AUCTION_COLUMNS = """
SELECT a.id, a.status, a.auction_type, a.created_by, v.listed_by, v.owner_id,
       a.start_time, a.end_time, a.original_end, a.start_price, a.reserve_price,
       a.current_price, a.bid_increment, a.deposit_pct, a.anti_snipe_window_ms,
       a.anti_snipe_extension_ms, a.bid_count, a.bidder_count, a.ai_bids_placed, a.last_seq,
       d.bidder_id AS decision_bidder, d.bidder_amount AS decision_amount
FROM auctions a JOIN vehicles v ON v.id = a.vehicle_id
LEFT JOIN if_bids d ON d.auction_id = a.id AND d.state = 'open'
"""
_AUCTIONS = (
    _AUCTION_COLUMNS
    + "WHERE a.status IN ('scheduled', 'live', 'ended', 'seller_decision') AND a.epoch = $1"
    + " ORDER BY a.start_time, a.id"
)
_ONE_AUCTION = _AUCTION_COLUMNS + "WHERE a.id = $1 AND a.status IN ('scheduled', 'live')"
_PARTITION_AUCTIONS = (
    _AUCTION_COLUMNS
    + "WHERE a.status IN ('scheduled', 'live', 'ended', 'seller_decision') AND a.epoch = $1"
    + " AND auction_partition(a.id, $2) = ANY($3::int[])"
    + " ORDER BY a.start_time, a.id"
)
_ONE_DECISION = _AUCTION_COLUMNS + "WHERE a.id = $1 AND a.status = 'seller_decision'"
_CLAIM_ONE = "UPDATE auctions SET epoch = $1 WHERE id = $2 AND status IN ('scheduled', 'live')"
_BIDS = """
SELECT id, auction_id, user_id, amount, is_platform_bid, client_bid_id, seq, extended,
       end_time_after, created_at, is_proxy, hash
FROM bids WHERE auction_id = ANY($1::uuid[])
ORDER BY auction_id, seq
"""
_ONE_BID = """
SELECT b.id, b.auction_id, b.user_id, b.amount, b.is_platform_bid, b.client_bid_id, b.seq,
       b.extended, b.end_time_after, b.created_at, b.is_proxy, b.hash, a.bid_increment
FROM bids b JOIN auctions a ON a.id = b.auction_id
WHERE b.auction_id = $1 AND b.user_id = $2 AND b.client_bid_id = $3
"""
_MAXES = """
SELECT id, auction_id, user_id, max_amount, client_bid_id, created_at
FROM max_bids WHERE auction_id = ANY($1::uuid[])
ORDER BY auction_id, position
"""


#: Statuses whose real leader is exposed: live, and ended until end processing.
_EXPOSED = frozenset({"live", "ended"})


@dataclass
class Recovered:
    registry: Registry
    epoch: int
    #: With leases: the partitions the lease table confirmed and this core holds.
    held: Held | None = None
    #: (auction, user, client_bid_id) → the durable bid, for idempotent retries.
    accepted: dict[IdempotencyKey, DurableBid | DurableMax] = field(default_factory=dict)
    #: auction → bidder → the latest (so the highest) maximum they set on it.
    maxes: dict[uuid.UUID, dict[uuid.UUID, int]] = field(default_factory=dict)
    #: With leases: (user, partition, allowance) read into the core's pools since
    #: the sequencer last took them (engine/allowances.py).
    allowances: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)
    #: With allowances: (user, partition) → the deposits the loaded auctions
    #: expose there, as the ledger says (since the sequencer last took them).
    exposed: dict[tuple[uuid.UUID, int], int] = field(default_factory=dict)
    #: Auctions awaiting their seller's decision: auction → (high bidder, what they
    #: are bound to). The core holds each closed, that bidder leading at that amount.
    decisions: dict[uuid.UUID, tuple[uuid.UUID, int]] = field(default_factory=dict)
    #: Auctions whose bid log does not verify → the first bid (seq) that breaks
    #: it: suspended (loaded, but nothing is decided for them).
    broken: dict[uuid.UUID, int] = field(default_factory=dict)

    def pool_of(self, auction_id: uuid.UUID) -> int | None:
        """The core pool backing the auction's deposits: its partition with leases
        (buying power split into allowances), None for a node alone."""
        held = self.held
        return None if held is None or not held.pooled else partition_of(auction_id, held.count)


@dataclass
class _Ledger:
    """What the ledger says of one auction, read from its bids."""

    row: asyncpg.Record
    bids: list[DurableBid] = field(default_factory=list)
    bidders: list[uuid.UUID] = field(default_factory=list)
    #: Each bidder's latest maximum, in the order those were set (the dict's order).
    maxes: dict[uuid.UUID, DurableMax] = field(default_factory=dict)
    all_maxes: list[DurableMax] = field(default_factory=list)

    @property
    def leader_max(self) -> int | None:
        """The leader's active maximum: its latest, where not below the lead."""
        lead = self.lead
        if lead is None or lead.is_platform:
            return None
        latest = self.maxes.get(lead.user_id)
        return latest.max_kobo if latest and latest.max_kobo >= lead.amount_kobo else None

    @property
    def decision(self) -> tuple[uuid.UUID, int] | None:
        """An auction awaiting its seller's decision: its high bidder and what they
        are bound to (the high bid, or their own latest counter)."""
        row = self.row
        if row["status"] != "seller_decision" or row["decision_bidder"] is None:
            return None
        return row["decision_bidder"], naira_to_kobo(row["decision_amount"])

    @property
    def exposed(self) -> tuple[uuid.UUID, int] | None:
        """Who this auction exposes, on what amount: a live or ended auction's real
        leader on its active maximum or its bid; a scheduled auction's would-be
        leader (the highest pre-bid, the earlier among equals) on its maximum; an
        auction awaiting its seller's decision, its high bidder on what they are
        bound to (RULES.md: the high bid stays binding)."""
        if self.row["status"] == "seller_decision":
            return self.decision
        lead = self.lead
        if self.row["status"] in _EXPOSED and lead is not None and not lead.is_platform:
            return lead.user_id, self.leader_max or lead.amount_kobo
        ranked = sorted(enumerate(self.prebids), key=lambda p: (-p[1].max_kobo, p[0]))
        return (ranked[0][1].user_id, ranked[0][1].max_kobo) if ranked else None

    @property
    def prebids(self) -> list[DurableMax]:
        """A scheduled auction's pre-bids, in the order they were set."""
        return list(self.maxes.values()) if self.row["status"] == "scheduled" else []

    @property
    def lead(self) -> DurableBid | None:
        return self.bids[-1] if self.bids else None


def sellers_of(row: asyncpg.Record) -> list[int]:
    ids = {row["created_by"], row["listed_by"], row["owner_id"]}
    return sorted(seller.int for seller in ids if seller is not None)


@dataclass(frozen=True, slots=True)
class Held:
    """The partitions a node holds leases on, out of `count` (engine/partitions.py)."""

    count: int
    partitions: frozenset[int]
    #: The lease table's owner name for this node: a claim touches only the
    #: partitions whose lease this node holds at that moment.
    node: str
    #: Buying power split into allowances per partition (engine/allowances.py):
    #: a node that may have peers. One that cannot (no Redis: alone by
    #: construction) weighs whole balances.
    pooled: bool = True

    def only(self, partitions: Iterable[int]) -> Held:
        return Held(self.count, frozenset(partitions), self.node, self.pooled)


async def recover(
    pool: asyncpg.Pool,
    *,
    shards: int = 8,
    previous_epoch: int | None = None,
    held: Held | None = None,
) -> Recovered:
    """A fresh core holding the ledger's users and the open auctions it owns, verified.

    With `held`, the open auctions of those partitions (a node of several).
    Without: `previous_epoch` None (a start) claims every open auction; after an
    outage the node's epoch so far, so auctions a newer owner took stay with it.
    """
    async with pool.acquire() as conn:
        epoch, held = await claim_epoch(conn, previous_epoch, held)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            users = await conn.fetch(_USERS)
            auctions = await (
                conn.fetch(_AUCTIONS, epoch)
                if held is None
                else conn.fetch(_PARTITION_AUCTIONS, epoch, held.count, sorted(held.partitions))
            )
            ids = [row["id"] for row in auctions]
            bids = await conn.fetch(_BIDS, ids)
            maxes = await conn.fetch(_MAXES, ids)
            allowances = (
                await of_partitions(conn, sorted(held.partitions))
                if held is not None and held.pooled
                else []
            )
    registry = Registry(bidcore.Core(shards=shards))
    for row in users:
        registry.upsert_user(
            row["id"],
            balance_kobo=naira_to_kobo(row["wallet_balance"]),
            eligible=row["id"] == PLATFORM_USER_ID
            or may_bid(row["role"], row["kyc_status"], row["is_active"]),
        )
    ledgers = _read_ledgers(auctions, bids, maxes)
    recovered = Recovered(registry=registry, epoch=epoch, held=held, allowances=allowances)
    into_core(registry, allowances)
    for ledger in ledgers.values():
        _restore(recovered, ledger)
        _remember(recovered, ledger)
    verify(registry, ledgers.values(), suspended=recovered.broken.keys())
    return recovered


def _remember(recovered: Recovered, ledger: _Ledger) -> None:
    """The auction's bids and maximums by idempotency key, for retries, and each
    bidder's latest maximum."""
    writes: list[DurableBid | DurableMax] = [*ledger.bids, *ledger.all_maxes]
    for write in writes:
        if write.client_bid_id is not None:
            recovered.accepted[(write.auction_id, write.user_id, write.client_bid_id)] = write
    if ledger.maxes:
        recovered.maxes[ledger.row["id"]] = {
            user: latest.max_kobo for user, latest in ledger.maxes.items()
        }


async def load_auction(
    conn: asyncpg.Connection, recovered: Recovered, auction_id: uuid.UUID, held: Held | None
) -> bool:
    """Take one open auction (say, just created) into the core under this epoch.

    False when the ledger holds no scheduled or live auction with that id, or
    (with `held`) when the lease on its partition is not this node's.
    """
    async with conn.transaction():
        if held is not None:
            partition = partition_of(auction_id, held.count)
            if not await _leased(conn, held.only([partition])):
                return False
        await conn.execute(_CLAIM_ONE, recovered.epoch, auction_id)
        row = await conn.fetchrow(_ONE_AUCTION, auction_id)
        if row is None:
            return False
        bids = await conn.fetch(_BIDS, [auction_id])
        maxes = await conn.fetch(_MAXES, [auction_id])
    if recovered.registry.auction_handle(auction_id) != NO_HANDLE:
        return True  # loaded meanwhile (say, by the sweep for strays): the core is newer
    ledgers = _read_ledgers([row], bids, maxes)
    _restore(recovered, ledgers[auction_id])
    verify_auctions(recovered.registry, _verifiable(recovered, ledgers.values()))
    _remember(recovered, ledgers[auction_id])
    return True


_STRAYS = """
SELECT id FROM auctions
WHERE status IN ('scheduled', 'live') AND epoch <> $1 AND auction_partition(id, $2) = ANY($3::int[])
"""


async def stray_auctions(
    conn: asyncpg.Connection, recovered: Recovered, held: Held
) -> list[uuid.UUID]:
    """Open auctions of `held`'s partitions this node has not claimed: made or
    approved through another node since this one loaded the partition."""
    rows = await conn.fetch(_STRAYS, recovered.epoch, held.count, sorted(held.partitions))
    return [row["id"] for row in rows]


async def _leased(conn: asyncpg.Connection, held: Held) -> Held:
    """The part of `held` whose leases are this node's now, locked until the
    transaction ends."""
    rows = await conn.fetch(_LEASED, sorted(held.partitions), held.node)
    return held.only(row["id"] for row in rows)


async def claim_epoch(
    conn: asyncpg.Connection, previous_epoch: int | None = None, held: Held | None = None
) -> tuple[int, Held | None]:
    """Take a new fencing epoch and stamp it on the open auctions this node owns
    (with `held`: of those partitions still leased to it, which it returns)."""
    async with conn.transaction():
        epoch: int = await conn.fetchval("SELECT nextval('engine_epoch_seq')")
        if held is None:
            await conn.execute(_CLAIM, epoch, previous_epoch)
        else:
            held = await _leased(conn, held)
            await conn.execute(_CLAIM_PARTITIONS, epoch, held.count, sorted(held.partitions))
    return epoch, held


async def load_partitions(
    conn: asyncpg.Connection, recovered: Recovered, held: Held
) -> tuple[Held, list[uuid.UUID]]:
    """Take the open auctions of `held.partitions` (just leased) into the running
    core under this node's epoch, verified against the ledger: the partitions
    whose leases were still this node's, and the auctions' ids."""
    async with conn.transaction():
        held = await _leased(conn, held)
        parts = sorted(held.partitions)
        await conn.execute(_CLAIM_PARTITIONS, recovered.epoch, held.count, parts)
        auctions = await conn.fetch(_PARTITION_AUCTIONS, recovered.epoch, held.count, parts)
        ids = [row["id"] for row in auctions]
        bids = await conn.fetch(_BIDS, ids)
        maxes = await conn.fetch(_MAXES, ids)
        allowances = await of_partitions(conn, parts) if held.pooled else []
    into_core(recovered.registry, allowances)
    recovered.allowances.extend(allowances)
    ledgers = _read_ledgers(auctions, bids, maxes)
    fresh = [
        ledger
        for ledger in ledgers.values()
        if recovered.registry.auction_handle(ledger.row["id"]) == NO_HANDLE
    ]  # one loaded meanwhile is newer in the core than in what was read
    for ledger in fresh:
        _restore(recovered, ledger)
        _remember(recovered, ledger)
    verify_auctions(recovered.registry, _verifiable(recovered, fresh))
    return held, ids


async def find_bid(
    conn: asyncpg.Connection, auction_id: uuid.UUID, user_id: uuid.UUID, client_bid_id: str
) -> DurableBid | None:
    """A bid already in the ledger under this idempotency key, if any."""
    row = await conn.fetchrow(_ONE_BID, auction_id, user_id, client_bid_id)
    if row is None:
        return None
    amount = naira_to_kobo(row["amount"])
    return _bid(row, min_next=amount + naira_to_kobo(row["bid_increment"]))


def _read_ledgers(
    auctions: Sequence[asyncpg.Record],
    bids: Iterable[asyncpg.Record],
    maxes: Iterable[asyncpg.Record] = (),
) -> dict[uuid.UUID, _Ledger]:
    ledgers = {row["id"]: _Ledger(row) for row in auctions}
    for row in maxes:  # in the order they were set
        ledger = ledgers[row["auction_id"]]
        latest = _max(row)
        ledger.all_maxes.append(latest)
        ledger.maxes.pop(latest.user_id, None)  # a raise moves it to the end
        ledger.maxes[latest.user_id] = latest
    for row in bids:
        ledger = ledgers[row["auction_id"]]
        if not row["is_platform_bid"] and row["user_id"] not in ledger.bidders:
            ledger.bidders.append(row["user_id"])
        previous = ledger.lead
        increment = naira_to_kobo(ledger.row["bid_increment"])
        ledger.bids.append(
            _bid(
                row,
                min_next=naira_to_kobo(row["amount"]) + increment,
                bid_count=len(ledger.bids) + 1,
                bidder_count=len(ledger.bidders),
                bidder_number=0
                if row["is_platform_bid"]
                else ledger.bidders.index(row["user_id"]) + 1,
                previous=previous,
            )
        )
    return ledgers


def _max(row: asyncpg.Record) -> DurableMax:
    """A maximum as the ledger holds it (where it led then is not kept: a retry of
    it is answered with where it stands in the core)."""
    return DurableMax(
        id=row["id"],
        auction_id=row["auction_id"],
        user_id=row["user_id"],
        max_kobo=naira_to_kobo(row["max_amount"]),
        at_ms=to_ms(row["created_at"]),
        client_bid_id=row["client_bid_id"],
        leading=False,
        price_kobo=0,  # not known: a retry is answered with where it stands then
    )


def _bid(
    row: asyncpg.Record,
    *,
    min_next: int,
    bid_count: int = 0,
    bidder_count: int = 0,
    bidder_number: int = 0,
    previous: DurableBid | None = None,
) -> DurableBid:
    return DurableBid(
        id=row["id"],
        auction_id=row["auction_id"],
        user_id=row["user_id"],
        amount_kobo=naira_to_kobo(row["amount"]),
        at_ms=to_ms(row["created_at"]),
        is_platform=row["is_platform_bid"],
        client_bid_id=row["client_bid_id"],
        seq=row["seq"],
        end_time_ms=to_ms(row["end_time_after"]),
        extended=row["extended"],
        min_next_bid_kobo=min_next,
        bid_count=bid_count,
        bidder_count=bidder_count,
        bidder_number=bidder_number,
        previous_leader=previous.user_id if previous else None,
        previous_amount_kobo=previous.amount_kobo if previous else None,
        is_proxy=row["is_proxy"],
        hash=row["hash"],
    )


def chain_breaks(bids: Sequence[DurableBid]) -> list[int]:
    """The seqs of an auction's bids (in seq order) whose stored hash is not the
    one their row and the stored hash before them give (engine/bidlog.py): a row
    changed after it was written, or one missing before it."""
    if not bids:
        return []
    return bidlog.breaks(
        bids[0].auction_id,
        (
            (
                bidlog.Entry(
                    bid.seq,
                    bid.bidder_number,
                    bid.amount_kobo,
                    bid.at_ms,
                    bid.is_platform,
                    bid.is_proxy,
                ),
                bid.hash,
            )
            for bid in bids
        ),
    )


def _check_chain(recovered: Recovered, ledger: _Ledger) -> None:
    """Suspend the auction if its bid log does not verify, saying where."""
    auction_id = ledger.row["id"]
    broken = chain_breaks(ledger.bids)
    if broken:
        recovered.broken[auction_id] = broken[0]
        logger.error(
            "bid log of auction %s does not verify from bid seq %d (bids %s): the auction "
            "is suspended until its bid rows are put right and the engine rebuilt",
            auction_id,
            broken[0],
            ", ".join(map(str, broken[:10])) + (" …" if len(broken) > 10 else ""),
        )
    else:
        recovered.broken.pop(auction_id, None)


def _verifiable(recovered: Recovered, ledgers: Iterable[_Ledger]) -> list[_Ledger]:
    """The ledgers the core must equal: those of auctions whose bid log verifies.

    A suspended auction's rows cannot be trusted to agree with its auction row
    (the change that broke its chain may break that too), and one stopping the
    whole engine would take every other auction down with it. Its leader's
    exposure, as its bids say, is held all the same (`_restore`)."""
    return [ledger for ledger in ledgers if ledger.row["id"] not in recovered.broken]


def _restore(recovered: Recovered, ledger: _Ledger) -> None:
    _check_chain(recovered, ledger)
    if ledger.row["id"] not in recovered.broken:
        _restore_verified(recovered, ledger)
        return
    try:
        _restore_verified(recovered, ledger)
    except bidcore.CoreError as exc:  # suspended all the same: refused without the core
        logger.error("auction %s, suspended, is left out of the core: %s", ledger.row["id"], exc)


def _restore_verified(recovered: Recovered, ledger: _Ledger) -> None:
    registry, row, lead = recovered.registry, ledger.row, ledger.lead
    end_ms = to_ms(row["end_time"])
    original_end_ms = to_ms(row["original_end"]) if row["original_end"] else end_ms
    decision = ledger.decision
    leader: tuple[int, int, bool] | None = None
    if decision is not None:  # closed, its high bidder leading at what they are bound to
        leader = (registry.user_handle(decision[0]), decision[1], False)
        recovered.decisions[row["id"]] = decision
    elif lead is not None:
        leader = (registry.user_handle(lead.user_id), lead.amount_kobo, lead.is_platform)
    handle = registry.core.restore_auction(
        row["id"].int,
        start_time_ms=to_ms(row["start_time"]),
        end_time_ms=end_ms,
        original_end_ms=min(original_end_ms, end_ms),
        start_price_kobo=naira_to_kobo(row["start_price"]),
        bid_increment_kobo=naira_to_kobo(row["bid_increment"]),
        reserve_price_kobo=effective_reserve_kobo(row["auction_type"], row["reserve_price"]),
        deposit_pct_bp=deposit_bp(row["deposit_pct"]),
        anti_snipe_window_ms=row["anti_snipe_window_ms"],
        anti_snipe_extension_ms=row["anti_snipe_extension_ms"],
        sellers=sellers_of(row),
        live=row["status"] in _EXPOSED or decision is not None,
        ended=row["status"] == "ended" or decision is not None,
        leader=leader[0] if leader is not None else None,
        leading_amount_kobo=leader[1] if leader is not None else None,
        leader_is_platform=leader[2] if leader is not None else False,
        bidders=[registry.user_handle(user) for user in ledger.bidders],
        bid_count=len(ledger.bids),
        platform_bid_count=sum(bid.is_platform for bid in ledger.bids),
        seq=row["last_seq"],
        leader_max_kobo=None if decision is not None else ledger.leader_max,
        prebids=[(registry.user_handle(p.user_id), p.max_kobo) for p in ledger.prebids],
        pool=(pool := recovered.pool_of(row["id"])),
        log_head=lead.hash if lead else None,
    )
    registry.track_auction(row["id"], handle)
    exposed = ledger.exposed
    if pool is not None and exposed is not None:
        user, amount = exposed
        owed = bidcore.deposit(amount, deposit_bp(row["deposit_pct"]))
        recovered.exposed[(user, pool)] = recovered.exposed.get((user, pool), 0) + owed


async def read_decision(conn: asyncpg.Connection, auction_id: uuid.UUID) -> _Ledger | None:
    """An auction awaiting its seller's decision, as the ledger has it now (None: it
    is not, or no longer, awaiting one)."""
    row = await conn.fetchrow(_ONE_DECISION, auction_id)
    if row is None or row["decision_bidder"] is None:
        return None
    bids = await conn.fetch(_BIDS, [auction_id])
    return _read_ledgers([row], bids)[auction_id]


def restore_decision(recovered: Recovered, ledger: _Ledger) -> None:
    """Take an auction awaiting its seller's decision into the core (one it does not
    hold), verified against the ledger."""
    _restore(recovered, ledger)
    verify_auctions(recovered.registry, [ledger])


def verify(
    registry: Registry, ledgers: Iterable[_Ledger], suspended: Collection[uuid.UUID] = ()
) -> None:
    """Refuse to serve unless the core equals the ledger: every auction (but the
    `suspended`, whose rows are not to be trusted: `_verifiable`), every exposure
    (a suspended auction's too, as its bids say, if it is in the core)."""
    ledgers = list(ledgers)
    problems = _auction_problems(registry, [x for x in ledgers if x.row["id"] not in suspended])
    exposure: dict[uuid.UUID, int] = {}
    for ledger in ledgers:
        if registry.auction_handle(ledger.row["id"]) == NO_HANDLE:
            continue  # suspended and left out of the core
        exposed = ledger.exposed
        if exposed is not None:
            user, amount = exposed
            deposit = bidcore.deposit(amount, deposit_bp(ledger.row["deposit_pct"]))
            exposure[user] = exposure.get(user, 0) + deposit
    for user_id in registry.user_ids():
        held = registry.core.user(registry.user_handle(user_id)).exposure_kobo
        owed = exposure.get(user_id, 0)
        if held != owed:
            problems.append(f"user {user_id}: exposure {held} in the core, {owed} in the ledger")
    _refuse_if(problems)


def verify_auctions(registry: Registry, ledgers: Iterable[_Ledger]) -> None:
    """The auction half of `verify`, for auctions loaded one at a time."""
    _refuse_if(_auction_problems(registry, list(ledgers)))


def _refuse_if(problems: list[str]) -> None:
    if problems:
        detail = "\n".join(problems[:20])
        raise RecoveryMismatch(f"the rebuilt core differs from the ledger:\n{detail}")


def _auction_problems(registry: Registry, ledgers: list[_Ledger]) -> list[str]:
    core = registry.core
    problems: list[str] = []
    for ledger in ledgers:
        row, lead = ledger.row, ledger.lead
        state = core.auction(registry.auction_handle(row["id"]))
        decision = ledger.decision
        expected: dict[str, Any] = {
            "current_price_kobo": lead.amount_kobo if lead else None,
            "bid_count": len(ledger.bids),
            "bidder_count": len(ledger.bidders),
            "platform_bid_count": sum(bid.is_platform for bid in ledger.bids),
            "seq": row["last_seq"],
        }
        from_row = {
            "current_price_kobo": naira_to_kobo(row["current_price"])
            if row["current_price"] is not None
            else None,
            "bid_count": row["bid_count"],
            "bidder_count": row["bidder_count"],
            "platform_bid_count": row["ai_bids_placed"],
            "seq": max(row["last_seq"], lead.seq if lead else 0),
        }
        in_core = {name: getattr(state, name) for name in expected}
        if decision is not None:  # the core leads at what the bidder is bound to
            in_core["current_price_kobo"] = from_row["current_price_kobo"]
        for name, value in expected.items():
            if in_core[name] != value or from_row[name] != value:
                problems.append(
                    f"auction {row['id']}: {name} is {in_core[name]} in the core, "
                    f"{from_row[name]} on the auction row, {value} from its bids"
                )
        leader = registry.user_id(state.leader) if state.leader is not None else None
        if decision is not None:
            if (leader, state.current_price_kobo) != decision:
                problems.append(
                    f"auction {row['id']}: the core holds {leader} at {state.current_price_kobo},"
                    f" not the if-bid's bidder at what they are bound to {decision}"
                )
        elif leader != (lead.user_id if lead else None):
            problems.append(f"auction {row['id']}: leader {leader} is not the top bidder")
    return problems
