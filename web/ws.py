"""`GET /ws/auctions/{id}`: one auction room over a WebSocket (API.md).

A socket gets the room's `snapshot` first and watches as a guest; `auth` makes
it a bidder (identity from the token's `sub`, role and KYC from the `users`
row) until the token expires. Frames are decoded once, strictly, into the
`ClientMessage` union; a bad one gets an `error` and the socket stays open. A
bid (or a maximum) goes to the sequencer and its `bid_result` comes back once
the ledger has committed it — after the room's `bid` events, which the commit
itself sends.

What a socket may cost is bounded: frames per second per socket and sockets per
client address (web/ws_limits.py), and `resume` and `auth` are answered from the
room's own snapshot (web/rooms.py) rather than the database, so a guest has no
way to keep the pool the ledger writes through busy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from engine import auctions
from engine.auctions import Snapshot, You, YouStatus
from engine.bids import BidAccepted, DurableBid, MaxAccepted, rejection
from engine.errors import UNREACHABLE_OR_REFUSED, TokenError
from engine.sequencer import Sequencer
from engine.standing import standing, standing_in_core
from engine.tokens import verify_token_claims
from engine.users import load_caller
from web.errors import ApiError
from web.frames import text_frame
from web.keys import (
    BIDS,
    CLOCK,
    DATABASE,
    LIMITER,
    OPEN_SOCKETS,
    ROOMS,
    SEQUENCER,
    SETTINGS,
    BidPlacer,
)
from web.messages import whole_kobo
from web.proxies import client_address
from web.ratelimit import ip_key
from web.rooms import TRY_AGAIN_LATER, Connection, Room, snapshot_frame
from web.ws_limits import FrameBudget
from web.ws_messages import (
    GUEST_TYPES,
    Auth,
    Bid,
    BidResult,
    ClientMessage,
    ErrorMessage,
    Max,
    Ping,
    Pong,
    Resume,
    ServerMessage,
    YouMessage,
    bidder_handle,
    client_decoder,
    encode,
    frame_type_decoder,
)

logger = logging.getLogger(__name__)

#: API.md: frames up to 64 KiB are decoded; a larger one closes the socket with 1009.
MAX_FRAME_BYTES = 64 * 1024

#: The ledger (or the database behind a snapshot) could not be reached.
_DATABASE_DOWN = UNREACHABLE_OR_REFUSED


#: A refused socket's Retry-After: a place frees when one of its sockets closes,
#: which no clock can tell; a few seconds keeps a reconnecting client from spinning.
_SOCKETS_RETRY_S = 5

#: The longest a sign-in's expiry timer sleeps before it looks at the clock again.
_EXPIRY_CHECK_S = 3600.0


def install(app: web.Application) -> None:
    app.router.add_get("/ws/auctions/{id}", auction_socket)


async def auction_socket(request: web.Request) -> web.StreamResponse:
    auction_id = _auction_id(request)
    app = request.app
    rooms = app[ROOMS]
    ws = web.WebSocketResponse(
        # ±10 % per socket: sockets opened together (a mass reconnect) do not ping
        # together; see also server.serve's timeout_ceil_threshold.
        heartbeat=rooms.tuning.heartbeat_s * random.uniform(0.9, 1.1),
        max_msg_size=MAX_FRAME_BYTES + 1,  # aiohttp refuses a message *of* max_msg_size
        compress=False,  # one prebuilt frame for every socket: no per-socket deflate
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "malformed", "This address takes WebSocket connections only.")
    # Counted before anything else is spent on the socket, and given back however
    # it ends: a close by either side, a drop, a failed snapshot, shutdown.
    sockets, client = app[OPEN_SOCKETS], ip_key(client_address(request))
    if not sockets.open(client):
        raise ApiError(
            429,
            "rate_limited",
            f"Too many open room connections from your address: at most {sockets.per_key}. "
            f"Close one, or try again in {_SOCKETS_RETRY_S} s.",
            headers={"Retry-After": str(_SOCKETS_RETRY_S)},
        )
    try:
        async with rooms.following(auction_id):
            return await _run_socket(request, ws, auction_id)
    finally:
        sockets.close(client)


async def _run_socket(
    request: web.Request, ws: web.WebSocketResponse, auction_id: uuid.UUID
) -> web.WebSocketResponse:
    app = request.app
    rooms = app[ROOMS]
    # A room others watch here gives its snapshot from memory (a crowd reconnecting
    # after a node died costs no ledger read each); the first socket reads the ledger,
    # and so does every socket while the ledger takes no writes (refused with 503).
    clock = app[CLOCK]
    remembered = app[SEQUENCER].available and rooms.remembers(auction_id, clock.now_ms())
    snap = None if remembered else await _first_snapshot(app, auction_id)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client left during the handshake
        return ws
    conn = Connection(ws, transport, rooms.tuning)
    session = Session(app, auction_id, conn)
    if not (remembered and rooms.join_remembered(auction_id, conn, clock.now_ms())):
        if snap is None:  # the room closed during the handshake: rare, read the ledger now
            try:
                snap = await _first_snapshot(app, auction_id)
            except ApiError:
                await ws.close(code=TRY_AGAIN_LATER, message=b"try again")
                return ws
        rooms.join(auction_id, conn, snap, clock.now_ms())
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await session.handle_safely(message.data)
                if pause := session.over_budget_s():
                    # Over its budget: not read again until a frame would be taken,
                    # so a flood waits in the client's buffers instead of costing
                    # this process a refusal per frame. Every frame read is still
                    # acted on or refused, in order.
                    await asyncio.sleep(pause)
            elif message.type is WSMsgType.ERROR:
                break
    finally:
        session.close()
        rooms.leave(conn)
    return ws


async def _first_snapshot(app: web.Application, auction_id: uuid.UUID) -> Snapshot:
    """The room's snapshot from the ledger; ApiError 503 or 404 when it cannot be had."""
    try:
        snap = await room_snapshot(app, auction_id)
    except _DATABASE_DOWN as err:
        logger.warning("snapshot of %s failed: %r", auction_id, err)
        raise ApiError(
            503, "unavailable", "The auction room cannot be loaded right now; try again shortly."
        ) from err
    if snap is None:
        raise ApiError(404, "not_found", "There is no auction with this id.")
    return snap


