"""Auction rooms: every socket watching an auction on this node, and the fan-out.

Each room event is encoded once (JSON, by the process that committed it), framed
once per node (one WebSocket text frame: header + payload), and the same bytes
are written to every socket of the room, synchronously, with no coroutine per
socket. A commit of several bids for one room is written as one buffer per
socket. A socket's send queue is its transport's write buffer, bounded in bytes;
a client that lets it fill is dropped with close code 1013 and counted, so it
never slows the others (the kernel send buffer is capped too, or a stuck
client would hide megabytes in it before anyone noticed).

Room events carry the auction's `seq`; a room delivers them in `seq` order,
once each, holding an early one briefly (bids and the core's state changes
arrive in commit order, but the end processing, staff actions and other nodes
publish on their own), and keeps the last few hundred for `resume`.

A room also keeps the snapshot of what it has delivered: the first joiner's
snapshot from the ledger, with each event applied as it goes out. A `resume`
past the kept events, or an `auth`, is answered from it without a query; a
socket is only ever sent that snapshot at the room's own `seq`, so the events
after it follow in order as for everyone. Where the room cannot vouch for it (a
gap it sent on, or a status the ledger may leave without an event) it is read
from the ledger again, once for all the sockets asking.

Events come from the sequencer's listeners (committed bids and state changes:
open, extend, cancel, close), from `publish_state` and `publish_ended` (the end
processing's result, staff actions, settlement: each with the seq after the
last), and from other nodes over the bus.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from engine.auctions import RECENT_BIDS, RecentBid, Snapshot, SnapshotAuction, You, YouStatus
from engine.bids import DurableBid, DurableMax
from engine.roles import PLATFORM_USER_ID
from engine.state_changes import StateChange
from web.bus import Bus, BusMessage, LocalBus
from web.frames import close_frame, text_frame
from web.ws_messages import (
    BidEvent,
    EndedEvent,
    RoomEvent,
    SnapshotMessage,
    StateEvent,
    YouMessage,
    bidder_handle,
    encode,
)

logger = logging.getLogger(__name__)

CONNECTIONS = Gauge("auction_ws_connections", "Open auction-room WebSockets on this node.")
MESSAGES_SENT = Counter(
    "auction_ws_messages_sent_total", "WebSocket messages written to clients (all types)."
)
SLOW_CLIENTS_DROPPED = Counter(
    "auction_ws_slow_clients_dropped_total",
    "Sockets closed with 1013 because their send queue was full.",
)
FANOUT_SECONDS = Histogram(
    "auction_fanout_seconds",
    "From a room event's commit to its last socket written on this node.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

ReserveOf = Callable[[uuid.UUID], int | None]


class Standings(Protocol):
    """What a private `you` tells a bidder besides their status, as the engine has
    it when the message goes out (the sequencer has this shape)."""

    def max_of(self, auction_id: uuid.UUID, user_id: uuid.UUID) -> int | None: ...

    def available_of(self, user_id: uuid.UUID) -> int | None: ...


class LedgerSnapshots(Protocol):
    """Where a room reads its auction's snapshot from the ledger, and the time."""

    async def snapshot(self, auction_id: uuid.UUID) -> Snapshot | None: ...

    async def last_seqs(self, auction_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]: ...

    def now_ms(self) -> int: ...


class _NoStandings:
    def max_of(self, auction_id: uuid.UUID, user_id: uuid.UUID) -> int | None:
        return None

    def available_of(self, user_id: uuid.UUID) -> int | None:
        return None


GOING_AWAY = 1001
TRY_AGAIN_LATER = 1013

#: After a resubscription, rooms are checked against the ledger this long later,
#: in one read for every room a burst of resubscriptions concerns.
SUSPECTS_GATHER_S = 0.05


@dataclass(frozen=True, slots=True)
class RoomTuning:
    """Fan-out limits; a test or a deployment may set its own under ROOM_TUNING."""

    send_queue_bytes: int = 256 * 1024  # a socket's write buffer beyond this: dropped (1013)
    socket_send_buffer: int | None = 64 * 1024  # SO_SNDBUF per socket (None: the kernel's)
    replay_events: int = 512  # room events kept per room for `resume`
    reorder_hold_s: float = 0.5  # how long an early event waits for the one before it
    heartbeat_s: float = 20.0  # ping every so often; no pong within half of it: closed
    drop_grace_s: float = 5.0  # a dropped client gets this long to read its close frame
    settling_reread_s: float = 1.0  # a sold room's snapshot is re-read at most this often


