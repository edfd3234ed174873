"""Who is calling: bidders and staff by JWT, the remaining platform by its token.

Tokens are issued by the platform's identity service; the engine only verifies
them (HS256, `exp` required, `sub` a user id). Role and KYC are read from the
engine's `users` row, never trusted from the token beyond `sub`.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass

import asyncpg
import jwt
from aiohttp import web

from engine.roles import may_bid
from web.errors import ApiError

ALGORITHM = "HS256"


class AuthError(Exception):
    """A token that proves nothing: missing, malformed, expired or badly signed."""


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: uuid.UUID
    role: str
    kyc_status: str
    is_active: bool
    display_name: str | None

    @property
    def may_bid(self) -> bool:
        return may_bid(self.role, self.kyc_status, self.is_active)


def mint_token(user_id: uuid.UUID, role: str, secret: str, ttl_s: int = 3600) -> str:
    """A token for local use (`python -m engine token`); production's come from identity."""
    now = int(time.time())
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    expires_at: float  # `exp`, seconds since the Unix epoch


def verify_token(token: str, secret: str) -> uuid.UUID:
    """The user id a valid token names; AuthError otherwise (alg none included)."""
    return verify_token_claims(token, secret).user_id


def verify_token_claims(token: str, secret: str) -> TokenClaims:
    """The user id and the expiry of a valid token (for a sign-in that lasts, such
    as a room socket's, which must end when the token does); AuthError otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        return TokenClaims(uuid.UUID(str(claims["sub"])), float(claims["exp"]))
    except (jwt.InvalidTokenError, ValueError, TypeError) as err:
        raise AuthError(str(err)) from err


_CALLER = "SELECT id, role, kyc_status, is_active, display_name FROM users WHERE id = $1"


async def load_caller(pool: asyncpg.Pool, user_id: uuid.UUID) -> Caller | None:
    row = await pool.fetchrow(_CALLER, user_id)
    if row is None:
        return None
    return Caller(row["id"], row["role"], row["kyc_status"], row["is_active"], row["display_name"])


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
    except AuthError as err:
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
