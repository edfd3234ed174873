"""The request rate limits (API.md "Limits"), as a middleware: per client
address (an IPv6 client per /64; behind a trusted proxy, the address it
forwarded: web/proxies.py), except for the platform's service token, and per
signed-in user."""

from __future__ import annotations

from aiohttp import web

from engine.errors import TokenError
from engine.tokens import verify_token
from web.auth import bearer, is_service
from web.errors import ApiError, Handler
from web.keys import LIMITER, SETTINGS
from web.proxies import client_address
from web.ratelimit import ip_key

_UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """RATE_LIMIT_IP_PER_MIN per address (not for the platform's service token),
    RATE_LIMIT_USER_PER_MIN per user; 429 with Retry-After beyond."""
    app = request.app
    settings = app[SETTINGS]
    if LIMITER not in app or request.path in _UNLIMITED:
        return await handler(request)
    if not is_service(request, settings.internal_api_token):
        client = ip_key(client_address(request))
        wait = await app[LIMITER].hit(client, settings.rate_limit_ip_per_min, 60)
        _refuse_if_waiting(wait)
        user = _token_subject(request, settings.jwt_secret)
        if user is not None:
            wait = await app[LIMITER].hit(f"user:{user}", settings.rate_limit_user_per_min, 60)
            _refuse_if_waiting(wait)
    return await handler(request)


def _token_subject(request: web.Request, secret: str) -> str | None:
    token = bearer(request)
    if token is None:
        return None
    try:
        return str(verify_token(token, secret))
    except TokenError:
        return None


def _refuse_if_waiting(wait: float | None) -> None:
    if wait is not None:
        seconds = max(1, round(wait + 0.5))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests; try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
