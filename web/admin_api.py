"""Staff actions on auctions over the internal API (API.md "Internal HTTP").

`POST /internal/admin/auctions/{id}/{approve,reject,extend,force-end,cancel,void}`
takes a manager's or an admin's JWT — never the service token, because the
audit log names the person who acted — and a `reason` (required, ≤ 1000
characters); `extend` also takes the new `end_time_ms`. The answer is the
auction after the action. The audit row carries the caller, the old and new
values, the reason and the caller's IP address.

On a node of several, an action on an auction another node decides is relayed
to that node (web/peers.py), which authenticates it and acts.

The lead wires `ADMIN_HOOKS` (the lifecycle's end processing and the rooms'
publisher); without it the rooms found under web.ws's `ROOMS` hear of approve,
reject and void, and a force-end's end processing runs unannounced.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from engine.admin import STAFF_ROLES, Actor, Admin, checked_reason
from engine.auctions import AuctionBody
from engine.errors import LedgerUnavailable
from web.auth import authenticate, require_role
from web.errors import ApiError
from web.keys import ADMIN_HOOKS, CLOCK, DATABASE, SEQUENCER, SETTINGS
from web.messages import decode_body, json_response, path_uuid
from web.peers import caller_address, relay_to_owner


class ActionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Every action's body; only `extend` takes `end_time_ms`."""

    reason: str | None = None
    end_time_ms: int | None = None


class AdminOutcome(msgspec.Struct, frozen=True):
    action: str
    auction: AuctionBody


Action = Callable[[Admin, uuid.UUID, Actor, ActionRequest], Awaitable[AuctionBody]]


async def _extend(
    admin: Admin, auction_id: uuid.UUID, actor: Actor, spec: ActionRequest
) -> AuctionBody:
    if spec.end_time_ms is None:
        raise ApiError(422, "invalid_end_time", "Give the new `end_time_ms` (ms since the epoch).")
    return await admin.extend(auction_id, spec.end_time_ms, actor)


ACTIONS: dict[str, Action] = {
    "approve": lambda admin, auction_id, actor, _: admin.approve(auction_id, actor),
    "reject": lambda admin, auction_id, actor, _: admin.reject(auction_id, actor),
    "extend": _extend,
    "force-end": lambda admin, auction_id, actor, _: admin.force_end(auction_id, actor),
    "cancel": lambda admin, auction_id, actor, _: admin.cancel(auction_id, actor),
    "void": lambda admin, auction_id, actor, _: admin.void(auction_id, actor),
}


def _route(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    action = ACTIONS[name]

    async def handle(request: web.Request) -> web.Response:
        app = request.app
        auction_id = path_uuid(request)
        relayed = await relay_to_owner(request, auction_id)  # several nodes: its owner acts
        if relayed is not None:
            return relayed
        caller = await authenticate(request, app[DATABASE].pool, app[SETTINGS].jwt_secret)
        require_role(caller, STAFF_ROLES)
        spec = await _body(request)
        if name != "extend" and spec.end_time_ms is not None:
            raise ApiError(422, "invalid", "Only `extend` takes `end_time_ms`.")
        actor = Actor(caller.user_id, checked_reason(spec.reason), caller_address(request))
        try:
            auction = await action(_admin(app), auction_id, actor, spec)
        except LedgerUnavailable as err:
            raise ApiError(
                503,
                "unavailable",
                "The engine cannot write to its ledger right now; nothing changed. Try again "
                "shortly.",
            ) from err
        return json_response(AdminOutcome(name, auction))

    return handle


async def _body(request: web.Request) -> ActionRequest:
    """The body (an empty one is `{}`, so a missing reason says so)."""
    raw = await request.read()
    return decode_body(raw, ActionRequest) if raw.strip() else ActionRequest()


def _admin(app: web.Application) -> Admin:
    hooks = app[ADMIN_HOOKS]
    pool, sequencer, clock = app[DATABASE].pool, app[SEQUENCER], app[CLOCK]
    return Admin(pool, sequencer, clock, hooks.finisher, hooks.publisher)


def install(app: web.Application) -> None:
    for name in ACTIONS:
        app.router.add_post(f"/internal/admin/auctions/{{id}}/{name}", _route(name))
