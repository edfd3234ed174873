"""The application, composed: every cleanup context, subscription, adapter and
route in one place.

Start-up (the cleanup contexts, in order): the database (migrated), the bid
log's signing key (published), the sequencer (recovery: the core rebuilt and
verified from the ledger, then the ledger writer), the link to Redis if
REDIS_URL is set (a server or a cluster), the rate limiter, the rooms and their
bus (subscribed to the sequencer's commits), where bids go, and the timed jobs. `/readyz` turns 200
once all of that is up and the ledger takes writes. Shutdown runs them
backwards: the jobs stop, bids stop, the ledger is flushed, the sockets close.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from redis.exceptions import RedisError

from engine.auctions import Snapshot, last_seqs
from engine.bids import MAXIMUMS_NOT_OFFERED, BidAccepted, BidOutcome, DurableBid, MaxOutcome
from engine.clock import Clock, SystemClock
from engine.config import Settings
from engine.database import open_database
from engine.decisions import SellerDecisions
from engine.ending import EndResult
from engine.leases import LeaseTable
from engine.membership import Membership
from engine.per_bid_ledger import PerBidLedger
from engine.reconcile import Reconciler
from engine.sequencer import Sequencer
from engine.signing import load_signer, publish
from jobs.ifbid import IfBidDeadlines
from jobs.lifecycle import Lifecycle
from jobs.reconcile import Reconciliation
from jobs.reserve import ReserveProtection
from jobs.revenue import RevenueToday
from jobs.scheduler import Jobs, running_jobs
from jobs.settlement import SettlementDeadlines
from web import (
    admin_api,
    commission_api,
    health,
    internal_api,
    openapi,
    peers,
    public_api,
    revenue_api,
    room_page,
    seller_api,
    seller_page,
    settlement_api,
    vehicles_api,
    ws,
)
from web.bus import RedisBus
from web.errors import error_middleware, install_parser_errors
from web.keys import (
    ADMIN_HOOKS,
    BIDS,
    CLOCK,
    DATABASE,
    DECISIONS,
    LIMITER,
    LOG_SIGNER,
    MEMBERSHIP,
    OPEN_SOCKETS,
    REDIS,
    ROOM_TUNING,
    ROOMS,
    SEQUENCER,
    SETTINGS,
    AdminHooks,
)
from web.middleware import rate_limit_middleware
from web.peers import PEERS, Peers
from web.ratelimit import LocalRateLimiter, RedisRateLimiter
from web.redis_link import RedisLink
from web.rooms import Rooms, RoomTuning
from web.ws import room_snapshot
from web.ws_limits import OpenSockets
from web.ws_messages import bidder_handle

logger = logging.getLogger(__name__)

#: The route modules, in the order their routes are added.
ROUTES: tuple[Callable[[web.Application], None], ...] = (
    health.install,
    public_api.install,
    internal_api.install,
    ws.install,
    room_page.install,
    settlement_api.install,
    seller_api.install,
    seller_page.install,
    revenue_api.install,
    commission_api.install,
    admin_api.install,
    vehicles_api.install,
    openapi.install,
    peers.install,
)


def create_app(
    settings: Settings, *, clock: Clock | None = None, run_jobs: bool = True
) -> web.Application:
    """The engine's app; `run_jobs=False` leaves the timed work (opening and
    ending auctions, reserve protection, settlement deadlines) to the caller,
    and staff actions still end auctions at once."""
    install_parser_errors()
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_log_signer)
    app.cleanup_ctx.append(_sequencer)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_rate_limiter)
    app.cleanup_ctx.append(_rooms)
    app.cleanup_ctx.append(_bids)
    app.cleanup_ctx.append(_jobs if run_jobs else _staff_only)
    # on_shutdown runs before aiohttp waits for open handlers: hand the partitions
    # over first (the other nodes take them while this one drains), then close the
    # sockets (1001) so shutdown does not sit out its timeout on every watcher.
    app.on_shutdown.append(_hand_over)
    app.on_shutdown.append(_close_sockets)
    for install in ROUTES:
        install(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_database(app[SETTINGS], max_size=20) as database:
        app[DATABASE] = database
        yield


async def _log_signer(app: web.Application) -> AsyncIterator[None]:
    """The key this node signs the bid log's results with, published in the ledger
    before anything is signed (engine/signing.py)."""
    settings = app[SETTINGS]
    signer = load_signer(settings)
    await publish(app[DATABASE].pool, signer, settings.node_id)
    app[LOG_SIGNER] = signer
    logger.info("bid log results are signed with key %s", signer.key_id)
    yield


def with_node_identity(settings: Settings, host: str, port: int) -> Settings:
    """NODE_ID and ADVERTISE_URL, where unset, from where this node serves
    (API.md "Several nodes": host name + port, http://HOST:PORT)."""
    node_id = settings.node_id or f"{socket.gethostname()}:{port}"
    reachable = host if host not in ("", "0.0.0.0", "::") else socket.gethostname()  # noqa: S104
    url = settings.advertise_url or f"http://{reachable}:{port}"
    return dataclasses.replace(settings, node_id=node_id, advertise_url=url)


async def _sequencer(app: web.Application) -> AsyncIterator[None]:
    """The node's leases first (the partitions it decides for), then its core
    built from those partitions' auctions. On exit: bids stop, the writer
    flushes, and only then are the partitions handed over."""
    settings, database = app[SETTINGS], app[DATABASE]
    node_id = settings.node_id or f"{socket.gethostname()}:pid{os.getpid()}"
    table = LeaseTable(
        database.pool,
        node_id,
        settings.advertise_url or "http://127.0.0.1",
        settings.lease_ttl_ms,
        shares_rooms=settings.redis_url is not None,
    )
    membership = Membership(table, database.partitions)
    held = await membership.start()
    sequencer = await Sequencer.open(
        database.pool,
        clock=app[CLOCK],
        batch_max=settings.ledger_batch_max,
        window_ms=settings.ledger_batch_window_ms,
        held=held,
        interrupted=membership.interrupted,
        outage_min_ms=settings.outage_min_ms,
    )
    membership.attach(sequencer)
    app[SEQUENCER] = sequencer
    app[MEMBERSHIP] = membership
    try:
        yield
    finally:
        await sequencer.close()
        await membership.leave()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """The one link to REDIS_URL's Redis (web/redis_link.py), for the limits and
    the bus. Asked at once whether it is a cluster; if Redis does not answer,
    the node starts anyway and its users ask again."""
    redis_url = app[SETTINGS].redis_url
    if redis_url is None:
        yield
        return
    link = RedisLink(redis_url)
    try:
        await link.connect()
    except (RedisError, OSError) as exc:
        logger.warning("REDIS_URL does not answer yet (%s): rooms and limits stay local", exc)
    app[REDIS] = link
    try:
        yield
    finally:
        await link.aclose()


async def _rate_limiter(app: web.Application) -> AsyncIterator[None]:
    link = app.get(REDIS)
    if link is None:
        app[LIMITER] = LocalRateLimiter()
        yield
        return
    app[LIMITER] = shared = RedisRateLimiter(link)
    try:
        yield
    finally:
        await shared.aclose()


async def _rooms(app: web.Application) -> AsyncIterator[None]:
    """The rooms, fed by the sequencer's commits, over Redis when REDIS_URL is set.
    On exit every socket is closed with 1001 (going away)."""
    settings, sequencer = app[SETTINGS], app[SEQUENCER]
    rooms = Rooms(
        app.get(ROOM_TUNING) or RoomTuning(),
        reserve_of=lambda auction_id: _reserve_of(sequencer, auction_id),
        standings=sequencer,
        ledger=_RoomLedger(app),
    )
    link = app.get(REDIS)
    if link is not None:
        rooms.use_bus(RedisBus(link, rooms.deliver, missed=rooms.may_have_missed))
    await rooms.bus.start()
    sequencer.subscribe(rooms.publish_bids)
    sequencer.subscribe_state(rooms.publish_change)
    sequencer.subscribe_maxes(rooms.publish_max)
    sequencer.subscribe_loaded(rooms.publish_loaded)
    # What this node took at its start: rooms elsewhere may be behind it (events
    # a previous owner committed but never published, killed).
    rooms.publish_loaded(sequencer.seqs(sequencer.registry.auction_ids()))
    app[ROOMS] = rooms
    app[OPEN_SOCKETS] = OpenSockets(settings.ws_sockets_per_ip)
    try:
        yield
    finally:
        rooms.close_all()
        await rooms.bus.close()


async def _hand_over(app: web.Application) -> None:
    membership = app.get(MEMBERSHIP)
    if membership is not None:
        await membership.hand_over_all()


async def _close_sockets(app: web.Application) -> None:
    rooms = app.get(ROOMS)
    if rooms is not None:
        rooms.close_all()
    others = app.get(PEERS)
    if others is not None:
        await others.close_accepted()


async def _bids(app: web.Application) -> AsyncIterator[None]:
    """Bids go to this node's sequencer for the partitions it holds and to their
    owners for the others (web/peers.py), which also hear of users changed here."""
    settings = app[SETTINGS]
    if settings.ledger_mode == "baseline":
        logger.warning("LEDGER_MODE=baseline: one locked transaction per bid, for measurement only")
        ledger = PerBidLedger(app[DATABASE].pool, clock=app[CLOCK])
        app[BIDS] = PublishingPerBidLedger(ledger, app[ROOMS].publish_bids)
        yield
        return
    sequencer = app[SEQUENCER]
    others = Peers(sequencer, app[MEMBERSHIP], settings.internal_api_token)
    await others.start()
    sequencer.reach(others)
    app[BIDS] = others
    app[PEERS] = others
    try:
        yield
    finally:
        await others.close()


def _lifecycle(app: web.Application) -> Lifecycle:
    return Lifecycle(
        app[DATABASE].pool,
        app[SEQUENCER],
        app[CLOCK],
        EndAnnouncer(app[ROOMS]),
        signer=app[LOG_SIGNER],
    )


async def _jobs(app: web.Application) -> AsyncIterator[None]:
    pool, sequencer, clock, rooms = app[DATABASE].pool, app[SEQUENCER], app[CLOCK], app[ROOMS]
    lifecycle = _lifecycle(app)
    decisions = _decisions(app)
    jobs = Jobs(
        lifecycle=lifecycle,
        reserve=ReserveProtection(sequencer, clock),
        settlement=SettlementDeadlines(pool, sequencer, clock, rooms),
        reconcile=Reconciliation(Reconciler(pool), clock),
        allowances=sequencer.escrow,
        if_bids=IfBidDeadlines(decisions),
        revenue=RevenueToday(pool, clock),
    )
    if ADMIN_HOOKS not in app:  # a test may have set its own
        app[ADMIN_HOOKS] = AdminHooks(finisher=lifecycle, publisher=rooms)
    async with running_jobs(jobs):
        yield


async def _staff_only(app: web.Application) -> AsyncIterator[None]:
    """Without the timed jobs, a staff action still runs end processing at once,
    and if-bids are answered (their deadlines are the caller's to run)."""
    if ADMIN_HOOKS not in app:
        app[ADMIN_HOOKS] = AdminHooks(finisher=_lifecycle(app), publisher=app[ROOMS])
    _decisions(app)
    yield


def _decisions(app: web.Application) -> SellerDecisions:
    """The if-bid's steps, told to the rooms (a test may have set its own)."""
    if DECISIONS not in app:
        app[DECISIONS] = SellerDecisions(app[DATABASE].pool, app[SEQUENCER], app[CLOCK], app[ROOMS])
    return app[DECISIONS]


# ---- adapters ----------------------------------------------------------------------


class EndAnnouncer:
    """The lifecycle's `EndedPublisher` (one `EndResult`) on top of the rooms:
    `ended` for the room, `won` to the winner (`seller_decision` to the high bidder
    of an if-bid), `lost` to every other bidder."""

    def __init__(self, rooms: Rooms) -> None:
        self._rooms = rooms

    def publish_ended(self, result: EndResult) -> None:
        winner = result.winner_id if result.sold else result.high_bidder_id
        handle = None
        if result.sold and winner is not None and result.winner_number is not None:
            handle = bidder_handle(result.winner_number, False)
        self._rooms.publish_ended(
            result.auction_id,
            result.seq,
            result.result,
            result.final_price_kobo,
            handle,
            winner,
            [bidder for bidder in result.bidders if bidder != winner],
        )


class PublishingPerBidLedger:
    """The per-bid-lock ledger (the seed's design, for side-by-side measurement),
    telling the rooms of each bid once its transaction committed. It decides from
    the database rows and never updates the core, so in that mode the core's
    view (anti-sniping end times the scheduler reads, exposure) is not kept
    current: a yardstick, not a way to run auctions."""

    def __init__(
        self, ledger: PerBidLedger, publish: Callable[[Sequence[DurableBid]], None]
    ) -> None:
        self._ledger = ledger
        self._publish = publish

    async def place_bid(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome:
        outcome = await self._ledger.place_bid(
            auction_id, user_id, amount_kobo, client_bid_id, platform=platform
        )
        if isinstance(outcome, BidAccepted):
            self._publish([outcome.bid])
        return outcome

    async def set_max(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        max_kobo: int,
        client_bid_id: str | None = None,
    ) -> MaxOutcome:
        """The seed's design has no maximums: refused, nothing changed (the core
        would decide them apart from these bids, and the two would disagree)."""
        return MAXIMUMS_NOT_OFFERED


@dataclasses.dataclass(frozen=True)
class _RoomLedger:
    """web.rooms.LedgerSnapshots: a room's snapshot from the ledger, the clock."""

    app: web.Application

    async def snapshot(self, auction_id: uuid.UUID) -> Snapshot | None:
        return await room_snapshot(self.app, auction_id)

    async def last_seqs(self, auction_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        return await last_seqs(self.app[DATABASE].pool, auction_ids)

    def now_ms(self) -> int:
        return self.app[CLOCK].now_ms()


def _reserve_of(sequencer: Sequencer, auction_id: uuid.UUID) -> int | None:
    """The reserve that binds (the core holds it so), for `bid.reserve_met`."""
    state = sequencer.held(auction_id)
    return state.reserve_price_kobo if state is not None else None