_room_event = msgspec.json.Decoder(RoomEvent).decode
_you_message = msgspec.json.Decoder(YouMessage).decode

#: A sold auction's status: a payment settles it in the ledger without a room
#: event, so the room's memory of it is re-read rather than trusted.
_CHANGES_UNANNOUNCED = frozenset({"pending_settlement"})


def snapshot_frame(snap: Snapshot, you: You | None) -> bytes:
    """A ledger snapshot, tagged `snapshot`, with this socket's `you`."""
    return _snapshot_frame(
        snap.seq,
        snap.server_time_ms,
        msgspec.json.encode(snap.auction),
        msgspec.json.encode(snap.vehicle),
        msgspec.json.encode(snap.recent_bids),
        you,
    )


def _snapshot_frame(
    seq: int,
    server_time_ms: int,
    auction: bytes,
    vehicle: bytes,
    recent_bids: bytes,
    you: You | None,
) -> bytes:
    message = SnapshotMessage(
        seq=seq,
        server_time_ms=server_time_ms,
        auction=msgspec.Raw(auction),
        vehicle=msgspec.Raw(vehicle),
        recent_bids=msgspec.Raw(recent_bids),
        you=you,
    )
    return text_frame(encode(message))


# ---- one socket ----------------------------------------------------------------


class Connection:
    """One client socket: writes go straight to its transport, never waiting."""

    __slots__ = ("_grace_s", "_limit", "closed", "room", "transport", "user_id", "ws", "you")

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, tuning: RoomTuning
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.user_id: uuid.UUID | None = None
        #: The bidder's `you` as this socket last learnt it (its buying power is
        #: read afresh for each snapshot); None: not known (look it up before a
        #: snapshot). A status without a handle: they bid, but not from here, so
        #: the handle is still to be looked up.
        self.you: You | None = None
        self.room: Room | None = None
        self.closed = False
        self._limit = tuning.send_queue_bytes
        self._grace_s = tuning.drop_grace_s
        if tuning.socket_send_buffer is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, tuning.socket_send_buffer)

    def send(self, data: bytes) -> bool:
        """Queue `data` (whole frames); False if the socket is gone or was just dropped."""
        if self.closed:
            return False
        transport = self.transport
        if transport.is_closing():
            self.closed = True
            return False
        if transport.get_write_buffer_size() + len(data) > self._limit:
            SLOW_CLIENTS_DROPPED.inc()
            logger.info("dropped a slow client of room %s (send queue full)", self._room_name())
            self.close(TRY_AGAIN_LATER, "too slow: reconnect", grace_s=self._grace_s)
            return False
        transport.write(data)
        return True

    @property
    def knows_you(self) -> bool:
        """Whether `you` can go into a snapshot as it is."""
        you = self.you
        return you is not None and (you.handle is not None or you.status is None)

    def heard(self, you: YouMessage | None) -> None:
        """A private `you` went out on this socket: keep its status and maximum
        (None: one this socket cannot read, so look `you` up again)."""
        if you is None:
            self.you = None
            return
        handle = self.you.handle if self.you is not None else None
        self.you = You(handle, you.status, you.max_kobo)

    def bid_accepted(self, handle: str) -> None:
        """This socket's own bid went in: the bidder has a handle now. The status
        stays as the private `you` messages (sent before the bid's result) left
        it; none yet (they travel apart from it between nodes) means winning
        until one comes."""
        you = self.you
        if you is not None:
            self.you = You(handle, you.status or "winning", you.max_kobo)

    def max_accepted(self, max_kobo: int, handle: str | None, status: YouStatus | None) -> None:
        """This socket's own maximum went in: it is the bidder's maximum now, with
        the handle its rows gave them (if any). The status stays as the private
        `you` messages left it; none yet means the maximum's own (`status`)."""
        you = self.you
        if you is not None:
            self.you = You(handle or you.handle, you.status or status, max_kobo)

    def close(self, code: int, reason: str, *, grace_s: float) -> None:
        """Send a close frame after what is queued and let go of the socket; a peer
        that does not read it within `grace_s` is cut off."""
        if self.closed:
            return
        self.closed = True
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(close_frame(code, reason))
        transport.close()
        asyncio.get_running_loop().call_later(grace_s, transport.abort)

    def _room_name(self) -> str:
        return str(self.room.auction_id) if self.room is not None else "-"


