"""The notifications outbox: rows written in the same transaction as the fact
they announce; the remaining platform delivers them (email, SMS, in-app)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
import msgspec

_INSERT = """
INSERT INTO notifications (user_id, channel, kind, payload, dedupe_key)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (dedupe_key) DO NOTHING
"""


async def notify(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    *,
    channels: Iterable[str] = ("in_app",),
    occasion: str,
) -> None:
    """One row per channel; `occasion` (say the auction id) makes a repeat a no-op."""
    body = msgspec.json.encode(payload).decode()
    for channel in channels:
        await conn.execute(
            _INSERT, user_id, channel, kind, body, f"{kind}:{occasion}:{user_id}:{channel}"
        )
