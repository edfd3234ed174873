"""The WebSocket messages of API.md, as msgspec structs tagged on `type`.

Client frames are decoded once, strictly, into `ClientMessage` (an integral number
such as `1e3` being the integer it is: web/json_numbers.py); every server
message is encoded once into bytes (a room event once for the whole room).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from engine.auctions import You, YouStatus
from engine.bids import BidBody, MaxBody
from web.json_numbers import IntegralDecoder

# ---- client → server ---------------------------------------------------------


class Auth(msgspec.Struct, frozen=True, tag="auth", tag_field="type"):
    token: str


ClientBidId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class Bid(msgspec.Struct, frozen=True, tag="bid", tag_field="type"):
    # Any integer: the core answers `invalid_amount` for one out of range.
    amount_kobo: int
    client_bid_id: ClientBidId


class Max(msgspec.Struct, frozen=True, tag="max", tag_field="type"):
    """Set or raise a maximum. The amount stays raw until checked, so that any
    wrong amount (a fraction, a string, a huge number) is answered with the
    rule's `invalid_amount` and its client_bid_id, as over REST."""

    max_kobo: msgspec.Raw
    client_bid_id: ClientBidId


class Resume(msgspec.Struct, frozen=True, tag="resume", tag_field="type"):
    last_seq: int


class Ping(msgspec.Struct, frozen=True, tag="ping", tag_field="type"):
    client_time_ms: int


ClientMessage = Auth | Bid | Max | Resume | Ping

#: What a guest may send; anything else gets `unauthenticated` before any other check.
GUEST_TYPES = frozenset({"auth", "resume", "ping"})


class FrameType(msgspec.Struct, frozen=True):
    """Only the `type` of a frame that failed to decode (to answer a guest first)."""

    type: str | None = None


# ---- server → client ---------------------------------------------------------


class SnapshotMessage(msgspec.Struct, frozen=True, tag="snapshot", tag_field="type"):
    """The room as it stands. `auction` and `recent_bids` are the REST snapshot's
    own JSON, carried as is so both always say the same."""

    seq: int
    server_time_ms: int
    auction: msgspec.Raw
    vehicle: msgspec.Raw
    recent_bids: msgspec.Raw
    you: You | None


class BidEvent(msgspec.Struct, frozen=True, tag="bid", tag_field="type"):
    seq: int
    amount_kobo: int
    bidder: str  # "Bidder 3" or "Reserve protection"
    is_platform_bid: bool
    is_proxy: bool  # placed by the engine for the bidder's maximum
    at_ms: int
    end_time_ms: int
    extended: bool
    min_next_bid_kobo: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None  # added to API.md's fields: None when there is no reserve
    hash: str | None  # the bid log's head after this bid, hex (engine/bidlog.py)


class BidResult(
    msgspec.Struct, frozen=True, tag="bid_result", tag_field="type", omit_defaults=True
):
    client_bid_id: str
    status: Literal["accepted", "rejected"]
    bid: BidBody | None = None
    max: MaxBody | None = None  # the answer to a `max`
    code: str | None = None
    message: str | None = None


class YouMessage(msgspec.Struct, frozen=True, tag="you", tag_field="type"):
    """To one bidder alone: where they stand now. `status` is null only for a
    maximum set before their first bid here (a pre-bid on a scheduled auction)."""

    status: YouStatus | None
    max_kobo: int | None  # the highest maximum they set here (null: none)
    available_kobo: int | None  # their buying power left, as the engine has it now


class StateEvent(msgspec.Struct, frozen=True, tag="state", tag_field="type"):
    seq: int
    status: str
    end_time_ms: int


class EndedEvent(msgspec.Struct, frozen=True, tag="ended", tag_field="type"):
    seq: int
    #: seller_decision: below the reserve, the seller decides on the top real bid
    #: (`final_price_kobo`); the outcome follows as a `state` event.
    result: Literal["sold", "unsold", "seller_decision"]
    final_price_kobo: int | None
    winner: str | None


class Pong(msgspec.Struct, frozen=True, tag="pong", tag_field="type"):
    client_time_ms: int
    server_time_ms: int


class ErrorMessage(msgspec.Struct, frozen=True, tag="error", tag_field="type"):
    code: str
    message: str


ServerMessage = (
    SnapshotMessage
    | BidEvent
    | BidResult
    | YouMessage
    | StateEvent
    | EndedEvent
    | Pong
    | ErrorMessage
)

#: Room events: they carry the auction's `seq` and go to every socket of the room.
RoomEvent = BidEvent | StateEvent | EndedEvent

PLATFORM_HANDLE = "Reserve protection"


def bidder_handle(bidder_number: int, is_platform: bool) -> str:
    """The anonymous handle a room shows: stable per bidder within one auction."""
    return PLATFORM_HANDLE if is_platform else f"Bidder {bidder_number}"


encoder = msgspec.json.Encoder()
client_decoder = IntegralDecoder(msgspec.json.Decoder(ClientMessage, strict=True))
frame_type_decoder = msgspec.json.Decoder(FrameType)
server_decoder = msgspec.json.Decoder(ServerMessage)


def encode(message: ServerMessage) -> bytes:
    return encoder.encode(message)
