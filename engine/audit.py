"""The admin audit log: one row per change, written in the change's own
transaction (old and new value, reason, the caller's address)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import asyncpg
import msgspec

_AUDIT = """
INSERT INTO admin_audit_log (admin_id, action, target_type, target_id, old_value, new_value,
                             reason, ip_address)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8::inet)
RETURNING id
"""


async def write_audit(
    conn: asyncpg.Connection,
    admin_id: uuid.UUID,
    action: str,
    target_id: uuid.UUID,
    *,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    reason: str | None,
    ip: str | None = None,
    target_type: str = "auction",
) -> uuid.UUID:
    """One `admin_audit_log` row, in the caller's transaction (the change's own)."""
    audit_id: uuid.UUID = await conn.fetchval(
        _AUDIT,
        admin_id,
        action,
        target_type,
        target_id,
        _json(old),
        _json(new),
        reason,
        _ip(ip),
    )
    return audit_id


def _json(value: dict[str, Any] | None) -> str | None:
    return msgspec.json.encode(value).decode() if value is not None else None


def _ip(value: str | None) -> str | None:
    """The caller's address if it is one (a unix socket's peer is not)."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
