"""Partitions: every auction belongs to one, by its id alone (CLUSTER.md).

`partition_of` is the map: the first 8 bytes of the auction's UUID read as an
unsigned 64-bit number, modulo the partition count. It needs no table and never
changes, so any node (and SQL, through `auction_partition(id, partitions)`,
sql/0022) places an auction the same way.

The count is fixed per database: the first node to start writes it
(`settle_partitions`), and a node started with another PARTITIONS refuses to
start, since its map would put auctions in other partitions than the owners'.
"""

from __future__ import annotations

import uuid

import asyncpg

from engine.errors import ConfigError

DEFAULT_PARTITIONS = 64
MAX_PARTITIONS = 4096

_SETTLE = """
INSERT INTO cluster_settings (partitions) VALUES ($1) ON CONFLICT (singleton) DO NOTHING
"""
_READ = "SELECT partitions FROM cluster_settings"
_LEASE_ROWS = """
INSERT INTO partition_leases (id) SELECT generate_series(0, $1 - 1) ON CONFLICT (id) DO NOTHING
"""


def partition_of(auction_id: uuid.UUID, partitions: int) -> int:
    """The partition of `auction_id` among `partitions`."""
    return int.from_bytes(auction_id.bytes[:8], "big") % partitions


async def settle_partitions(conn: asyncpg.Connection, wanted: int | None) -> int:
    """The database's partition count: `wanted` (or DEFAULT_PARTITIONS when None)
    the first time, with a lease row for each; afterwards the stored count, which
    `wanted` must equal when given. Raises ConfigError otherwise."""
    if wanted is not None and not 1 <= wanted <= MAX_PARTITIONS:
        raise ConfigError(f"PARTITIONS={wanted} is out of range: 1 to {MAX_PARTITIONS}")
    async with conn.transaction():
        await conn.execute(_SETTLE, wanted or DEFAULT_PARTITIONS)
        stored: int = await conn.fetchval(_READ)
        if wanted is not None and wanted != stored:
            raise ConfigError(
                f"PARTITIONS={wanted}, but this database was set up with {stored} partitions, "
                "and every auction's partition follows from that count: start the node "
                f"with PARTITIONS={stored} (or without PARTITIONS)"
            )
        await conn.execute(_LEASE_ROWS, stored)
    return stored
