"""The bus on a single Redis server: what a node publishes while its publisher is
busy goes out as one batch, and every other node delivers each message of it."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from redis.asyncio import Redis

from tests.redis_server import RedisServer
from web.bus import BATCH_CHANNEL, BusMessage, RedisBus
from web.redis_link import RedisLink


def message(origin: str, auction: str, seq: int) -> BusMessage:
    return BusMessage(origin, auction, 0, [(seq, b'{"type":"bid"}')], [])


async def test_messages_published_together_go_out_as_one_batch_delivered_on_every_node(
    redis: RedisServer,
) -> None:
    links = [RedisLink(redis.url), RedisLink(redis.url)]
    heard: list[list[BusMessage]] = [[], []]
    all_heard = asyncio.Event()

    def on_second(got: BusMessage) -> None:
        heard[1].append(got)
        if len(heard[1]) == 5:
            all_heard.set()

    buses = [RedisBus(links[0], heard[0].append), RedisBus(links[1], on_second)]
    raw = Redis.from_url(redis.url)
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(BATCH_CHANNEL)
    try:
        for bus in buses:
            await bus.start()
        await asyncio.wait_for(asyncio.gather(*(b.listening.wait() for b in buses)), 10)
        auctions = [str(uuid.uuid4()) for _ in range(5)]
        for n, auction in enumerate(auctions):  # in one go: the publisher runs after
            buses[0].publish(message(buses[0].node_id, auction, n + 1))
        batch = None
        while batch is None:
            batch = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        await asyncio.wait_for(all_heard.wait(), 5)
    finally:
        for bus in buses:
            await bus.close()
        await pubsub.aclose()
        await raw.aclose()
        for link in links:
            await link.aclose()

    published = msgspec.msgpack.decode(batch["data"], type=list[BusMessage])
    assert [m.auction_id for m in published] == auctions  # one Redis message for all five
    assert [m.auction_id for m in heard[1]] == auctions  # the other node delivers each
    assert [m.auction_id for m in heard[0]] == auctions  # its own: delivered at once, once
