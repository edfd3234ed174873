"""A room's memory, unit-tested with a fake transport: a socket that joins with a
snapshot older than what the room has since caught up to is not left behind."""

from __future__ import annotations

import json
import uuid
from typing import Any

from engine.auctions import RecentBid, Snapshot, SnapshotAuction, SnapshotVehicle
from web.rooms import Connection, Room, RoomTuning, snapshot_frame

NOW_MS = 1_800_000_000_000


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return None


def payloads(written: list[bytes]) -> list[dict[str, Any]]:
    """The JSON of every WebSocket text frame written (server frames: unmasked)."""
    data, messages = b"".join(written), []
    while data:
        length, start = data[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(data[2:4]), 4
        elif length == 127:
            length, start = int.from_bytes(data[2:10]), 10
        messages.append(json.loads(data[start : start + length]))
        data = data[start + length :]
    return messages


def snapshot(auction_id: uuid.UUID, seq: int, price: int) -> Snapshot:
    return Snapshot(
        seq=seq,
        server_time_ms=NOW_MS,
        auction=SnapshotAuction(
            auction_id, "live", price, price + 50, 50, NOW_MS - 60_000, NOW_MS + 60_000, 1, 1, None
        ),
        vehicle=SnapshotVehicle(
            uuid.uuid4(), 2020, "Toyota", "Camry", "sedan", 1, "red", "used", "Lagos"
        ),
        recent_bids=[RecentBid(price, "Bidder 1", False, NOW_MS - 1_000)],
    )


def test_a_socket_joining_with_a_snapshot_the_room_has_caught_up_past_gets_the_rooms() -> None:
    auction = uuid.uuid4()
    tuning = RoomTuning(socket_send_buffer=None)
    room = Room(auction, snapshot(auction, 5, 1_000), tuning)
    old = snapshot(auction, 5, 1_000)  # read for the socket, then...
    assert room.catch_up(snapshot(auction, 7, 1_100), NOW_MS)  # ... the room jumped past it
    transport = FakeTransport()
    conn = Connection(None, transport, tuning)  # type: ignore[arg-type]

    room.add(conn, snapshot_frame(old, None), old.seq, NOW_MS)

    frames = payloads(transport.written)
    assert [f["seq"] for f in frames] == [5, 7]
    assert frames[-1]["auction"]["current_price_kobo"] == 1_100
