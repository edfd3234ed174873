"""Node-to-node calls (CLUSTER.md "Forwarding", API.md "Several nodes").

A bid or maximum reaching a node that does not decide its auction is forwarded
to the auction's owner over one persistent WebSocket per peer (`GET
/internal/peer`, the platform's service token): msgpack frames carrying a
request id, answered out of order, the owner's answer relayed unchanged. The
bid keeps its `client_bid_id`, so a retry after a move is deduplicated from the
ledger by whoever owns the auction then. A peer that does not answer within
`FORWARD_TIMEOUT_S` (or at all: a dead owner) → the lease table is read again
and, if it names another owner by now, the call goes there once more; else
`unavailable`, outcome unknown (retry with the same id).
An owner that answers "not here" (its lease moved meanwhile) → the lease table
is read again and the bid forwarded once more; no owner at all (a partition
between two owners) → `unavailable`, nothing placed.

The same links carry what must hold on every node when an internal call
returns: a user's committed balance or eligibility (each node re-reads the
row) and an auction made or approved through a node that does not own it (the
owner loads it). A staff action on an auction this node does not decide is
relayed to the owner as the HTTP request it is (`relay`), the caller's own
token and address going with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import msgspec
from aiohttp import web
from prometheus_client import Counter, Histogram

from engine.bids import (
    UNCONFIRMED,
    BidAccepted,
    BidOutcome,
    BidRejected,
    DurableBid,
    DurableMax,
    MaxAccepted,
    MaxOutcome,
)
from engine.errors import UNREACHABLE_OR_REFUSED
from engine.membership import Membership
from engine.partitions import partition_of
from engine.sequencer import Sequencer
from web.auth import require_service
from web.keys import SEQUENCER, SETTINGS
from web.proxies import client_address

logger = logging.getLogger(__name__)

PATH = "/internal/peer"
#: On a request one node relays to another: the platform's service token (only
#: nodes hold it), and the address of the caller the first node served.
PEER_HEADER = "X-Dealer360-Peer"
RELAYED_FOR = "X-Dealer360-Relayed-For"
#: How long a forwarded call may take before the caller is answered `unavailable`.
FORWARD_TIMEOUT_S = 2.0
#: The lease table is read again for a stale owner at most this often.
REREAD_EVERY_S = 0.1
_MAX_FRAME = 64 * 1024

FORWARDED = Counter(
    "auction_forwarded_bids_total",
    "Bids and maximums this node forwarded to the auction's owner, by how it went "
    "(answered; no_owner: the partition was between owners; failed: no answer in time).",
    ["result"],
)
FORWARD_SECONDS = Histogram(
    "auction_forward_seconds",
    "From forwarding a bid or maximum to the owner's answer, on the forwarding node.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
)

_RELAY_FAILED = (
    "The server deciding this auction could not be reached. Send the action again "
    "in a moment: the audit log shows whether it was done."
)

NO_OWNER = BidRejected(
    "unavailable",
    "This auction is moving between servers of the engine. Your bid was not placed; "
    "please try again in a moment.",
)


# ---- frames ---------------------------------------------------------------------


class BidCall(msgspec.Struct, frozen=True, array_like=True, tag="bid"):
    id: int
    auction_id: uuid.UUID
    user_id: uuid.UUID
    amount_kobo: int
    client_bid_id: str | None


class MaxCall(msgspec.Struct, frozen=True, array_like=True, tag="max"):
    id: int
    auction_id: uuid.UUID
    user_id: uuid.UUID
    max_kobo: int
    client_bid_id: str | None


class LoadCall(msgspec.Struct, frozen=True, array_like=True, tag="load"):
    id: int
    auction_id: uuid.UUID


class UserCall(msgspec.Struct, frozen=True, array_like=True, tag="user"):
    id: int
    user_id: uuid.UUID


class ReleaseCall(msgspec.Struct, frozen=True, array_like=True, tag="release"):
    id: int
    user_id: uuid.UUID


Call = BidCall | MaxCall | LoadCall | UserCall | ReleaseCall


class Reply(msgspec.Struct, frozen=True, array_like=True):
    id: int
    not_here: bool = False  # the caller's map is stale: this node does not own it
    done: bool = False  # a load or user call: it took effect
    bid: DurableBid | None = None
    max: DurableMax | None = None
    code: str | None = None
    message: str | None = None

    def bid_outcome(self) -> BidOutcome:
        if self.bid is not None:
            return BidAccepted(self.bid)
        return BidRejected(self.code or "unavailable", self.message or "")

    def max_outcome(self) -> MaxOutcome:
        if self.max is not None:
            return MaxAccepted(self.max)
        return BidRejected(self.code or "unavailable", self.message or "")


_encode = msgspec.msgpack.Encoder().encode
_decode_call = msgspec.msgpack.Decoder(Call).decode
_decode_reply = msgspec.msgpack.Decoder(Reply).decode


def _outcome_reply(call_id: int, outcome: BidOutcome | MaxOutcome) -> Reply:
    if isinstance(outcome, BidAccepted):
        return Reply(call_id, bid=outcome.bid)
    if isinstance(outcome, MaxAccepted):
        return Reply(call_id, max=outcome.max)
    return Reply(call_id, code=outcome.code, message=outcome.message)


# ---- the owner's side: GET /internal/peer ------------------------------------------


async def peer_socket(request: web.Request) -> web.StreamResponse:
    app = request.app
    require_service(request, app[SETTINGS].internal_api_token)
    ws = web.WebSocketResponse(max_msg_size=_MAX_FRAME, heartbeat=10)
    await ws.prepare(request)
    serving = _Serving(app[SEQUENCER], ws)
    accepted = app[PEERS].accepted if PEERS in app else set()
    accepted.add(ws)
    try:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                serving.handle(message.data)
    finally:
        accepted.discard(ws)
    await serving.finish()
    return ws


class _Serving:
    """One peer's calls on this node: each its own task, started in arrival order
    (so bids are decided in it), answered as each finishes."""

    def __init__(self, sequencer: Sequencer, ws: web.WebSocketResponse) -> None:
        self._sequencer = sequencer
        self._ws = ws
        self._sending = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, data: bytes) -> None:
        try:
            call = _decode_call(data)
        except msgspec.DecodeError as err:
            logger.warning("a peer sent a frame this node cannot read: %s", err)
            return
        task = asyncio.create_task(self._answer(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, call: Call) -> None:
        try:
            reply = await self._reply(call)
        except Exception:
            logger.exception("a forwarded call failed")
            reply = _outcome_reply(call.id, UNCONFIRMED)
        async with self._sending:
            with contextlib.suppress(ConnectionError):
                await self._ws.send_bytes(_encode(reply))

    async def _reply(self, call: Call) -> Reply:
        sequencer = self._sequencer
        if isinstance(call, UserCall):
            return Reply(call.id, done=await sequencer.refresh_user(call.user_id))
        if isinstance(call, ReleaseCall):
            await sequencer.release_allowances(call.user_id)
            return Reply(call.id, done=True)
        if isinstance(call, LoadCall):
            loaded = await sequencer.load_here(call.auction_id)
            return Reply(call.id, not_here=loaded is None, done=bool(loaded))
        if not sequencer.decides(call.auction_id):
            return Reply(call.id, not_here=True)
        if isinstance(call, BidCall):
            outcome: BidOutcome | MaxOutcome = await sequencer.place_bid(
                call.auction_id, call.user_id, call.amount_kobo, call.client_bid_id
            )
        else:
            outcome = await sequencer.set_max(
                call.auction_id, call.user_id, call.max_kobo, call.client_bid_id
            )
        return _outcome_reply(call.id, outcome)

    async def finish(self) -> None:
        """The peer went away: let calls in flight finish (their bids are decided
        and being written), their answers dropped."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))


