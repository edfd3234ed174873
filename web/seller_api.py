"""The seller's side of the public API (API.md "Public HTTP"): the if-bid's
negotiation (`/api/auctions/{id}/offer`) and relisting an unsold auction
(`/api/auctions/{id}/relist`), and the seller's auctions (`/api/me/auctions`).

The seller is the auction's creator, lister or owner (RULES.md rule 4's set); a
manager or an admin may act for them, and the audit log names who did. On a
node of several, a step is relayed to the node that decides the auction
(web/peers.py): the step moves the high bidder's buying power, which only that
node holds.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from engine.auctions import CREATOR_ROLES
from engine.errors import LedgerUnavailable
from engine.ifbid import ACTIONS, Acting, Action, OfferRequest
from engine.relisting import Relister, RelistTerms, relist
from engine.selling import MyAuctions, my_auctions
from engine.users import Caller
from web.auth import authenticate, require_role
from web.errors import ApiError
from web.keys import CLOCK, DATABASE, DECISIONS, ROOMS, SEQUENCER, SETTINGS
from web.messages import (
    AuctionEnvelope,
    json_response,
    path_uuid,
    query_limit,
    read_json,
    whole_kobo,
)
from web.peers import caller_address, relay_to_owner

_NULL = b"null"
#: `GET /api/me/auctions`: how many auctions by default, and at most.
MY_AUCTIONS_LIMIT = 50
MAX_MY_AUCTIONS_LIMIT = 200


async def get_my_auctions(request: web.Request) -> web.Response:
    """The caller's auctions as a seller (dealers, managers, admins), latest end first."""
    caller = await _caller(request)
    require_role(caller, CREATOR_ROLES)
    limit = query_limit(request.query.get("limit"), MY_AUCTIONS_LIMIT, MAX_MY_AUCTIONS_LIMIT)
    found = await my_auctions(request.app[DATABASE].pool, caller.user_id, limit)
    return json_response(MyAuctions(found))


async def get_offer(request: web.Request) -> web.Response:
    """The negotiation: for the seller, the high bidder, or a manager or admin."""
    caller = await _caller(request)
    found = await request.app[DECISIONS].read(path_uuid(request), _acting(request, caller))
    return json_response(found)


async def post_offer(request: web.Request) -> web.Response:
    """Accept, decline or counter, on the caller's turn; the negotiation after it."""
    auction_id = path_uuid(request)
    relayed = await relay_to_owner(request, auction_id)  # several nodes: its owner acts
    if relayed is not None:
        return relayed
    caller = await _caller(request)
    spec = await read_json(request, OfferRequest)
    action, amount = _checked(spec)
    try:
        found = await request.app[DECISIONS].act(
            auction_id, _acting(request, caller), action, amount
        )
    except LedgerUnavailable as err:
        raise ApiError(
            503,
            "unavailable",
            "The engine cannot record your answer right now; nothing changed. Try again shortly.",
        ) from err
    return json_response(found)


def _checked(spec: OfferRequest) -> tuple[Action, int | None]:
    """The action, and a counter's amount (rule 9's whole kobo), or a 422."""
    raw: msgspec.Raw | None = spec.amount_kobo
    if bytes(spec.amount_kobo).strip() == _NULL:
        raw = None  # absent, or `null`: no amount
    action = next((known for known in ACTIONS if known == spec.action), None)
    if action is None:
        raise ApiError(422, "invalid_action", "`action` must be one of: accept, decline, counter.")
    if action != "counter":
        if raw is not None:
            raise ApiError(422, "invalid", "Only `counter` takes `amount_kobo`.")
        return action, None
    if raw is None:
        raise ApiError(422, "amount_required", "A `counter` needs its `amount_kobo`.")
    amount = whole_kobo(raw)
    if amount is None:
        raise ApiError(
            422,
            "invalid_amount",
            "Enter `amount_kobo` as a whole amount in kobo above zero and below ₦10 trillion.",
        )
    return action, amount


async def post_relist(request: web.Request) -> web.Response:
    """A new auction for the vehicle of an unsold one (the create body, 201)."""
    caller = await _caller(request)
    auction_id = path_uuid(request)
    terms = await read_json(request, RelistTerms)
    app = request.app
    relister = Relister(caller.user_id, caller.role, caller_address(request))
    done = await relist(
        app[DATABASE].pool, app[SEQUENCER], auction_id, relister, terms, app[CLOCK].now_ms()
    )
    app[ROOMS].publish_state(done.old_id, done.old_seq, "relisted", done.old_end_time_ms)
    return json_response(AuctionEnvelope(done.auction), 201)


def _acting(request: web.Request, caller: Caller) -> Acting:
    return Acting(caller.user_id, caller.role, caller_address(request))


async def _caller(request: web.Request) -> Caller:
    return await authenticate(request, request.app[DATABASE].pool, request.app[SETTINGS].jwt_secret)


def install(app: web.Application) -> None:
    app.router.add_get("/api/auctions/{id}/offer", get_offer)
    app.router.add_post("/api/auctions/{id}/offer", post_offer)
    app.router.add_post("/api/auctions/{id}/relist", post_relist)
    app.router.add_get("/api/me/auctions", get_my_auctions)
