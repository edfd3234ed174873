"""The HTTP wire of API.md: the envelopes around the engine's own bodies, the
requests only the web layer reads, and how they cross the edge.

The domain's structs (what a service takes and gives) live in the engine,
beside the service. Request structs forbid unknown fields and are decoded
strictly once, at the edge (`read_json`), an integral number such as `1e3`
being the integer it is (web/json_numbers.py); everything past it works with
typed values. Response structs are encoded once (`json_response`).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from engine.auctions import AuctionBody, AuctionFields, AuctionSummary
from engine.bids import BidBody, MaxBody
from engine.leases import NodeRow, PartitionRow
from engine.money import MAX_KOBO
from engine.offers import SettlementBody
from engine.users import UserBody
from engine.vehicles import VehicleBody
from web.errors import ApiError
from web.json_numbers import IntegralDecoder

logger = logging.getLogger(__name__)

T = TypeVar("T")

# ---- requests ---------------------------------------------------------------


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


class MaxRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/auctions/{id}/max`; the amount raw until checked, as a bid's."""

    max_kobo: msgspec.Raw
    client_bid_id: str


_WHOLE = IntegralDecoder(msgspec.json.Decoder(int, strict=True))


def whole_kobo(raw: msgspec.Raw) -> int | None:
    """Rule 9: a whole number of kobo, 0 < amount < 10^15, else None (`invalid_amount`).
    An integral number (`1e8`, `100000000.0`) is that whole number."""
    try:
        amount = _WHOLE.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return amount if 0 < amount <= MAX_KOBO else None


# ---- responses ---------------------------------------------------------------


class ClusterBody(msgspec.Struct, frozen=True):
    """`GET /internal/cluster`: the node answering, every node's row, every
    partition's lease (engine/leases.py)."""

    node: str
    nodes: list[NodeRow]
    partitions: list[PartitionRow]


class UserEnvelope(msgspec.Struct, frozen=True):
    user: UserBody


class VehicleEnvelope(msgspec.Struct, frozen=True):
    vehicle: VehicleBody


class AuctionEnvelope(msgspec.Struct, frozen=True):
    auction: AuctionBody


class AuctionList(msgspec.Struct, frozen=True):
    auctions: list[AuctionSummary]


class BidEnvelope(msgspec.Struct, frozen=True):
    bid: BidBody


class MaxEnvelope(msgspec.Struct, frozen=True):
    max: MaxBody


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


def query_limit(raw: str | None, default: int, most: int) -> int:
    """A list's `limit` query parameter: 1 to `most`, else 422 `invalid_limit`."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise ApiError(422, "invalid_limit", f"`limit` must be a whole number from 1 to {most}.")
    return int(raw)


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


class SettlementEnvelope(msgspec.Struct, frozen=True):
    settlement: SettlementBody
