"""Who is calling an HTTP route: bidders and staff by their bearer JWT
(engine/tokens.py verifies it; role and KYC come from the users row), the
remaining platform by its service token."""

from __future__ import annotations

import hmac

import asyncpg
from aiohttp import web

from engine.errors import TokenError
from engine.tokens import verify_token
from engine.users import Caller, load_caller
from web.errors import ApiError


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: web.Request, pool: asyncpg.Pool, secret: str) -> Caller:
    """The caller of a user route, or 401."""
    token = bearer(request)
    if token is None:
        raise ApiError(401, "unauthenticated", "Sign in: this needs a bearer token.")
    try:
        user_id = verify_token(token, secret)
    except TokenError as err:
        raise ApiError(
            401, "unauthenticated", "Sign in again: the token is invalid or expired."
        ) from err
    caller = await load_caller(pool, user_id)
    if caller is None or not caller.is_active:
        raise ApiError(401, "unauthenticated", "Sign in again: this account is not active here.")
    return caller


def require_role(caller: Caller, roles: frozenset[str]) -> None:
    if caller.role not in roles:
        raise ApiError(403, "forbidden", "Your account's role may not do this.")


def is_service(request: web.Request, internal_token: str) -> bool:
    token = bearer(request)
    return token is not None and hmac.compare_digest(token.encode(), internal_token.encode())


def require_service(request: web.Request, internal_token: str) -> None:
    if not is_service(request, internal_token):
        raise ApiError(401, "unauthenticated", "This route needs the platform's service token.")
