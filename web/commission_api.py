"""The commission rates over the internal API (engine/commission_rates.py).

`GET /internal/admin/commission-rates`: every row; the platform's service token,
as the revenue report takes, or a manager's or an admin's JWT.
`PUT /internal/admin/commission-rates/{service_type}`: an admin's JWT only —
pricing is the admin's, and the audit log names the person, so never the
service token — with the row and a `reason`. The answer is the row as stored.
Rates are global, in PostgreSQL: any node answers both.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from engine.admin import Actor, checked_reason
from engine.commission_rates import (
    CommissionRateBody,
    RateChange,
    check_service_type,
    commission_rates,
    set_commission_rate,
)
from engine.roles import PRICING_ROLES, STAFF_ROLES
from web.auth import authenticate, is_service, require_role
from web.errors import ApiError
from web.keys import CLOCK, DATABASE, SETTINGS
from web.messages import decode_body, json_response
from web.peers import caller_address


class CommissionRateRequest(RateChange, forbid_unknown_fields=True, kw_only=True):
    """The PUT's body: the row, and why (kept in the audit log)."""

    reason: str | None = None


class CommissionRateEnvelope(msgspec.Struct, frozen=True):
    commission_rate: CommissionRateBody


class CommissionRateList(msgspec.Struct, frozen=True):
    commission_rates: list[CommissionRateBody]


async def get_rates(request: web.Request) -> web.Response:
    app = request.app
    if not is_service(request, app[SETTINGS].internal_api_token):
        caller = await authenticate(request, app[DATABASE].pool, app[SETTINGS].jwt_secret)
        require_role(caller, STAFF_ROLES)
    return json_response(CommissionRateList(await commission_rates(app[DATABASE].pool)))


async def put_rate(request: web.Request) -> web.Response:
    app = request.app
    if is_service(request, app[SETTINGS].internal_api_token):
        raise ApiError(
            401,
            "unauthenticated",
            "Sign in as an admin: rates are set with an admin's own token, never the "
            "service token (the audit log names the person).",
        )
    caller = await authenticate(request, app[DATABASE].pool, app[SETTINGS].jwt_secret)
    if caller.role not in PRICING_ROLES:
        raise ApiError(403, "forbidden", "Only an admin may set commission rates.")
    service_type = request.match_info["service_type"]
    check_service_type(service_type)
    raw = await request.read()
    spec = decode_body(raw if raw.strip() else b"{}", CommissionRateRequest)
    actor = Actor(caller.user_id, checked_reason(spec.reason), caller_address(request))
    row = await set_commission_rate(app[DATABASE].pool, app[CLOCK], service_type, spec, actor)
    return json_response(CommissionRateEnvelope(row))


def install(app: web.Application) -> None:
    app.router.add_get("/internal/admin/commission-rates", get_rates)
    app.router.add_put("/internal/admin/commission-rates/{service_type}", put_rate)
