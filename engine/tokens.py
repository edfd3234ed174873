"""Bearer tokens (JWT, HS256): verified on every sign-in, minted only for local
use (`python -m engine token`, the demo); production's come from the
platform's identity service.

A token proves `sub` (a user id) until `exp`, nothing more: role and KYC are
read from the engine's `users` row, never trusted from the token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from engine.errors import TokenError

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    expires_at: float  # `exp`, seconds since the Unix epoch


def mint_token(user_id: uuid.UUID, role: str, secret: str, ttl_s: int = 3600) -> str:
    """A token for local use; the role claim is informative only."""
    now = int(time.time())
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> uuid.UUID:
    """The user id a valid token names; TokenError otherwise (alg none included)."""
    return verify_token_claims(token, secret).user_id


def verify_token_claims(token: str, secret: str) -> TokenClaims:
    """The user id and the expiry of a valid token (a sign-in that lasts, such as a
    room socket's, must end when the token does); TokenError otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        return TokenClaims(uuid.UUID(str(claims["sub"])), float(claims["exp"]))
    except (jwt.InvalidTokenError, ValueError, TypeError) as err:
        raise TokenError(str(err)) from err
