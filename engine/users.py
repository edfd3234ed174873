"""Users as the remaining platform keeps them current, and what the core holds of them.

The platform's identity service owns users; the engine keeps a copy (email,
role, KYC, display name) upserted through the internal API, and the core
holds each one's committed balance and eligibility to bid. Every change of
those two in the core happens under the user's lock (`user_lock`), so two
writers of one user can never leave the core with the older value.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Hashable, Iterable
from decimal import Decimal

import asyncpg
import msgspec

from engine.bidders import PLATFORM_USER_ID, may_bid
from engine.clock import to_ms
from engine.errors import Refused
from engine.money import naira_to_kobo
from engine.sequencer import Sequencer

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
#: What `str.strip()` trims (the characters for which `str.isspace()` holds), spelled
#: out as a regular expression's character class for the API's document.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Never in checked text (a character class's body).
CONTROL_CHARACTERS = r"\x00-\x1f\x7f"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")

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


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        held = self._locks.get(key)
        lock, users = held if held is not None else (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_user_locks = KeyedLocks()


def user_lock(user_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[None]:
    """Held by every writer of a user's balance or eligibility, from its read of the
    row to the core's update after COMMIT (issue 5's holds must take it too)."""
    return _user_locks.hold(user_id)


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


def check_text(field: str, value: str | None, max_length: int) -> str | None:
    """A free-text field of at most `max_length` characters as sent (so the API's
    document can say it with `maxLength`), trimmed, with no control characters
    left after trimming."""
    if value is None:
        return None
    if len(value) > max_length:
        raise Refused(
            "invalid", "invalid", f"`{field}` is too long: at most {max_length} characters."
        )
    value = value.strip()
    if _CONTROL.search(value):
        raise Refused("invalid", "invalid", f"`{field}` must not contain control characters.")
    return value


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


@contextlib.asynccontextmanager
async def user_locks(users: Iterable[uuid.UUID]) -> AsyncIterator[None]:
    """Several users' `user_lock`s, always taken in one order, so two holders of
    overlapping sets cannot deadlock."""
    async with contextlib.AsyncExitStack() as stack:
        for user in sorted(set(users)):
            await stack.enter_async_context(user_lock(user))
        yield
