"""Rooms across server processes over a real Redis: two processes on one
database, a bid placed on one reaches the watchers of the other; when Redis
goes away each keeps serving its own sockets, and both reconnect.

Two processes split the partitions between them (engine/leases.py); the one
holding the auction's partition decides its bids (the owner), the other is a
watch node for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.cluster_helpers import owner_first
from tests.redis_server import RedisServer
from tests.ws_helpers import RoomClient, ServerProcess, World, make_world, process_env

START = 100_000_000
STEP = 5_000_000


@pytest_asyncio.fixture
async def nodes(
    pool: Any, database_url: str, redis: RedisServer
) -> AsyncIterator[tuple[ServerProcess, ServerProcess, World]]:
    world = await make_world(pool, bidders=2)
    env = process_env(database_url, REDIS_URL=redis.url)
    first = await ServerProcess.start(env)
    second = await ServerProcess.start(env)
    try:
        async with aiohttp.ClientSession() as http:
            owner, watch_node = await owner_first(
                http, [first, second], env["INTERNAL_API_TOKEN"], world.auction_id
            )
        yield owner, watch_node, world
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_a_bid_on_one_process_reaches_watchers_on_the_other(
    nodes: tuple[ServerProcess, ServerProcess, World],
) -> None:
    a, b, world = nodes
    alice, bob = world.bidders
    async with aiohttp.ClientSession() as session:
        guest_on_b = await RoomClient.connect(session, b.room_url(world.auction_id))
        alice_on_a = await RoomClient.connect(
            session, a.room_url(world.auction_id), token=world.token(alice)
        )
        alice_on_b = await RoomClient.connect(  # Alice's other tab, served by B
            session, b.room_url(world.auction_id), token=world.token(alice)
        )
        bob_on_a = await RoomClient.connect(
            session, a.room_url(world.auction_id), token=world.token(bob)
        )
        await alice_on_a.bid(START)
        first = await guest_on_b.expect("bid")
        assert first["seq"] == guest_on_b.snapshot["seq"] + 1
        assert (first["amount_kobo"], first["bidder"]) == (START, "Bidder 1")
        assert await alice_on_b.expect("you", status="winning")

        await bob_on_a.bid(START + STEP)
        second = await guest_on_b.expect("bid")
        assert (second["seq"], second["bidder"]) == (first["seq"] + 1, "Bidder 2")
        assert await alice_on_b.expect("you", status="outbid")  # the notice crossed nodes too


async def test_without_redis_each_process_serves_its_own_rooms_and_reconnects(
    nodes: tuple[ServerProcess, ServerProcess, World], redis: RedisServer
) -> None:
    a, b, world = nodes
    alice, bob = world.bidders
    async with aiohttp.ClientSession() as session:
        url_a, url_b = a.room_url(world.auction_id), b.room_url(world.auction_id)
        guest_on_a = await RoomClient.connect(session, url_a)
        guest_on_b = await RoomClient.connect(session, url_b)
        bidders = [
            await RoomClient.connect(session, url_a, token=world.token(user))
            for user in (alice, bob)
        ]
        await bidders[0].bid(START)
        assert (await guest_on_b.expect("bid"))["amount_kobo"] == START

        await redis.stop()
        result = await bidders[1].bid(START + STEP)
        assert result["status"] == "accepted"  # Redis is not on the bid path
        assert await guest_on_a.expect("bid", amount_kobo=START + STEP)  # local fan-out
        assert [m for m in await guest_on_b.silence(0.3) if m["type"] == "bid"] == []

        await redis.start()  # same port: both processes find it again
        amount, turn, reached = START + 2 * STEP, 0, None
        async with asyncio.timeout(15):
            while reached is None:
                assert (await bidders[turn].bid(amount))["status"] == "accepted"
                arrived = [m for m in await guest_on_b.silence(0.5) if m["type"] == "bid"]
                reached = arrived[-1] if arrived else None
                amount, turn = amount + STEP, 1 - turn
        assert reached["amount_kobo"] == amount - STEP
        # B's watcher missed what was sent while Redis was down: resume gives a snapshot.
        await guest_on_b.send(type="resume", last_seq=guest_on_b.snapshot["seq"] + 1)
        fresh = await guest_on_b.expect("snapshot")
        assert fresh["auction"]["current_price_kobo"] == amount - STEP


async def test_a_room_that_missed_events_while_redis_was_away_is_caught_up_on_its_return(
    nodes: tuple[ServerProcess, ServerProcess, World], redis: RedisServer
) -> None:
    a, b, world = nodes
    alice, bob = world.bidders
    async with aiohttp.ClientSession() as session:
        guest_on_b = await RoomClient.connect(session, b.room_url(world.auction_id))
        url_a = a.room_url(world.auction_id)
        alice_on_a = await RoomClient.connect(session, url_a, token=world.token(alice))
        bob_on_a = await RoomClient.connect(session, url_a, token=world.token(bob))
        await alice_on_a.bid(START)
        first = await guest_on_b.expect("bid")

        await redis.stop()
        assert (await bob_on_a.bid(START + STEP))["status"] == "accepted"  # B never hears it
        await redis.start()
        # No bid after it: B learns on subscribing again, not at a next event.
        caught_up = await guest_on_b.expect("snapshot", wait_s=15)

    assert caught_up["seq"] == first["seq"] + 1
    assert caught_up["auction"]["current_price_kobo"] == START + STEP
