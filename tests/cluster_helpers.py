"""Which of several engine processes decides an auction (GET /internal/cluster):
its partition's lease holder, once every partition has one and each node holds
its share. Any node takes any bid (a non-owner forwards it); a test that wants
the owner's own path, or the other nodes' watch path, picks the node here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import aiohttp

from bench.cluster import is_balanced
from engine.partitions import partition_of


class Node(Protocol):
    @property
    def base(self) -> str: ...


N = TypeVar("N", bound=Node)


async def cluster(http: aiohttp.ClientSession, base: str, token: str) -> dict[str, Any]:
    async with http.get(
        f"{base}/internal/cluster", headers={"Authorization": f"Bearer {token}"}
    ) as reply:
        reply.raise_for_status()
        body: dict[str, Any] = await reply.json()
        return body


async def balanced(
    http: aiohttp.ClientSession, nodes: Sequence[Node], token: str, timeout_s: float = 20
) -> dict[str, Any]:
    """The cluster view once every partition is held and every node holds its
    share (the partitions split as evenly as they go)."""
    async with asyncio.timeout(timeout_s):
        while True:
            view = await cluster(http, nodes[0].base, token)
            if is_balanced(view, len(nodes)):
                return view
            await asyncio.sleep(0.2)


async def owner_first(
    http: aiohttp.ClientSession, nodes: Sequence[N], token: str, auction_id: uuid.UUID
) -> list[N]:
    """`nodes` with the one deciding `auction_id` first (once balanced)."""
    view = await balanced(http, nodes, token)
    partition = view["partitions"][partition_of(auction_id, len(view["partitions"]))]
    ids = [(await cluster(http, node.base, token))["node"] for node in nodes]
    owner = ids.index(partition["owner"])
    return [nodes[owner], *(node for i, node in enumerate(nodes) if i != owner)]