def _auction_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "not_found", "There is no auction with this id.") from None


class Session:
    """What one socket may do, and its replies."""

    def __init__(self, app: web.Application, auction_id: uuid.UUID, conn: Connection) -> None:
        self._app = app
        self._rooms = app[ROOMS]
        self._sequencer: Sequencer = app[SEQUENCER]
        self._placer: BidPlacer = app[BIDS]
        self._auction_id = auction_id
        self._conn = conn
        self._bids: set[asyncio.Task[None]] = set()  # bids and maximums on their way
        frames_per_s = app[SETTINGS].ws_frames_per_s
        self._budget = FrameBudget(frames_per_s)
        self._over_budget_s = 0.0
        self._refusal = text_frame(
            encode(
                ErrorMessage(
                    code="rate_limited",
                    message=f"Too many messages on this connection: at most {frames_per_s} "
                    "a second. This one was not acted on; wait a moment and send it again.",
                )
            )
        )
        self._signed_in_until: float | None = None  # the token's `exp` (Unix seconds)
        self._expiry: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """The socket is gone: nothing more may fire for it."""
        self._stop_expiry()

    async def handle_safely(self, data: str | bytes) -> None:
        """`handle`, and a bug in it costs this message, not the socket."""
        if self._signed_in_until is not None and time.time() >= self._signed_in_until:
            self._sign_in_expired()  # before the frame: it is a guest's now
        if not self._budget.take():
            self._over_budget_s = self._budget.wait_s()
            self._rooms.send(self._conn, self._refusal)
            return
        try:
            await self.handle(data)
        except Exception:
            logger.exception("a room message failed on %s", self._auction_id)
            self._error("internal", "Something went wrong on our side; please try again.")

    async def handle(self, data: str | bytes) -> None:
        try:
            message: ClientMessage = client_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            self._undecodable(data, err)
            return
        except RecursionError:
            self._error("malformed", "This message is nested too deeply to read.")
            return
        if isinstance(message, Ping):
            now = self._app[CLOCK].now_ms()
            self._reply(Pong(client_time_ms=message.client_time_ms, server_time_ms=now))
        elif isinstance(message, Auth):
            await self._auth(message.token)
        elif isinstance(message, Resume):
            await self._resume(message.last_seq)
        elif self._conn.user_id is None:
            self._unauthenticated()
        elif isinstance(message, Max):
            await self._max(message, self._conn.user_id)
        else:
            await self._bid(message, self._conn.user_id)

    def _undecodable(self, data: str | bytes, err: msgspec.MsgspecError) -> None:
        if self._conn.user_id is None:
            try:
                kind = frame_type_decoder.decode(data).type
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                kind = None
            if kind is not None and kind not in GUEST_TYPES:
                self._unauthenticated()  # before any other check, as API.md says
                return
        self._error("malformed", f"This message could not be read: {err}.")

    def over_budget_s(self) -> float:
        """After a refused frame: how long until the next would be taken (else 0)."""
        pause, self._over_budget_s = self._over_budget_s, 0.0
        return pause

    # ---- auth -----------------------------------------------------------------

    async def _auth(self, token: str) -> None:
        settings = self._app[SETTINGS]
        try:
            claims = verify_token_claims(token, settings.jwt_secret)
            caller = await load_caller(self._app[DATABASE].pool, claims.user_id)
        except TokenError:
            caller = None
        except _DATABASE_DOWN as err:
            logger.warning("auth lookup failed: %r", err)
            self._error("unavailable", "Signing in is not possible right now; try again shortly.")
            return
        if caller is None or not caller.is_active:
            self._sign_out()
            self._error(
                "unauthenticated",
                "Sign in again: the token is invalid, expired or not for an active account. "
                "You are watching as a guest.",
            )
            return
        self._identify(caller.user_id)
        self._sign_in_until(claims.expires_at)
        # A snapshot says who this bidder is in the room ("Bidder 3") and where
        # they stand, and `you` the same standing on its own; events since follow.
        await self._send_snapshot(self._conn.room, then_you=True)

    def _identify(self, user_id: uuid.UUID | None) -> None:
        room = self._conn.room
        if room is not None:
            room.identify(self._conn, user_id)
        else:
            self._conn.user_id, self._conn.you = user_id, None

    def _sign_in_until(self, expires_at: float) -> None:
        """The sign-in ends with its token: a timer, so that private messages stop
        then too, not only at the socket's next frame."""
        self._stop_expiry()
        self._signed_in_until = expires_at
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        if self._signed_in_until is None:
            return
        left = self._signed_in_until - time.time()
        if left <= 0:
            self._sign_in_expired()
            return
        # Capped: a far-off `exp` is looked at again later instead of trusting a
        # timer of years (and the loop's clock need not track the wall clock).
        delay = min(left, _EXPIRY_CHECK_S)
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expiry_due)

    def _expiry_due(self) -> None:
        self._expiry = None
        self._arm_expiry()

    def _stop_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _sign_out(self) -> None:
        """A guest again: no bids, and the room forgets this socket as a bidder."""
        self._stop_expiry()
        self._signed_in_until = None
        self._identify(None)

    def _sign_in_expired(self) -> None:
        self._sign_out()
        self._error(
            "unauthenticated",
            "Your sign-in has expired: you are watching as a guest. "
            "Send `auth` with a fresh token to bid again.",
        )

    # ---- resume -------------------------------------------------------------------

    async def _resume(self, last_seq: int) -> None:
        room = self._conn.room
        if room is not None and room.replay_after(self._conn, last_seq):
            return
        await self._send_snapshot(room)  # the events after last_seq are gone

    async def _send_snapshot(self, room: Room | None, *, then_you: bool = False) -> None:
        """The room's snapshot from its memory; from the ledger only where the room
        cannot vouch for its own (read once for all who ask at the time). With
        `then_you`, a signed-in bidder's standing follows it on its own, before any
        event since (API.md: a good `auth` is answered with `you`)."""
        try:
            if self._conn.user_id is not None and not self._conn.knows_you:
                await self._look_up_you(room)
            if room is not None:
                you = self._you(room.status)
                frame = room.snapshot_frame(you, self._app[CLOCK].now_ms())
                if frame is not None:
                    self._rooms.send(self._conn, frame)
                    self._send_you(you if then_you else None)
                    return
                snap = await room.reread(self._ledger_snapshot)
            else:  # not in a room (the node is shutting down)
                snap = await self._ledger_snapshot()
        except _DATABASE_DOWN as err:
            logger.warning("snapshot of %s failed: %r", self._auction_id, err)
            self._error("unavailable", "The room cannot be refreshed right now; try again shortly.")
            return
        if snap is None:
            self._error("not_found", "This auction no longer exists.")
            return
        you = self._you(snap.auction.status)
        self._rooms.send(self._conn, snapshot_frame(snap, you))
        self._send_you(you if then_you else None)
        if room is not None:
            room.replay_after(self._conn, snap.seq)

    def _send_you(self, you: You | None) -> None:
        if you is not None:
            self._reply(YouMessage(you.status, you.max_kobo, you.available_kobo))

    async def _ledger_snapshot(self) -> Snapshot | None:
        return await room_snapshot(self._app, self._auction_id)

    def _you(self, auction_status: str | None) -> You | None:
        """This socket's `you` for a snapshot (None for a guest), with the bidder's
        buying power as the core has it now."""
        user_id = self._conn.user_id
        if user_id is None:
            return None
        you = self._conn.you or You(None, None)
        status = None if auction_status == "cancelled" else you.status  # as the ledger says
        return You(you.handle, status, you.max_kobo, self._sequencer.available_of(user_id))

    async def _look_up_you(self, room: Room | None) -> None:
        """The bidder's handle, standing and maximum, once per sign-in: from the core
        when it holds the auction, else from the ledger. From then on the socket
        keeps it current itself (web.rooms.Connection.you)."""
        conn, user_id = self._conn, self._conn.user_id
        if user_id is None:
            return
        room_seq = room.last_seq if room is not None else None
        found = standing_in_core(self._sequencer, self._auction_id, user_id, room_seq)
        if found is None:
            found = await standing(self._app[DATABASE].pool, self._auction_id, user_id)
            if conn.user_id != user_id:
                return  # signed out, or in as someone else, meanwhile
            heard = conn.you
            if heard is not None and heard.status is not None:  # newer than the read
                found = You(found.handle or heard.handle, heard.status, heard.max_kobo)
        conn.you = found

    # ---- bids -------------------------------------------------------------------

    async def _bid(self, bid: Bid, user_id: uuid.UUID) -> None:
        if await self._within_bid_limit(user_id):
            self._start(self._place(bid, user_id))

    async def _max(self, frame: Max, user_id: uuid.UUID) -> None:
        if await self._within_bid_limit(user_id):  # a maximum counts as a bid
            self._start(self._set_max(frame, user_id))

    async def _within_bid_limit(self, user_id: uuid.UUID) -> bool:
        """WS_BIDS_PER_S per bidder, bids and maximums together; the excess refused."""
        settings = self._app[SETTINGS]
        wait = await self._app[LIMITER].hit(f"ws-bid:{user_id}", settings.ws_bids_per_s, 1.0)
        if wait is not None:
            self._error(
                "rate_limited",
                f"Too many bids: at most {settings.ws_bids_per_s} a second. "
                "Wait a moment and bid again.",
            )
            return False
        return True

    def _start(self, placing: Coroutine[Any, Any, None]) -> None:
        # Its own task: the socket keeps reading (pings, more bids) while the
        # ledger commits. Tasks start in arrival order, so bids are decided in it.
        task = asyncio.create_task(placing)
        self._bids.add(task)
        task.add_done_callback(self._bids.discard)

    async def _place(self, bid: Bid, user_id: uuid.UUID) -> None:
        try:
            outcome = await self._placer.place_bid(
                self._auction_id, user_id, bid.amount_kobo, bid.client_bid_id
            )
        except Exception:
            logger.exception("placing a bid failed")
            self._error(
                "internal",
                "Something went wrong on our side and your bid's outcome is unknown. "
                "Send it again with the same client_bid_id to learn it.",
            )
            return
        if isinstance(outcome, BidAccepted):
            if self._conn.user_id == user_id and not outcome.bid.is_platform:
                self._conn.bid_accepted(bidder_handle(outcome.bid.bidder_number, False))
            result = BidResult(bid.client_bid_id, "accepted", bid=outcome.bid.body())
        else:
            result = BidResult(
                bid.client_bid_id, "rejected", code=outcome.code, message=outcome.message
            )
        self._reply(result)

    async def _set_max(self, frame: Max, user_id: uuid.UUID) -> None:
        amount = whole_kobo(frame.max_kobo)
        if amount is None:  # rule 9, before any other
            refused = rejection("invalid_amount", maximum=True)
            self._reply(
                BidResult(
                    frame.client_bid_id, "rejected", code=refused.code, message=refused.message
                )
            )
            return
        try:
            outcome = await self._placer.set_max(
                self._auction_id, user_id, amount, frame.client_bid_id
            )
        except Exception:
            logger.exception("setting a maximum failed")
            self._error(
                "internal",
                "Something went wrong on our side and your maximum's outcome is unknown. "
                "Send it again with the same client_bid_id to learn it.",
            )
            return
        if isinstance(outcome, MaxAccepted):
            durable = outcome.max
            if self._conn.user_id == user_id:
                self._conn.max_accepted(durable.max_kobo, *_own_standing(durable.bids, user_id))
            result = BidResult(frame.client_bid_id, "accepted", max=durable.body())
        else:
            result = BidResult(
                frame.client_bid_id, "rejected", code=outcome.code, message=outcome.message
            )
        self._reply(result)

    # ---- replies -------------------------------------------------------------------

    def _reply(self, message: ServerMessage) -> None:
        self._rooms.send(self._conn, text_frame(encode(message)))

    def _error(self, code: str, message: str) -> None:
        self._reply(ErrorMessage(code=code, message=message))

    def _unauthenticated(self) -> None:
        self._error("unauthenticated", "Sign in to bid: send `auth` with your token first.")


def _own_standing(
    rows: Sequence[DurableBid], user_id: uuid.UUID
) -> tuple[str | None, YouStatus | None]:
    """The bidder's handle and status after the rows their maximum placed (none: a
    raise by the leader or a pre-bid, which change neither)."""
    handle: str | None = None
    status: YouStatus | None = None
    for row in rows:
        if row.user_id == user_id:
            handle, status = bidder_handle(row.bidder_number, False), "winning"
        elif row.previous_leader == user_id:
            status = "outbid"
    return handle, status


# ---- snapshots --------------------------------------------------------------------


async def room_snapshot(app: web.Application, auction_id: uuid.UUID) -> Snapshot | None:
    return await auctions.snapshot(
        app[DATABASE].pool, app[SEQUENCER], auction_id, app[CLOCK].now_ms()
    )
