"""The HTTP bodies of API.md as msgspec structs, and how they cross the edge.

Request structs forbid unknown fields and are decoded strictly once, at the
edge (`read_json`), an integral number such as `1e3` being the integer it is
(web/json_numbers.py); everything past it works with typed values. Response
structs are encoded once (`json_response`). `Snapshot` is shared with the
WebSocket rooms, which wrap it in their tagged union (it has no `type` field).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from engine.bids import BidBody
from web.errors import ApiError
from web.json_numbers import IntegralDecoder

logger = logging.getLogger(__name__)

T = TypeVar("T")

# ---- requests ---------------------------------------------------------------


class UserUpsert(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /internal/users/{id}`. `is_active` absent: unchanged (true for a new user)."""

    email: str
    role: str
    kyc_status: str
    display_name: str | None = None
    is_active: bool | None = None


class WalletChange(msgspec.Struct, forbid_unknown_fields=True):
    """A credit or a debit: `reference` (the payment provider's) makes it idempotent."""

    amount_kobo: int
    reference: str


class VehicleCreate(msgspec.Struct, forbid_unknown_fields=True):
    vin: str
    year: int
    make: str
    model: str
    listed_by: uuid.UUID
    body_type: str | None = None
    mileage_km: int | None = None
    color: str | None = None
    condition: str = "clean"
    price_kobo: int | None = None
    owner_id: uuid.UUID | None = None
    location: str | None = None


class AuctionFields(msgspec.Struct, forbid_unknown_fields=True):
    """What both ways of creating an auction take (API.md "Creating an auction")."""

    vehicle_id: uuid.UUID
    start_time_ms: int
    end_time_ms: int
    start_price_kobo: int
    auction_type: str = "timed"
    reserve_price_kobo: int | None = None
    bid_increment_kobo: int = 5_000_000
    deposit_pct_bp: int = 2000
    anti_snipe_window_ms: int = 120_000
    anti_snipe_extension_ms: int = 120_000


class InternalAuctionCreate(AuctionFields, forbid_unknown_fields=True, kw_only=True):
    """`POST /internal/auctions`: the platform names the creator and the status."""

    created_by: uuid.UUID
    status: str = "draft"


class PublicAuctionCreate(AuctionFields, forbid_unknown_fields=True):
    """`POST /api/auctions`: the creator is the caller; status by role when absent."""

    status: str | None = None


class BidRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/bids`. The amount stays raw until checked, so that any wrong
    amount (a float, a string, a huge number) gets the rule's `invalid_amount`."""

    auction_id: uuid.UUID
    amount_kobo: msgspec.Raw
    client_bid_id: str


# ---- responses ---------------------------------------------------------------


class UserBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    email: str
    role: str
    kyc_status: str
    display_name: str | None
    is_active: bool
    balance_kobo: int
    created_at_ms: int
    updated_at_ms: int


class UserEnvelope(msgspec.Struct, frozen=True):
    user: UserBody


class WalletBody(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    balance_kobo: int
    exposure_kobo: int
    available_kobo: int
    held_kobo: int
    due_kobo: int


class TransactionBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    type: str  # "deposit" (a credit) or "withdrawal" (a debit)
    amount_kobo: int
    balance_after_kobo: int
    reference: str
    created_at_ms: int


class WalletMovement(WalletBody, frozen=True):
    """The wallet after a credit or debit, and the transaction that made it."""

    transaction: TransactionBody


class VehicleBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    vin: str
    year: int
    make: str | None
    model: str | None
    body_type: str | None
    mileage_km: int | None
    color: str | None
    condition: str
    price_kobo: int | None
    listed_by: uuid.UUID | None
    owner_id: uuid.UUID | None
    location: str | None
    status: str
    created_at_ms: int


class VehicleEnvelope(msgspec.Struct, frozen=True):
    vehicle: VehicleBody


class AuctionBody(msgspec.Struct, frozen=True):
    """An auction as created: `snapshot.auction`'s fields and its settings."""

    id: uuid.UUID
    status: str
    current_price_kobo: int | None
    min_next_bid_kobo: int
    bid_increment_kobo: int
    start_time_ms: int
    end_time_ms: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None
    vehicle_id: uuid.UUID
    created_by: uuid.UUID
    auction_type: str
    start_price_kobo: int
    reserve_price_kobo: int | None
    deposit_pct_bp: int
    anti_snipe_window_ms: int
    anti_snipe_extension_ms: int
    winner_id: uuid.UUID | None


class AuctionEnvelope(msgspec.Struct, frozen=True):
    auction: AuctionBody


class VehicleSummary(msgspec.Struct, frozen=True):
    make: str | None
    model: str | None
    year: int
    body_type: str | None
    mileage_km: int | None
    color: str | None
    location: str | None


class AuctionSummary(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: str
    auction_type: str
    current_price_kobo: int | None
    min_next_bid_kobo: int
    bid_increment_kobo: int
    start_price_kobo: int
    start_time_ms: int
    end_time_ms: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None
    vehicle_id: uuid.UUID
    vehicle: VehicleSummary


class AuctionList(msgspec.Struct, frozen=True):
    auctions: list[AuctionSummary]


class SnapshotAuction(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: str
    current_price_kobo: int | None  # None until the first bid
    min_next_bid_kobo: int
    bid_increment_kobo: int
    start_time_ms: int
    end_time_ms: int
    bid_count: int
    bidder_count: int
    reserve_met: bool | None  # None: the auction has no (binding) reserve


class RecentBid(msgspec.Struct, frozen=True):
    amount_kobo: int
    bidder: str  # "Bidder 3", or "Reserve protection" for a platform bid
    is_platform_bid: bool
    at_ms: int


class You(msgspec.Struct, frozen=True):
    handle: str
    status: str  # "winning", "outbid", "won", "lost" (the rooms fill it in)


class Snapshot(msgspec.Struct, frozen=True):
    """The room's state (API.md `snapshot`, without `type`: the rooms add it)."""

    seq: int
    server_time_ms: int
    auction: SnapshotAuction
    recent_bids: list[RecentBid]  # newest first, at most 50
    you: You | None = None


class HistoryBid(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID
    amount_kobo: int
    is_platform_bid: bool
    at_ms: int
    client_bid_id: str | None
    seq: int


class BidHistory(msgspec.Struct, frozen=True):
    bids: list[HistoryBid]


class BidEnvelope(msgspec.Struct, frozen=True):
    bid: BidBody


_AT_FIELD = re.compile(r"^(?P<detail>.*) - at `\$\.?(?P<path>[^`]*)`$")


async def read_json(request: web.Request, kind: type[T]) -> T:
    """The body decoded strictly into `kind`: 400 unreadable, 413 too large, 422 invalid."""
    body = await request.read()  # over MAX_BODY_BYTES: aiohttp's 413, in our shape
    return decode_body(body, kind)


def decode_body(body: bytes, kind: type[T]) -> T:
    try:
        return _decoder(kind).decode(body)
    except msgspec.ValidationError as err:
        raise ApiError(422, "invalid", _validation_message(str(err))) from err
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "malformed", "The body is not valid JSON in UTF-8.") from err
    except RecursionError as err:
        raise ApiError(400, "malformed", "The body is nested too deeply to read.") from err


_decoders: dict[type, IntegralDecoder[Any]] = {}


def _decoder(kind: type[T]) -> IntegralDecoder[T]:
    """One decoder per request struct, made the first time it is needed."""
    found: IntegralDecoder[T] | None = _decoders.get(kind)
    if found is None:
        found = _decoders[kind] = IntegralDecoder(msgspec.json.Decoder(kind, strict=True))
    return found


def _validation_message(detail: str) -> str:
    found = _AT_FIELD.match(detail)
    if found is None:
        return f"The request is not valid: {detail}."
    return f"The field `{found['path']}` is not valid: {found['detail']}."


def json_response(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    """A UUID from the path; anything else names nothing here (404)."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise ApiError(404, "not_found", "Nothing exists at this address.") from None
