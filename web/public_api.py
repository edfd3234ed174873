"""The public HTTP API (API.md "Public HTTP"): auctions to list and watch, bids, and
auction creation for dealers, managers and admins.

Callers are bidders and staff with a JWT; their role and KYC are read from the
engine's `users` row, never from the token beyond `sub`.
"""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from engine import auctions
from engine.auctions import CREATOR_ROLES, PUBLIC_STATUSES, SCHEDULER_ROLES, NewAuction
from engine.bids import BidAccepted, rejection
from engine.money import MAX_KOBO
from engine.roles import BIDDING_ROLES
from engine.users import Caller
from web.auth import authenticate, require_role
from web.errors import ApiError
from web.json_numbers import IntegralDecoder
from web.keys import BIDS, CLOCK, DATABASE, SEQUENCER, SETTINGS
from web.messages import (
    AuctionEnvelope,
    AuctionList,
    BidEnvelope,
    BidRequest,
    PublicAuctionCreate,
    json_response,
    path_uuid,
    read_json,
)

CLIENT_BID_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
LIST_LIMIT = 100
MAX_LIST_LIMIT = 500
_WHOLE = IntegralDecoder(msgspec.json.Decoder(int, strict=True))


async def list_auctions(request: web.Request) -> web.Response:
    status = request.query.get("status", "live")
    if status not in PUBLIC_STATUSES:
        raise ApiError(
            422, "invalid_status", f"`status` must be one of: {', '.join(PUBLIC_STATUSES)}."
        )
    limit = _limit(request.query.get("limit"))
    found = await auctions.list_auctions(request.app[DATABASE].pool, status, limit)
    return json_response(AuctionList(found))


def _limit(raw: str | None) -> int:
    if raw is None:
        return LIST_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise ApiError(
            422, "invalid_limit", f"`limit` must be a whole number from 1 to {MAX_LIST_LIMIT}."
        )
    return int(raw)


async def get_auction(request: web.Request) -> web.Response:
    auction_id = path_uuid(request)
    app = request.app
    found = await auctions.snapshot(
        app[DATABASE].pool, app[SEQUENCER], auction_id, app[CLOCK].now_ms()
    )
    if found is None:
        raise ApiError(404, "not_found", "No auction has this id.")
    return json_response(found)


async def post_bid(request: web.Request) -> web.Response:
    caller = await _caller(request)
    require_role(caller, BIDDING_ROLES)
    spec = await read_json(request, BidRequest)
    amount = _amount(spec.amount_kobo)
    if not CLIENT_BID_ID.fullmatch(spec.client_bid_id):
        raise ApiError(
            422,
            "invalid_client_bid_id",
            "`client_bid_id` must be 1 to 64 characters, without control characters.",
        )
    outcome = await request.app[BIDS].place_bid(
        spec.auction_id, caller.user_id, amount, spec.client_bid_id
    )
    if isinstance(outcome, BidAccepted):
        return json_response(BidEnvelope(outcome.bid.body()), 201)
    status = {"unavailable": 503, "invalid_amount": 422}.get(outcome.code, 409)
    raise ApiError(status, outcome.code, outcome.message)


def _amount(raw: msgspec.Raw) -> int:
    """Rule 9: a whole number of kobo, 0 < amount < 10^15; anything else is invalid_amount.
    An integral number (`1e8`, `100000000.0`) is that whole number."""
    try:
        amount = _WHOLE.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        amount = 0
    if not 0 < amount <= MAX_KOBO:
        refused = rejection("invalid_amount")
        raise ApiError(422, refused.code, refused.message)
    return amount


async def post_auction(request: web.Request) -> web.Response:
    caller = await _caller(request)
    require_role(caller, CREATOR_ROLES)
    spec = await read_json(request, PublicAuctionCreate)
    may_schedule = caller.role in SCHEDULER_ROLES
    status = spec.status or ("scheduled" if may_schedule else "draft")
    if status == "scheduled" and not may_schedule:
        raise ApiError(
            403,
            "approval_required",
            "A dealer's auction starts as a draft; a manager or admin approves it to "
            "schedule it. Send it without `status`, or as `draft`.",
        )
    new = NewAuction(
        fields=spec, created_by=caller.user_id, status=status, own_vehicle_only=not may_schedule
    )
    app = request.app
    auction = await auctions.create_auction(
        app[DATABASE].pool, app[SEQUENCER], new, app[CLOCK].now_ms()
    )
    return json_response(AuctionEnvelope(auction), 201)


async def _caller(request: web.Request) -> Caller:
    return await authenticate(request, request.app[DATABASE].pool, request.app[SETTINGS].jwt_secret)


def install(app: web.Application) -> None:
    app.router.add_get("/api/auctions", list_auctions)
    app.router.add_get("/api/auctions/{id}", get_auction)
    app.router.add_post("/api/auctions", post_auction)
    app.router.add_post("/api/bids", post_bid)