# ---- the caller's side ---------------------------------------------------------------


class PeerLink:
    """One persistent socket to one peer, connected on first use and again after
    a drop; calls wait on their own reply, matched by id."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.url = url
        self._session = session
        self._token = token
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._sending = asyncio.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Reply]] = {}

    async def call(self, make: Callable[[int], Call]) -> Reply:
        """Send the call `make(id)` and wait for its reply (raise on a drop or a
        timeout: its outcome is then unknown)."""
        async with asyncio.timeout(FORWARD_TIMEOUT_S):
            ws = await self._connected()
            call_id = next(self._ids)
            waiting: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._waiting[call_id] = waiting
            try:
                async with self._sending:
                    await ws.send_bytes(_encode(make(call_id)))
                return await waiting
            finally:
                self._waiting.pop(call_id, None)

    async def _connected(self) -> aiohttp.ClientWebSocketResponse:
        async with self._connecting:
            ws = self._ws
            if ws is None or ws.closed:
                ws = await self._session.ws_connect(
                    self.url.rstrip("/") + PATH,
                    headers={"Authorization": f"Bearer {self._token}"},
                    heartbeat=10,
                    max_msg_size=_MAX_FRAME,
                )
                self._ws = ws
                self._reader = asyncio.create_task(self._read(ws), name=f"peer {self.url}")
            return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    continue
                try:
                    reply = _decode_reply(message.data)
                except msgspec.DecodeError as err:
                    logger.warning("peer %s sent a reply this node cannot read: %s", self.url, err)
                    continue
                waiting = self._waiting.pop(reply.id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(reply)
        finally:
            if self._ws is ws:
                self._ws = None
            gone = ConnectionResetError(f"peer {self.url} closed the connection")
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(gone)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


_CALL_FAILED = (OSError, aiohttp.ClientError, TimeoutError, ConnectionError)


class _Unanswered:
    """Forwarded calls that got no answer, logged at most once a second: a dead
    owner fails every bid sent its way until its partitions move, and a line for
    each would cost the node what it needs to take them over."""

    EVERY_S = 1.0

    def __init__(self) -> None:
        self._since_logged = 0
        self._logged_at = -math.inf

    def note(self, auction_id: uuid.UUID, err: BaseException) -> None:
        self._since_logged += 1
        now = time.monotonic()
        if now - self._logged_at < self.EVERY_S:
            return
        logger.warning(
            "%d forwarded call(s) got no answer since this was last said (the last, for "
            "auction %s: %r)",
            self._since_logged,
            auction_id,
            err,
        )
        self._since_logged, self._logged_at = 0, now


class Peers:
    """The other nodes: where an auction's owner is (the lease table, read again
    when it proves stale), and a link to each. Also where bids go on a node of
    several: to this node's sequencer for the partitions it holds, forwarded for
    the others (`place_bid`, `set_max`: web.keys.BidPlacer)."""

    def __init__(self, sequencer: Sequencer, membership: Membership, token: str) -> None:
        self._sequencer = sequencer
        self._membership = membership
        self._token = token
        self._session: aiohttp.ClientSession | None = None
        self._links: dict[str, PeerLink] = {}
        self._reading: asyncio.Task[object] | None = None
        self._read_at = 0.0
        self._unanswered = _Unanswered()
        #: The other nodes' sockets to this one (closed on shutdown, so it does not
        #: wait on them).
        self.accepted: set[web.WebSocketResponse] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close_accepted(self) -> None:
        for ws in list(self.accepted):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"node stopping")

    async def close(self) -> None:
        for link in self._links.values():
            with contextlib.suppress(*_CALL_FAILED):
                await link.close()
        self._links.clear()
        if self._session is not None:
            await self._session.close()

    # ---- where things are ---------------------------------------------------------

    def _owner_url(self, auction_id: uuid.UUID) -> str | None:
        """The URL of the node whose lease covers the auction, as last read (None:
        no owner, this node, or not read yet)."""
        membership = self._membership
        view = membership.view
        if view is None:
            return None
        partition = partition_of(auction_id, membership.count)
        row = view.partitions[partition] if partition < len(view.partitions) else None
        if row is None or row.id != partition or row.free or row.owner == membership.node_id:
            return None
        return next((node.url for node in view.nodes if node.id == row.owner), None)

    async def _reread(self) -> None:
        """Read the lease table again, at most every REREAD_EVERY_S, callers at the
        same moment sharing one read."""
        if self._reading is None or self._reading.done():
            if time.monotonic() - self._read_at < REREAD_EVERY_S:
                return
            self._read_at = time.monotonic()
            self._reading = asyncio.create_task(self._membership.read_view())
        with contextlib.suppress(Exception):
            await asyncio.shield(self._reading)

    def _link(self, url: str) -> PeerLink:
        link = self._links.get(url)
        if link is None:
            assert self._session is not None, "start() first"
            link = self._links[url] = PeerLink(self._session, url, self._token)
        return link

    async def _owners(self, auction_id: uuid.UUID) -> AsyncIterator[str]:
        """The owner's URL as last read, then as read again (twice at most)."""
        for attempt in range(2):
            if attempt:
                await self._reread()
            url = self._owner_url(auction_id)
            if url is not None:
                yield url

    async def _to_owner(self, auction_id: uuid.UUID, make: Callable[[int], Call]) -> Reply | None:
        """The owner's reply (None: no owner now). Raises when the owner did not
        answer: the call's outcome is unknown. A dead owner (the table not read
        since it died) is tried once more if the table names another one by now:
        safe either way, the call keeps its client_bid_id and a stale owner's
        write is fenced off."""
        failed: tuple[str, BaseException] | None = None
        async for url in self._owners(auction_id):
            if failed is not None and failed[0] == url:
                break
            try:
                reply = await self._link(url).call(make)
            except _CALL_FAILED as err:
                failed = (url, err)
                continue
            if not reply.not_here:
                return reply
        if failed is not None:
            raise failed[1]
        return None

    # ---- bids (web.keys.BidPlacer) ---------------------------------------------------

    async def place_bid(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome:
        sequencer = self._sequencer
        if platform or sequencer.decides(auction_id):  # the platform bids on its owner only
            return await sequencer.place_bid(
                auction_id, user_id, amount_kobo, client_bid_id, platform=platform
            )
        reply = await self._forward(
            auction_id,
            lambda n: BidCall(n, auction_id, user_id, amount_kobo, client_bid_id),
        )
        if not isinstance(reply, BidRejected):
            return reply.bid_outcome()
        if client_bid_id is not None:  # a retry while no node answers: the ledger may know it
            with contextlib.suppress(*UNREACHABLE_OR_REFUSED):
                earlier = await sequencer.in_ledger(auction_id, user_id, client_bid_id)
                if earlier is not None:
                    return BidAccepted(earlier)
        return reply

    async def set_max(
        self,
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        max_kobo: int,
        client_bid_id: str | None = None,
    ) -> MaxOutcome:
        sequencer = self._sequencer
        if sequencer.decides(auction_id):
            return await sequencer.set_max(auction_id, user_id, max_kobo, client_bid_id)
        reply = await self._forward(
            auction_id, lambda n: MaxCall(n, auction_id, user_id, max_kobo, client_bid_id)
        )
        return reply if isinstance(reply, BidRejected) else reply.max_outcome()

    async def _forward(
        self, auction_id: uuid.UUID, make: Callable[[int], Call]
    ) -> Reply | BidRejected:
        started = time.monotonic()
        try:
            reply = await self._to_owner(auction_id, make)
        except _CALL_FAILED as err:
            FORWARDED.labels("failed").inc()
            self._unanswered.note(auction_id, err)
            return UNCONFIRMED
        if reply is None:
            FORWARDED.labels("no_owner").inc()
            return NO_OWNER
        FORWARDED.labels("answered").inc()
        FORWARD_SECONDS.observe(time.monotonic() - started)
        return reply

    # ---- staff actions ------------------------------------------------------------------

    def decides(self, auction_id: uuid.UUID) -> bool:
        return self._sequencer.decides(auction_id)

    async def relay(self, request: web.Request, auction_id: uuid.UUID) -> web.Response:
        """Send `request` on to the auction's owner and answer with its answer; 503
        `unavailable` when there is no owner or it does not answer (nothing done,
        or, after a timeout, unknown: the action is safe to send again)."""
        assert self._session is not None, "start() first"
        body = await request.read()
        headers = {
            PEER_HEADER: self._token,
            RELAYED_FOR: client_address(request) or "",
            "Content-Type": request.headers.get("Content-Type", "application/json"),
        }
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        async for url in self._owners(auction_id):
            try:
                async with (
                    asyncio.timeout(FORWARD_TIMEOUT_S * 5),
                    self._session.request(
                        request.method,
                        url.rstrip("/") + request.rel_url.path_qs,
                        data=body,
                        headers=headers,
                    ) as answer,
                ):
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        content_type=answer.content_type,
                    )
            except _CALL_FAILED as err:
                logger.warning(
                    "a staff action on %s could not reach its owner: %r", auction_id, err
                )
                break
        return web.json_response(
            {"error": {"code": "unavailable", "message": _RELAY_FAILED}}, status=503
        )

    # ---- engine.sequencer.Elsewhere ---------------------------------------------------

    async def load_auction(self, auction_id: uuid.UUID) -> bool:
        """The owner loads an auction made or approved here; False when it could not
        be told (it finds the auction on its next sweep for strays, within a second)."""
        try:
            reply = await self._to_owner(auction_id, lambda n: LoadCall(n, auction_id))
        except _CALL_FAILED as err:
            logger.warning("the owner of auction %s was not told to load it: %r", auction_id, err)
            return False
        return reply is not None and reply.done

    async def user_changed(self, user_id: uuid.UUID) -> None:
        """Every other live node re-reads the user's row, at once."""
        await self._everyone(lambda n: UserCall(n, user_id), f"of user {user_id}")

    async def release_allowances(self, user_id: uuid.UUID) -> None:
        """Every other live node gives back what its pools of the user do not expose."""
        await self._everyone(lambda n: ReleaseCall(n, user_id), f"to release user {user_id}")

    async def _everyone(self, make: Callable[[int], Call], what: str) -> None:
        membership = self._membership
        view = membership.view
        if view is None:
            return
        urls = [n.url for n in view.nodes if n.alive and n.id != membership.node_id]
        answers = await asyncio.gather(
            *(self._link(url).call(make) for url in urls), return_exceptions=True
        )
        for url, answer in zip(urls, answers, strict=True):
            if isinstance(answer, BaseException):
                logger.warning("node %s was not told %s: %r", url, what, answer)


PEERS = web.AppKey("peers", Peers)


def relayed_for(request: web.Request) -> str | None:
    """The original caller's address when another node relayed this request."""
    token = request.headers.get(PEER_HEADER)
    if token is None:
        return None
    internal = request.app[SETTINGS].internal_api_token
    if not hmac.compare_digest(token.encode(), internal.encode()):
        return None
    return request.headers.get(RELAYED_FOR, "")


def caller_address(request: web.Request) -> str | None:
    """Who made the request: the relaying node's caller, else the client's
    address (behind a trusted proxy, the one it forwarded)."""
    return relayed_for(request) or client_address(request)


async def relay_to_owner(request: web.Request, auction_id: uuid.UUID) -> web.Response | None:
    """The owner's answer to this request, when another node decides the auction
    (None: this node does, or it was relayed here already: handle it here)."""
    peers = request.app.get(PEERS)
    if peers is None or relayed_for(request) is not None:
        return None
    if peers.decides(auction_id):
        return None
    return await peers.relay(request, auction_id)


def install(app: web.Application) -> None:
    app.router.add_get(PATH, peer_socket)
