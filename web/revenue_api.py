"""`GET /internal/admin/revenue?from_ms&to_ms` (API.md "Internal HTTP"): GMV,
commissions, forfeited deposits and auctions sold and unsold, by UTC day, from
the ledger (engine/revenue.py). The platform's service token, as every
`/internal` read; any node answers it."""

from __future__ import annotations

from aiohttp import web

from engine.revenue import revenue
from web.auth import require_service
from web.errors import ApiError
from web.keys import DATABASE, SETTINGS
from web.messages import json_response


async def get_revenue(request: web.Request) -> web.Response:
    require_service(request, request.app[SETTINGS].internal_api_token)
    from_ms = _ms(request, "from_ms")
    to_ms = _ms(request, "to_ms")
    return json_response(await revenue(request.app[DATABASE].pool, from_ms, to_ms))


def _ms(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        raise ApiError(
            422,
            "invalid_range",
            f"Give `{name}` as a whole number of milliseconds since the Unix epoch (UTC).",
        )
    return int(raw)


def install(app: web.Application) -> None:
    app.router.add_get("/internal/admin/revenue", get_revenue)