# ---- one room -------------------------------------------------------------------


class Room:
    """The sockets of one auction on this node, its recent events, its order, and
    the snapshot of what it has delivered."""

    def __init__(self, auction_id: uuid.UUID, first: Snapshot, tuning: RoomTuning) -> None:
        self.auction_id = auction_id
        self._tuning = tuning
        self._conns: dict[Connection, None] = {}
        self._bidders: dict[uuid.UUID, set[Connection]] = {}
        self._buffer: collections.deque[tuple[int, bytes]] = collections.deque()
        self.last_seq = first.seq  # the last event delivered (or the first joiner's snapshot)
        self._covered_from = first.seq  # every event after this seq is in the buffer
        self._held: dict[int, bytes] = {}  # seq -> encoded event
        self._hold_timer: asyncio.TimerHandle | None = None
        # The snapshot at last_seq: None while the room cannot vouch for it.
        self._auction: SnapshotAuction | None = None
        self._recent: collections.deque[RecentBid] = collections.deque(maxlen=RECENT_BIDS)
        self._read_at = -math.inf  # when the ledger last confirmed it (monotonic)
        self._encoded: tuple[int, bytes, bytes] | None = None  # (seq, auction, recent_bids)
        self._vehicle = msgspec.json.encode(first.vehicle)  # it does not change
        self._rereading: asyncio.Task[Snapshot | None] | None = None
        self.adopt(first)

    def __len__(self) -> int:
        return len(self._conns)

    # sockets

    def add(self, conn: Connection, snapshot_frame: bytes, snapshot_seq: int, now_ms: int) -> None:
        """Send the snapshot, then what happened since it, then join the live feed:
        with no await in between, so nothing falls through the cracks. If what
        happened since is gone (the room caught up past the snapshot while it was
        read), the room's own snapshot follows it."""
        conn.room = self
        if conn.send(snapshot_frame):
            MESSAGES_SENT.inc()
            if not self.replay_after(conn, snapshot_seq) and not self._held:
                frame = self.snapshot_frame(None, now_ms)
                if frame is not None and conn.send(frame):
                    MESSAGES_SENT.inc()
        self._conns[conn] = None
        if conn.user_id is not None:
            self._bidders.setdefault(conn.user_id, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        self._conns.pop(conn, None)
        self.forget_bidder(conn)

    def identify(self, conn: Connection, user_id: uuid.UUID | None) -> None:
        """The socket now speaks for `user_id` (None: a guest again); its `you` is
        to be looked up."""
        self.forget_bidder(conn)
        conn.user_id = user_id
        conn.you = None
        if user_id is not None and conn in self._conns:
            self._bidders.setdefault(user_id, set()).add(conn)

    def forget_bidder(self, conn: Connection) -> None:
        if conn.user_id is None:
            return
        sockets = self._bidders.get(conn.user_id)
        if sockets is not None:
            sockets.discard(conn)
            if not sockets:
                del self._bidders[conn.user_id]

    def connections(self) -> list[Connection]:
        return list(self._conns)

    # resume

    def replay_after(self, conn: Connection, seq: int) -> bool:
        """Send `conn` every buffered event after `seq`; False if some are gone."""
        if self._held:
            return False  # the room itself waits on a missing event: a snapshot is exact
        if seq >= self.last_seq:
            return True
        if seq < self._covered_from:
            return False
        frames = [frame for event_seq, frame in self._buffer if event_seq > seq]
        if frames and conn.send(b"".join(frames)):
            MESSAGES_SENT.inc(len(frames))
        return True

    # the snapshot in memory

    def snapshot_frame(self, you: You | None, now_ms: int) -> bytes | None:
        """The room's snapshot at `last_seq` with this socket's `you`, or None when
        the room cannot vouch for it (`reread` it from the ledger)."""
        auction = self._auction
        if auction is None:
            return None
        if (
            auction.status in _CHANGES_UNANNOUNCED
            and time.monotonic() - self._read_at > self._tuning.settling_reread_s
        ):
            return None
        encoded = self._encoded
        if encoded is None or encoded[0] != self.last_seq:
            encoded = self._encoded = (
                self.last_seq,
                msgspec.json.encode(auction),
                msgspec.json.encode(list(self._recent)),
            )
        return _snapshot_frame(self.last_seq, now_ms, encoded[1], self._vehicle, encoded[2], you)

    @property
    def status(self) -> str | None:
        """The auction's status as the room last showed it (None: not known)."""
        return self._auction.status if self._auction is not None else None

    def adopt(self, snap: Snapshot) -> None:
        """Take a ledger snapshot as the room's memory if it shows exactly the state
        the room has delivered (the same seq, nothing held back)."""
        if snap.seq != self.last_seq or self._held:
            return
        self._auction = snap.auction
        self._recent = collections.deque(snap.recent_bids, maxlen=RECENT_BIDS)
        self._read_at = time.monotonic()
        self._encoded = None

    def catch_up(self, snap: Snapshot, now_ms: int) -> bool:
        """A ledger snapshot ahead of what the room has delivered, and the events
        between are not coming (their owner died before publishing them): every
        socket gets the snapshot (API.md: a snapshot when events cannot be had),
        and the room goes on from its seq. False when the room was not behind."""
        if snap.seq <= self.last_seq:
            return False
        self._held = {seq: event for seq, event in self._held.items() if seq > snap.seq}
        self.last_seq = self._covered_from = snap.seq
        self._buffer.clear()
        self.adopt(snap)
        for conn in list(self._conns):
            frame = _snapshot_frame(
                snap.seq,
                now_ms,
                msgspec.json.encode(snap.auction),
                self._vehicle,
                msgspec.json.encode(snap.recent_bids),
                conn.you if conn.knows_you else None,
            )
            if conn.send(frame):
                MESSAGES_SENT.inc()
            else:
                self.remove(conn)
        self.receive(())  # held events that now follow in order
        return True

    async def reread(self, load: Callable[[], Awaitable[Snapshot | None]]) -> Snapshot | None:
        """A snapshot from the ledger (`load`), read once for every socket asking at
        the same time, and adopted if it fits. It may be ahead of the room: send
        it, then `replay_after` its seq."""
        if self._rereading is None:
            self._rereading = asyncio.create_task(self._reread(load))
            self._rereading.add_done_callback(_retrieved)
        # Shielded: a socket that leaves while waiting does not cancel the others' read.
        return await asyncio.shield(self._rereading)

    async def _reread(self, load: Callable[[], Awaitable[Snapshot | None]]) -> Snapshot | None:
        try:
            snap = await load()
        finally:
            self._rereading = None
        if snap is not None:
            self.adopt(snap)
        return snap

    def _forget_snapshot(self) -> None:
        self._auction = None
        self._encoded = None

    def _apply(self, payload: bytes) -> None:
        """Bring the memory to the event just delivered."""
        auction = self._auction
        if auction is None:
            return
        try:
            event = _room_event(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.warning("room %s: an event it cannot read; snapshot re-read", self.auction_id)
            self._forget_snapshot()
            return
        if isinstance(event, BidEvent):
            if (event.reserve_met is None) != (auction.reserve_met is None):
                # Published where the reserve was not known: the ledger can say.
                self._forget_snapshot()
                return
            self._auction = msgspec.structs.replace(
                auction,
                current_price_kobo=event.amount_kobo,
                min_next_bid_kobo=event.min_next_bid_kobo,
                end_time_ms=event.end_time_ms,
                bid_count=event.bid_count,
                bidder_count=event.bidder_count,
                reserve_met=event.reserve_met,
            )
            self._recent.appendleft(
                RecentBid(
                    event.amount_kobo,
                    event.bidder,
                    event.is_platform_bid,
                    event.at_ms,
                    event.is_proxy,
                    event.hash,
                )
            )
        elif isinstance(event, StateEvent):
            self._auction = msgspec.structs.replace(
                auction, status=event.status, end_time_ms=event.end_time_ms
            )
        else:  # the end processing's result (engine.ending.end_auction)
            status = {"sold": "pending_settlement"}.get(event.result, event.result)
            self._auction = msgspec.structs.replace(auction, status=status)
            self._read_at = -math.inf  # a sale may have settled at once

    # events

    def receive(self, events: Iterable[tuple[int, bytes]]) -> int:
        """Take room events (seq, encoded); send what is in order; return frames sent."""
        ready: list[bytes] = []
        for seq, payload in events:
            if seq <= self.last_seq:
                continue  # already delivered (or older than this room's first snapshot)
            if seq == self.last_seq + 1:
                self._append(seq, payload, ready)
                while (held := self._held.pop(self.last_seq + 1, None)) is not None:
                    self._append(self.last_seq + 1, held, ready)
            else:
                self._held[seq] = payload
        if self._held and self._hold_timer is None:
            loop = asyncio.get_running_loop()
            self._hold_timer = loop.call_later(self._tuning.reorder_hold_s, self._release)
        elif not self._held and self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if ready:
            self.broadcast(b"".join(ready) if len(ready) > 1 else ready[0], len(ready))
        return len(ready)

    def _release(self) -> None:
        """The events before the held ones never came: send the held ones, with the gap
        (clients see it and `resume`, which gives them a fresh snapshot)."""
        self._hold_timer = None
        ready: list[bytes] = []
        for seq in sorted(self._held):
            if seq > self.last_seq:
                self._append(seq, self._held[seq], ready)
        self._held.clear()
        if ready:
            logger.warning("room %s: sent events after a seq gap", self.auction_id)
            self.broadcast(b"".join(ready), len(ready))

    def _append(self, seq: int, payload: bytes, ready: list[bytes]) -> None:
        if seq != self.last_seq + 1:
            self._covered_from = seq - 1
            self._forget_snapshot()  # it lacks the missing events: re-read when asked
        else:
            self._apply(payload)
        frame = text_frame(payload)
        self._buffer.append((seq, frame))
        if len(self._buffer) > self._tuning.replay_events:
            evicted, _ = self._buffer.popleft()
            self._covered_from = max(self._covered_from, evicted)
        self.last_seq = seq
        ready.append(frame)

    def broadcast(self, data: bytes, frames: int) -> None:
        """The same bytes to every socket of the room; slow ones are dropped."""
        gone: list[Connection] | None = None
        sent = 0
        for conn in self._conns:
            if conn.send(data):
                sent += 1
            else:
                gone = gone or []
                gone.append(conn)
        if gone is not None:
            for conn in gone:
                self.remove(conn)
        MESSAGES_SENT.inc(sent * frames)

    def send_to(self, user_ids: Iterable[str], payload: bytes) -> None:
        """A message for some bidders alone (`you`), on every socket they have here."""
        data = text_frame(payload)
        read, you = False, None
        for user_id in user_ids:
            sockets = self._bidders.get(uuid.UUID(user_id))
            if sockets:
                if not read:
                    read, you = True, _read_you(payload)
                for conn in list(sockets):
                    if conn.send(data):
                        MESSAGES_SENT.inc()
                    conn.heard(you)


def _read_you(payload: bytes) -> YouMessage | None:
    try:
        return _you_message(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # sent on as it is; the socket looks its `you` up again


def _retrieved(task: asyncio.Task[Snapshot | None]) -> None:
    """A re-read whose every asker left still has its failure looked at (and logged)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.debug("a room snapshot re-read failed: %r", error)


# ---- every room on this node -----------------------------------------------------


class Rooms:
    """This node's rooms, and the one way events reach them: the bus."""

    def __init__(
        self,
        tuning: RoomTuning,
        reserve_of: ReserveOf | None = None,
        standings: Standings | None = None,
        ledger: LedgerSnapshots | None = None,
    ) -> None:
        self.tuning = tuning
        self._ledger = ledger
        self._catching_up: set[asyncio.Task[None]] = set()
        self._suspects: set[uuid.UUID] = set()  # rooms whose events may have been missed
        self._checking: asyncio.Task[None] | None = None
        self._reserve_of = reserve_of or (lambda auction_id: None)
        self._standings: Standings = standings or _NoStandings()
        self._rooms: dict[uuid.UUID, Room] = {}
        self._bus: Bus = LocalBus(self.deliver)
        self._closing = False

    @property
    def bus(self) -> Bus:
        return self._bus

    def use_bus(self, bus: Bus) -> None:
        self._bus = bus

    def room(self, auction_id: uuid.UUID) -> Room | None:
        return self._rooms.get(auction_id)

    # sockets

    @contextlib.asynccontextmanager
    async def following(self, auction_id: uuid.UUID) -> AsyncIterator[None]:
        """Around one socket's life: other nodes' events for its room reach this
        node (on a Redis Cluster, a subscription per room, made before the socket
        reads its snapshot, so no event falls between the two)."""
        key = str(auction_id)
        await self._bus.follow(key)
        try:
            yield
        finally:
            self._bus.unfollow(key)

    def join(self, auction_id: uuid.UUID, conn: Connection, snap: Snapshot, now_ms: int) -> Room:
        """Add a guest socket to its room with the snapshot read for it (the room's
        first, or one the room may adopt)."""
        if self._closing:
            conn.close(GOING_AWAY, "server shutting down", grace_s=1.0)
        room = self._rooms.get(auction_id)
        if room is None:
            room = self._rooms[auction_id] = Room(auction_id, snap, self.tuning)
        else:
            room.adopt(snap)
        room.add(conn, snapshot_frame(snap, None), snap.seq, now_ms)
        CONNECTIONS.inc()
        return room

    def remembers(self, auction_id: uuid.UUID, now_ms: int) -> bool:
        """Whether the room is here and can vouch for its snapshot: a socket joining
        a room others watch then costs no ledger read (`join_remembered`)."""
        room = self._rooms.get(auction_id)
        return room is not None and room.snapshot_frame(None, now_ms) is not None

    def join_remembered(self, auction_id: uuid.UUID, conn: Connection, now_ms: int) -> bool:
        """Add a guest socket with the room's snapshot from memory, as it is now;
        False if the room cannot give one any more (its last socket left, or its
        state is to be read again: the caller reads the ledger instead)."""
        room = self._rooms.get(auction_id)
        frame = room.snapshot_frame(None, now_ms) if room is not None else None
        if room is None or frame is None:
            return False
        if self._closing:
            conn.close(GOING_AWAY, "server shutting down", grace_s=1.0)
        room.add(conn, frame, room.last_seq, now_ms)
        CONNECTIONS.inc()
        return True

    def leave(self, conn: Connection) -> None:
        room = conn.room
        if room is None:
            return
        conn.room = None
        room.remove(conn)
        CONNECTIONS.dec()
        if not len(room) and self._rooms.get(room.auction_id) is room:
            del self._rooms[room.auction_id]

    def send(self, conn: Connection, frame: bytes) -> None:
        """A message for this socket alone (reply, error, snapshot)."""
        if conn.send(frame):
            MESSAGES_SENT.inc()

    def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> None:
        self._closing = True
        if self._checking is not None:
            self._checking.cancel()
        for room in list(self._rooms.values()):
            for conn in room.connections():
                conn.close(code, reason, grace_s=1.0)

    # events in: what the sequencer committed and what the scheduler decided

    def publish_bids(self, bids: Sequence[DurableBid]) -> None:
        """The sequencer's listener: one committed batch, in commit order."""
        committed_ns = time.time_ns()
        by_auction: dict[uuid.UUID, list[DurableBid]] = {}
        for bid in bids:
            by_auction.setdefault(bid.auction_id, []).append(bid)
        for auction_id, room_bids in by_auction.items():
            reserve = self._reserve_of(auction_id)
            events = [(bid.seq, encode(_bid_event(bid, reserve))) for bid in room_bids]
            self._bus.publish(
                BusMessage(
                    origin=self._bus.node_id,
                    auction_id=str(auction_id),
                    committed_ns=committed_ns,
                    events=events,
                    private=self._statuses(auction_id, room_bids),
                )
            )

    def publish_max(self, durable_max: DurableMax) -> None:
        """The sequencer's listener of maximums: the bidder's other sockets (and
        those of a maximum set over REST) learn it. One that placed rows was told
        with them (`publish_bids`, the maximum included)."""
        if durable_max.bids:
            return
        # No rows: a leader raising their maximum (still winning), or a pre-bid,
        # which places none until the auction opens.
        status: YouStatus | None = None if durable_max.prebid else "winning"
        you = self._you(durable_max.auction_id, durable_max.user_id, status)
        self._publish(durable_max.auction_id, [], [([str(durable_max.user_id)], you)])

    def publish_change(self, change: StateChange) -> None:
        """The sequencer's state listener: opened, extended, cancelled, closed —
        committed in order with the bids. (The result follows the close as its own
        event, `ended`, with the next seq: `publish_ended`.)"""
        self.publish_state(change.auction_id, change.seq, change.status, change.end_time_ms)

    def publish_state(self, auction_id: uuid.UUID, seq: int, status: str, end_time_ms: int) -> None:
        """A state change for the room. Idempotent by seq: one the room already
        has (say, from the sequencer's own state listener) is not sent again."""
        event = encode(StateEvent(seq=seq, status=status, end_time_ms=end_time_ms))
        self._publish(auction_id, [(seq, event)], [])

    def publish_ended(
        self,
        auction_id: uuid.UUID,
        seq: int,
        result: str,
        final_price_kobo: int | None,
        winner_handle: str | None,
        winner_user_id: uuid.UUID | None,
        loser_user_ids: Iterable[uuid.UUID],
    ) -> None:
        """The result for the room; `won` to the winner and `lost` to every other
        bidder. With `seller_decision` (the if-bid) `winner_user_id` is the high
        bidder, who is told `seller_decision`, and the room sees no winner."""
        if result not in ("sold", "unsold", "seller_decision"):
            raise ValueError(f"an auction ends sold, unsold or seller_decision, not {result!r}")
        ended: Literal["sold", "unsold", "seller_decision"] = "unsold"
        if result in ("sold", "seller_decision"):
            ended = "sold" if result == "sold" else "seller_decision"
        event = encode(
            EndedEvent(
                seq=seq,
                result=ended,
                final_price_kobo=final_price_kobo,
                winner=winner_handle if ended == "sold" else None,
            )
        )
        private: list[tuple[list[str], bytes]] = []
        if winner_user_id is not None:
            status: YouStatus = "won" if ended == "sold" else "seller_decision"
            private.append(([str(winner_user_id)], self._you(auction_id, winner_user_id, status)))
        for user_id in loser_user_ids:
            if user_id != winner_user_id:
                private.append(([str(user_id)], self._you(auction_id, user_id, "lost")))
        self._publish(auction_id, [(seq, event)], private)

    def publish_decided(
        self,
        auction_id: uuid.UUID,
        seq: int,
        status: str,
        end_time_ms: int,
        bidder_id: uuid.UUID,
        won: bool,
    ) -> None:
        """An if-bid decided: the room's `state` event (`pending_settlement` or
        `settled` when accepted, `unsold` otherwise), and `won` or `lost` to the
        high bidder."""
        event = encode(StateEvent(seq=seq, status=status, end_time_ms=end_time_ms))
        you = self._you(auction_id, bidder_id, "won" if won else "lost")
        self._publish(auction_id, [(seq, event)], [([str(bidder_id)], you)])

    def _you(self, auction_id: uuid.UUID, user_id: uuid.UUID, status: YouStatus | None) -> bytes:
        standings = self._standings
        return encode(
            YouMessage(
                status=status,
                max_kobo=standings.max_of(auction_id, user_id),
                available_kobo=standings.available_of(user_id),
            )
        )

    def _statuses(
        self, auction_id: uuid.UUID, bids: Sequence[DurableBid]
    ) -> list[tuple[list[str], bytes]]:
        """`winning` to each new leader, `outbid` to each bidder they displaced: the
        status each bidder ends this commit with, once, with their maximum and
        buying power."""
        status: dict[uuid.UUID, YouStatus] = {}
        for bid in bids:
            if bid.previous_leader is not None and bid.previous_leader != PLATFORM_USER_ID:
                status[bid.previous_leader] = "outbid"
            if not bid.is_platform:
                status[bid.user_id] = "winning"
        return [
            ([str(user_id)], self._you(auction_id, user_id, value))
            for user_id, value in status.items()
        ]

    def _publish(
        self,
        auction_id: uuid.UUID,
        events: list[tuple[int, bytes]],
        private: list[tuple[list[str], bytes]],
    ) -> None:
        self._bus.publish(
            BusMessage(
                origin=self._bus.node_id,
                auction_id=str(auction_id),
                committed_ns=time.time_ns(),
                events=events,
                private=private,
            )
        )

    # events out: from the bus to this node's sockets

    def _catch_up(self, room: Room) -> None:
        """The room is behind its auction's new owner: read the ledger's snapshot
        (once, for the room) and send it to the room's sockets."""
        ledger = self._ledger
        if ledger is None:
            return
        load = functools.partial(ledger.snapshot, room.auction_id)

        async def catch_up() -> None:
            snap = await room.reread(load)
            if snap is not None and room.catch_up(snap, ledger.now_ms()):
                logger.info(
                    "room %s caught up with its new owner at seq %d", room.auction_id, snap.seq
                )

        task = asyncio.create_task(catch_up())
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)
        task.add_done_callback(_caught_up)

    def may_have_missed(self, auction_ids: Iterable[str] | None) -> None:
        """The bus's listener of a subscription made again (Redis was away, or a
        cluster moved the rooms' slots): events published meanwhile never came, and
        may be the last ones for a while. A room that the ledger shows behind is
        caught up now (a snapshot to its sockets) rather than at its next event.
        `auction_ids` None: every room here."""
        if self._ledger is None:
            return
        if auction_ids is None:
            self._suspects.update(self._rooms)
        else:
            self._suspects.update(uuid.UUID(a) for a in auction_ids)
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check_suspects())

    async def _check_suspects(self) -> None:
        ledger = self._ledger
        assert ledger is not None
        await asyncio.sleep(SUSPECTS_GATHER_S)  # one read for a burst of resubscriptions
        suspects = [a for a in self._suspects if a in self._rooms]
        self._suspects.clear()
        try:
            seqs = await ledger.last_seqs(suspects)
        except Exception:
            logger.exception("rooms not checked against the ledger after a resubscription")
            return
        for auction_id, seq in seqs.items():
            room = self._rooms.get(auction_id)
            if room is not None and seq > room.last_seq:
                self._catch_up(room)

    def publish_loaded(self, loaded: Sequence[tuple[uuid.UUID, int]]) -> None:
        """The sequencer's listener of auctions it took (a partition taken, a
        start): each one's seq as rebuilt from the ledger, for rooms on every node
        that may be behind it (events their previous owner committed but never
        published, having died)."""
        committed_ns = time.time_ns()
        for auction_id, seq in loaded:
            self._bus.publish(
                BusMessage(self._bus.node_id, str(auction_id), committed_ns, [], [], seq)
            )

    def deliver(self, message: BusMessage) -> None:
        room = self._rooms.get(uuid.UUID(message.auction_id))
        if room is None:
            return
        if message.seq_now is not None:
            if message.seq_now > room.last_seq:
                self._catch_up(room)
            return
        sent = room.receive(message.events)
        for user_ids, payload in message.private:
            room.send_to(user_ids, payload)
        if sent or message.private:
            FANOUT_SECONDS.observe(max(time.time_ns() - message.committed_ns, 0) / 1e9)


def _caught_up(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("a room could not catch up with the ledger: %r", error)


def _bid_event(bid: DurableBid, reserve_kobo: int | None) -> BidEvent:
    return BidEvent(
        seq=bid.seq,
        amount_kobo=bid.amount_kobo,
        bidder=bidder_handle(bid.bidder_number, bid.is_platform),
        is_platform_bid=bid.is_platform,
        is_proxy=bid.is_proxy,
        at_ms=bid.at_ms,
        end_time_ms=bid.end_time_ms,
        extended=bid.extended,
        min_next_bid_kobo=bid.min_next_bid_kobo,
        bid_count=bid.bid_count,
        bidder_count=bid.bidder_count,
        reserve_met=None if reserve_kobo is None else bid.amount_kobo >= reserve_kobo,
        hash=bid.hash.hex() if bid.hash is not None else None,
    )
