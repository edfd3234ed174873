"""The public HTTP API (API.md "Public HTTP"): auctions to list and watch, bids and
maximums, the caller's own auctions and wallet, and auction creation for dealers,
managers and admins.

Callers are bidders and staff with a JWT; their role and KYC are read from the
engine's `users` row, never from the token beyond `sub`.
"""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from engine import auctions, publiclog, signing, standing, wallet
from engine.auctions import CREATOR_ROLES, PUBLIC_STATUSES, SCHEDULER_ROLES, NewAuction
from engine.bids import BidAccepted, BidRejected, MaxAccepted, rejection
from engine.roles import BIDDING_ROLES
from engine.users import Caller
from web.auth import authenticate, is_service, require_role
from web.errors import ApiError
from web.keys import BIDS, CLOCK, DATABASE, SEQUENCER, SETTINGS
from web.messages import (
    AuctionEnvelope,
    AuctionList,
    BidEnvelope,
    BidRequest,
    MaxEnvelope,
    MaxRequest,
    PublicAuctionCreate,
    json_response,
    path_uuid,
    query_limit,
    read_json,
    whole_kobo,
)

CLIENT_BID_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
LIST_LIMIT = 100
MAX_LIST_LIMIT = 500
#: `GET /api/me/bids`: how many auctions by default, and at most.
MY_BIDS_LIMIT = 50
MAX_MY_BIDS_LIMIT = 200


async def list_auctions(request: web.Request) -> web.Response:
    status = request.query.get("status", "live")
    if status not in PUBLIC_STATUSES:
        raise ApiError(
            422, "invalid_status", f"`status` must be one of: {', '.join(PUBLIC_STATUSES)}."
        )
    limit = _limit(request.query.get("limit"), LIST_LIMIT, MAX_LIST_LIMIT)
    found = await auctions.list_auctions(request.app[DATABASE].pool, status, limit)
    return json_response(AuctionList(found))


def _limit(raw: str | None, default: int, most: int) -> int:
    return query_limit(raw, default, most)


async def get_auction(request: web.Request) -> web.Response:
    """The room's snapshot; with a bidder's bearer token, `you` is the caller's
    standing (a guest's and the platform's: null; a token that does not verify: 401)."""
    auction_id = path_uuid(request)
    app = request.app
    signed_in = "Authorization" in request.headers and not is_service(
        request, app[SETTINGS].internal_api_token
    )
    caller = await _caller(request) if signed_in else None
    pool, sequencer = app[DATABASE].pool, app[SEQUENCER]
    found = await auctions.snapshot(pool, sequencer, auction_id, app[CLOCK].now_ms())
    if found is None:
        raise ApiError(404, "not_found", "No auction has this id.")
    if caller is not None:
        user_id = caller.user_id
        you = standing.standing_in_core(
            sequencer, auction_id, user_id, found.seq
        ) or await standing.standing(pool, auction_id, user_id)
        if found.auction.status == "cancelled":
            you = msgspec.structs.replace(you, status=None)
        available = sequencer.available_of(user_id)
        found = msgspec.structs.replace(
            found, you=msgspec.structs.replace(you, available_kobo=available)
        )
    return json_response(found)


async def post_bid(request: web.Request) -> web.Response:
    caller = await _caller(request)
    require_role(caller, BIDDING_ROLES)
    spec = await read_json(request, BidRequest)
    amount = _amount(spec.amount_kobo)
    _check_client_bid_id(spec.client_bid_id)
    outcome = await request.app[BIDS].place_bid(
        spec.auction_id, caller.user_id, amount, spec.client_bid_id
    )
    if isinstance(outcome, BidAccepted):
        return json_response(BidEnvelope(outcome.bid.body()), 201)
    raise _refused(outcome)


async def post_max(request: web.Request) -> web.Response:
    """Set or raise the caller's maximum on an auction (a pre-bid while scheduled)."""
    caller = await _caller(request)
    require_role(caller, BIDDING_ROLES)
    auction_id = path_uuid(request)
    spec = await read_json(request, MaxRequest)
    amount = _amount(spec.max_kobo, maximum=True)
    _check_client_bid_id(spec.client_bid_id)
    outcome = await request.app[BIDS].set_max(
        auction_id, caller.user_id, amount, spec.client_bid_id
    )
    if isinstance(outcome, MaxAccepted):
        return json_response(MaxEnvelope(outcome.max.body()), 201)
    raise _refused(outcome)


def _check_client_bid_id(client_bid_id: str) -> None:
    if not CLIENT_BID_ID.fullmatch(client_bid_id):
        raise ApiError(
            422,
            "invalid_client_bid_id",
            "`client_bid_id` must be 1 to 64 characters, without control characters.",
        )


def _refused(outcome: BidRejected) -> ApiError:
    """A refused bid or maximum: the rule's code, 409 (invalid_amount 422; unavailable and
    bid_log_broken, the engine's side, 503)."""
    status = {"unavailable": 503, "bid_log_broken": 503, "invalid_amount": 422}.get(
        outcome.code, 409
    )
    return ApiError(status, outcome.code, outcome.message)


async def get_my_bids(request: web.Request) -> web.Response:
    """The auctions the caller bid or set a maximum on, latest activity first."""
    caller = await _caller(request)
    limit = _limit(request.query.get("limit"), MY_BIDS_LIMIT, MAX_MY_BIDS_LIMIT)
    found = await standing.my_bids(request.app[DATABASE].pool, caller.user_id, limit)
    return json_response(standing.MyBids(found))


async def get_my_wallet(request: web.Request) -> web.Response:
    """The caller's own wallet: the internal API's wallet body."""
    caller = await _caller(request)
    app = request.app
    return json_response(
        await wallet.read_wallet(app[DATABASE].pool, app[SEQUENCER], caller.user_id)
    )


def _amount(raw: msgspec.Raw, *, maximum: bool = False) -> int:
    """Rule 9 (web.messages.whole_kobo); anything else is invalid_amount."""
    amount = whole_kobo(raw)
    if amount is None:
        refused = rejection("invalid_amount", maximum=maximum)
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


async def get_log(request: web.Request) -> web.Response:
    """The auction's public bid log and, once it ended, its signed result."""
    auction_id = path_uuid(request)
    return json_response(await publiclog.log_body(request.app[DATABASE].pool, auction_id))


async def get_my_opening(request: web.Request) -> web.Response:
    """What proves to an arbiter that the caller's handle in that log is theirs."""
    auction_id = path_uuid(request)
    caller = await _caller(request)
    pool = request.app[DATABASE].pool
    return json_response(await publiclog.opening(pool, auction_id, caller.user_id))


async def get_log_keys(request: web.Request) -> web.Response:
    """Every key any node signed results with, by key id."""
    return json_response(await signing.published_keys(request.app[DATABASE].pool))


async def _caller(request: web.Request) -> Caller:
    return await authenticate(request, request.app[DATABASE].pool, request.app[SETTINGS].jwt_secret)


def install(app: web.Application) -> None:
    app.router.add_get("/api/auctions", list_auctions)
    app.router.add_get("/api/auctions/{id}", get_auction)
    app.router.add_post("/api/auctions", post_auction)
    app.router.add_post("/api/bids", post_bid)
    app.router.add_post("/api/auctions/{id}/max", post_max)
    app.router.add_get("/api/me/bids", get_my_bids)
    app.router.add_get("/api/me/wallet", get_my_wallet)
    app.router.add_get("/api/auctions/{id}/log", get_log)
    app.router.add_get("/api/auctions/{id}/log/me", get_my_opening)
    app.router.add_get("/api/log-keys", get_log_keys)
