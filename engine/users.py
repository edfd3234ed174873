"""Users as the remaining platform keeps them current, and what the core holds of them.

The platform's identity service owns users; the engine keeps a copy (email,
role, KYC, display name) upserted through the internal API, and the core
holds each one's committed balance and eligibility to bid. Every change of
those two in the core happens under the user's lock (`user_lock`), so two
writers of one user can never leave the core with the older value.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import msgspec

from engine.clock import to_ms
from engine.errors import Refused
from engine.locks import user_lock
from engine.money import naira_to_kobo
from engine.roles import PLATFORM_USER_ID, may_bid
from engine.sequencer import Sequencer
from engine.text import check_text

# ---- what this service takes and gives ----------------------------------------


class UserUpsert(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /internal/users/{id}`. `is_active` absent: unchanged (true for a new user)."""

    email: str
    role: str
    kyc_status: str
    display_name: str | None = None
    is_active: bool | None = None


class UserBody(msgspec.Struct, frozen=True):
    id: uuid.UUID
    email: str
    role: str
    kyc_status: str
    display_name: str | None
    is_active: bool
    balance_kobo: int
    created_at_ms: int
    updated_at_ms: int


#: Roles the platform may give a user (`system` is the engine's own account).
ROLES = ("user", "verified_seller", "dealer", "concierge", "manager", "admin")
KYC_STATUSES = ("none", "pending", "approved", "rejected")

EMAIL_MAX_LENGTH = 255  # users.email is VARCHAR(255)
DISPLAY_NAME_MAX_LENGTH = 100

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")

_UPSERT = """
INSERT INTO users (id, email, role, kyc_status, display_name, is_active)
VALUES ($1, $2, $3, $4, $5, COALESCE($6, true))
ON CONFLICT (id) DO UPDATE
SET email = EXCLUDED.email, role = EXCLUDED.role, kyc_status = EXCLUDED.kyc_status,
    display_name = EXCLUDED.display_name,
    is_active = COALESCE($6, users.is_active), updated_at = now()
RETURNING id, email, role, kyc_status, display_name, is_active, wallet_balance,
          created_at, updated_at, (xmax = 0) AS created
"""


def eligible(user_id: uuid.UUID, role: str, kyc_status: str, is_active: bool) -> bool:
    """Rule 5 from the row; the platform's own account always places its bids."""
    return user_id == PLATFORM_USER_ID or may_bid(role, kyc_status, is_active)


def sync_core(sequencer: Sequencer, row: asyncpg.Record, balance: Decimal | None = None) -> None:
    """Give the core the committed balance (the row's, or `balance`) and eligibility."""
    sequencer.upsert_user(
        row["id"],
        balance_kobo=naira_to_kobo(row["wallet_balance"] if balance is None else balance),
        eligible=eligible(row["id"], row["role"], row["kyc_status"], row["is_active"]),
    )


def checked_email(raw: str) -> str:
    """The email address, trimmed: one `@` between two parts without whitespace."""
    email = check_text("email", raw, EMAIL_MAX_LENGTH)
    if not email or not _EMAIL.fullmatch(email):
        raise Refused("invalid", "invalid_email", "Give a valid email address, like a@b.ng.")
    return email


def _checked(user_id: uuid.UUID, spec: UserUpsert) -> tuple[str, str | None]:
    """The email and display name, trimmed, once every field is checked."""
    if user_id == PLATFORM_USER_ID:
        raise Refused(
            "conflict",
            "reserved_user",
            "This id belongs to the engine's reserve-protection account; it cannot be changed.",
        )
    email = checked_email(spec.email)
    if spec.role not in ROLES:
        raise Refused("invalid", "invalid_role", f"`role` must be one of: {', '.join(ROLES)}.")
    if spec.kyc_status not in KYC_STATUSES:
        raise Refused(
            "invalid",
            "invalid_kyc_status",
            f"`kyc_status` must be one of: {', '.join(KYC_STATUSES)}.",
        )
    return email, check_text("display_name", spec.display_name, DISPLAY_NAME_MAX_LENGTH)


async def upsert_user(
    pool: asyncpg.Pool, sequencer: Sequencer, user_id: uuid.UUID, spec: UserUpsert
) -> tuple[UserBody, bool]:
    """Create or update the user; the core follows. True when created."""
    email, display_name = _checked(user_id, spec)
    async with user_lock(user_id):
        try:
            row = await pool.fetchrow(
                _UPSERT, user_id, email, spec.role, spec.kyc_status, display_name, spec.is_active
            )
        except asyncpg.UniqueViolationError as err:
            if err.constraint_name == "users_email_key":
                raise Refused(
                    "conflict", "duplicate_email", "Another user already has this email address."
                ) from err
            raise
        sync_core(sequencer, row)
    return user_body(row), bool(row["created"])


def user_body(row: asyncpg.Record) -> UserBody:
    return UserBody(
        id=row["id"],
        email=row["email"],
        role=row["role"],
        kyc_status=row["kyc_status"],
        display_name=row["display_name"],
        is_active=row["is_active"],
        balance_kobo=naira_to_kobo(row["wallet_balance"]),
        created_at_ms=to_ms(row["created_at"]),
        updated_at_ms=to_ms(row["updated_at"]),
    )


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


_CALLER = "SELECT id, role, kyc_status, is_active, display_name FROM users WHERE id = $1"


async def load_caller(pool: asyncpg.Pool, user_id: uuid.UUID) -> Caller | None:
    row = await pool.fetchrow(_CALLER, user_id)
    if row is None:
        return None
    return Caller(row["id"], row["role"], row["kyc_status"], row["is_active"], row["display_name"])
