"""The auction room over a WebSocket, as API.md describes it: the whole app on a
real socket, real clients, the real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from engine import auctions, bidlog
from engine.ending import EndResult, end_auction
from engine.standing import standing
from server.app import EndAnnouncer
from tests.ws_helpers import RoomClient, counting_queries, make_world, now_ms, serving
from web.keys import ROOMS, SEQUENCER
from web.rooms import RoomTuning

START = 100_000_000  # the factory's start price, kobo
STEP = 5_000_000  # the factory's increment, kobo
BALANCE = 10**12  # tests.ws_helpers.make_world's bidders'


def you(handle: str | None, status: str | None, *, leads: int = 0) -> dict[str, Any]:
    """A bidder's `you` with no maximum, leading on `leads` alone (deposit 20 %)."""
    return {
        "handle": handle,
        "status": status,
        "max_kobo": None,
        "available_kobo": BALANCE - leads // 5,
    }


def you_message(status: str, *, leads: int = 0) -> dict[str, Any]:
    return {
        "type": "you",
        "status": status,
        "max_kobo": None,
        "available_kobo": BALANCE - leads // 5,
    }


INTERNAL_TOKEN = "ws-test-internal-token"  # tests.ws_helpers.settings_for
SNAPSHOT_ROW = auctions._ONE  # the statement every ledger snapshot starts with

BID_EVENT_FIELDS = {
    "type",
    "seq",
    "amount_kobo",
    "bidder",
    "is_platform_bid",
    "is_proxy",
    "at_ms",
    "end_time_ms",
    "extended",
    "min_next_bid_kobo",
    "bid_count",
    "bidder_count",
    "reserve_met",  # added to API.md's fields
    "hash",
}


async def test_the_first_message_is_the_snapshot(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        before = now_ms()
        ws = await session.ws_connect(served.room_url(world.auction_id))
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "snapshot"
        assert first["you"] is None
        assert first["recent_bids"] == []
        assert before - 1000 <= first["server_time_ms"] <= now_ms() + 1000
        auction = first["auction"]
        assert auction["id"] == str(world.auction_id)
        assert auction["status"] == "live"
        assert auction["current_price_kobo"] is None
        assert auction["min_next_bid_kobo"] == START
        assert auction["bid_increment_kobo"] == STEP
        assert {"start_time_ms", "end_time_ms", "bid_count", "bidder_count", "reserve_met"} <= set(
            auction
        )
        await ws.close()


async def test_a_guest_sees_each_bid_with_an_anonymous_handle(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    alice = world.bidders[0]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        bidder = await RoomClient.connect(session, url, token=world.token(alice))
        result = await bidder.bid(START)
        assert result["status"] == "accepted"

        event = await guest.expect("bid")
        assert set(event) == BID_EVENT_FIELDS  # nothing else: no user id, no email
        assert event["seq"] == guest.snapshot["seq"] + 1
        assert event["amount_kobo"] == START
        assert event["bidder"] == "Bidder 1"
        assert event["is_platform_bid"] is False
        assert event["is_proxy"] is False
        assert event["extended"] is False
        assert event["min_next_bid_kobo"] == START + STEP
        assert (event["bid_count"], event["bidder_count"]) == (1, 1)
        assert event["reserve_met"] is None  # no reserve
        assert event["end_time_ms"] == guest.snapshot["auction"]["end_time_ms"]
        assert str(alice) not in str(event)
        # The bid log's head after it: its record chained on the auction's genesis.
        entry = bidlog.Entry(event["seq"], 1, START, event["at_ms"], False, False)
        first = bidlog.bid_hash(world.auction_id, entry, bidlog.genesis(world.auction_id))
        assert event["hash"] == first.hex()
        stored = await pool.fetchval(
            "SELECT hash FROM bids WHERE auction_id = $1", world.auction_id
        )
        assert stored == first


async def test_the_bid_result_comes_after_the_commit_and_the_room_event(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        bidder = await RoomClient.connect(
            session, served.room_url(world.auction_id), token=world.token(world.bidders[0])
        )
        result = await bidder.bid(START, "first-bid")
        assert [m["type"] for m in bidder.seen] == ["bid", "you"]  # both came before it
        body = result["bid"]
        assert result["client_bid_id"] == "first-bid"
        assert body["auction_id"] == str(world.auction_id)
        assert body["amount_kobo"] == START
        assert body["client_bid_id"] == "first-bid"
        assert {"id", "at_ms", "end_time_ms", "extended"} <= set(body)
        stored = await pool.fetchval(
            "SELECT count(*) FROM bids WHERE id = $1", uuid.UUID(body["id"])
        )
        assert stored == 1


async def test_auth_gives_the_bidder_a_snapshot_naming_them(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        assert a.snapshot["you"] == you(None, None)  # no bid yet
        b = await RoomClient.connect(session, url, token=world.token(bob))
        await a.bid(START)
        await b.bid(START + STEP)

        again = await RoomClient.connect(session, url, token=world.token(alice))
        assert again.snapshot["you"] == you("Bidder 1", "outbid")
        assert again.snapshot["auction"]["current_price_kobo"] == START + STEP
        assert [bid["bidder"] for bid in again.snapshot["recent_bids"]] == ["Bidder 2", "Bidder 1"]
        bob_again = await RoomClient.connect(session, url, token=world.token(bob))
        assert bob_again.snapshot["you"] == you("Bidder 2", "winning", leads=START + STEP)
        # and each good `auth` is answered with `you` too (API.md), the same standing
        for client in (a, again, bob_again):
            standing = {k: v for k, v in client.snapshot["you"].items() if k != "handle"}
            assert client.you == {"type": "you", **standing}


async def test_the_outbid_notice_goes_to_the_previous_leader_alone(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        b = await RoomClient.connect(session, url, token=world.token(bob))
        await a.bid(START)
        assert await a.expect("you") == you_message("winning", leads=START)

        await b.bid(START + STEP)
        assert await a.expect("you") == you_message("outbid")
        assert await b.expect("you") == you_message("winning", leads=START + STEP)
        seen_by_guest = [m["type"] for m in await guest.silence(0.3)]
        assert seen_by_guest == ["bid", "bid"]  # no `you` for a guest


async def test_ping_gets_pong_with_the_server_clock(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        guest = await RoomClient.connect(session, served.room_url(world.auction_id))
        sent = now_ms()
        await guest.send(type="ping", client_time_ms=sent)
        pong = await guest.expect("pong")
        assert pong["client_time_ms"] == sent
        assert sent - 1000 <= pong["server_time_ms"] <= now_ms() + 1000


async def test_resume_replays_the_events_after_last_seq(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        b = await RoomClient.connect(session, url, token=world.token(bob))
        for i, bidder in enumerate([a, b, a]):
            await bidder.bid(START + i * STEP)
        live = [await guest.expect("bid") for _ in range(3)]

        await guest.send(type="resume", last_seq=live[0]["seq"])
        replayed = [await guest.expect("bid") for _ in range(2)]
        assert replayed == live[1:]
        assert await guest.silence(0.2) == []


async def test_resume_after_the_buffer_is_gone_sends_a_fresh_snapshot(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice, bob = world.bidders
    tuning = RoomTuning(replay_events=2)
    async with (
        serving(database_url, tuning=tuning) as served,
        aiohttp.ClientSession() as session,
    ):
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        b = await RoomClient.connect(session, url, token=world.token(bob))
        for i, bidder in enumerate([a, b, a, b]):
            await bidder.bid(START + i * STEP)
        events = [await guest.expect("bid") for _ in range(4)]

        await guest.send(type="resume", last_seq=guest.snapshot["seq"])
        fresh = await guest.expect("snapshot")
        assert fresh["seq"] == events[-1]["seq"]
        assert fresh["auction"]["current_price_kobo"] == START + 3 * STEP
        assert fresh["auction"]["bid_count"] == 4
        # Within the buffer, resume still replays.
        await guest.send(type="resume", last_seq=events[-2]["seq"])
        assert await guest.expect("bid") == events[-1]


async def test_state_changes_and_the_end_reach_the_room_in_seq_order(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=2)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        b = await RoomClient.connect(session, url, token=world.token(bob))
        await a.bid(START)
        await b.bid(START + STEP)
        sequencer = served.app[SEQUENCER]
        new_end = guest.snapshot["auction"]["end_time_ms"] + 600_000
        await sequencer.extend_auction(world.auction_id, new_end)
        change, closed = await sequencer.close_auction(world.auction_id)
        # As the end processing announces it (jobs.lifecycle's EndedPublisher).
        EndAnnouncer(served.app[ROOMS]).publish_ended(
            EndResult(
                auction_id=world.auction_id,
                seq=change.seq + 1,  # the result follows the close
                sold=True,
                final_price_kobo=closed.leading_amount_kobo,
                winner_id=bob,
                winner_number=2,
                winner_balance_kobo=None,
                bidders=[alice, bob],
            )
        )

        first = guest.snapshot["seq"]
        events = [await guest.next() for _ in range(5)]
        assert [(e["type"], e["seq"]) for e in events] == [
            ("bid", first + 1),
            ("bid", first + 2),
            ("state", first + 3),
            ("state", first + 4),
            ("ended", first + 5),
        ]
        extended, closed_event, ended = events[2:]
        assert extended == {
            "type": "state",
            "seq": first + 3,
            "status": "live",
            "end_time_ms": new_end,
        }
        assert closed_event == {
            "type": "state",
            "seq": first + 4,
            "status": "ended",
            "end_time_ms": new_end,
        }
        assert ended == {
            "type": "ended",
            "seq": first + 5,
            "result": "sold",
            "final_price_kobo": START + STEP,
            "winner": "Bidder 2",
        }
        assert await b.expect("you", status="won")
        assert await a.expect("you", status="lost")


async def test_a_repeated_client_bid_id_gets_the_first_outcome(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice = world.bidders[0]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        url = served.room_url(world.auction_id)
        guest = await RoomClient.connect(session, url)
        a = await RoomClient.connect(session, url, token=world.token(alice))
        first = await a.bid(START, "same-id")
        again = await a.bid(START + 7 * STEP, "same-id")
        assert again == first
        # The REST route answers the same id with the same bid.
        response = await session.post(
            f"{served.base}/api/bids",
            json={
                "auction_id": str(world.auction_id),
                "amount_kobo": START,
                "client_bid_id": "same-id",
            },
            headers={"Authorization": f"Bearer {world.token(alice)}"},
        )
        assert response.status == 201
        assert (await response.json())["bid"] == first["bid"]
        assert [m["type"] for m in await guest.silence(0.3)] == ["bid"]
        assert await pool.fetchval("SELECT count(*) FROM bids") == 1


async def test_a_bid_on_an_auction_that_ended_and_left_memory_is_auction_ended(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    alice = world.bidders[0]
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        a = await RoomClient.connect(
            session, served.room_url(world.auction_id), token=world.token(alice)
        )
        sequencer = served.app[SEQUENCER]
        await sequencer.close_auction(world.auction_id)
        sequencer.forget_auction(world.auction_id)
        result = await a.bid(START)
        assert (result["status"], result["code"]) == ("rejected", "auction_ended")
        assert await pool.fetchval("SELECT count(*) FROM bids") == 0


async def test_an_unknown_auction_is_404(pool: Any, database_url: str) -> None:
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        for path in (str(uuid.uuid4()), "not-a-uuid"):
            try:
                await session.ws_connect(f"{served.base}/ws/auctions/{path}")
            except aiohttp.WSServerHandshakeError as err:
                assert err.status == 404
            else:
                raise AssertionError("the handshake should have failed")
        plain = await session.get(f"{served.base}/ws/auctions/{uuid.uuid4()}")
        assert plain.status == 400  # not a WebSocket handshake


async def test_shutdown_closes_every_socket_with_going_away(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    async with aiohttp.ClientSession() as session:
        async with serving(database_url) as served:
            clients = [
                await RoomClient.connect(session, served.room_url(world.auction_id))
                for _ in range(3)
            ]
        for client in clients:
            message = await client.ws.receive(timeout=5)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert message.data == 1001


async def test_the_room_metrics_are_exported(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        bidder = await RoomClient.connect(
            session, served.room_url(world.auction_id), token=world.token(world.bidders[0])
        )
        await bidder.bid(START)
        await asyncio.sleep(0.05)
        text = await (await session.get(f"{served.base}/metrics")).text()
        for name in (
            "auction_ws_connections",
            "auction_ws_messages_sent_total",
            "auction_ws_slow_clients_dropped_total",
            "auction_fanout_seconds_bucket",
        ):
            assert name in text
        assert "auction_id" not in text


async def test_an_early_event_waits_for_the_one_before_it(pool: Any, database_url: str) -> None:
    world = await make_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        guest = await RoomClient.connect(session, served.room_url(world.auction_id))
        rooms, seq = served.app[ROOMS], guest.snapshot["seq"]
        end = guest.snapshot["auction"]["end_time_ms"]
        rooms.publish_state(world.auction_id, seq + 2, "live", end + 2)
        rooms.publish_state(world.auction_id, seq + 1, "live", end + 1)
        rooms.publish_state(world.auction_id, seq + 1, "live", end + 1)  # again: not resent
        got = await guest.silence(0.3)
        assert [(m["seq"], m["end_time_ms"]) for m in got] == [
            (seq + 1, end + 1),
            (seq + 2, end + 2),
        ]


async def test_a_gap_that_never_fills_is_sent_on_and_resume_repairs_it(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool)
    tuning = RoomTuning(reorder_hold_s=0.2)
    async with (
        serving(database_url, tuning=tuning) as served,
        aiohttp.ClientSession() as session,
    ):
        guest = await RoomClient.connect(session, served.room_url(world.auction_id))
        seq, end = guest.snapshot["seq"], guest.snapshot["auction"]["end_time_ms"]
        served.app[ROOMS].publish_state(world.auction_id, seq + 2, "live", end)
        assert await guest.silence(0.1) == []  # held for the missing seq + 1
        late = await guest.expect("state", wait_s=1)
        assert late["seq"] == seq + 2
        await guest.send(type="resume", last_seq=seq)
        assert (await guest.expect("snapshot"))["auction"]["id"] == str(world.auction_id)


async def test_sockets_joining_a_watched_room_get_its_snapshot_from_memory_as_the_ledger_would(
    pool: Any, database_url: str
) -> None:
    world = await make_world(pool, bidders=2)
    alice, bob = world.bidders
    with counting_queries() as queries:
        async with serving(database_url) as served, aiohttp.ClientSession() as session:
            url = served.room_url(world.auction_id)
            a = await RoomClient.connect(session, url, token=world.token(alice))
            b = await RoomClient.connect(session, url, token=world.token(bob))
            for i, bidder in enumerate([a, b, a]):
                assert (await bidder.bid(START + i * STEP))["status"] == "accepted"
            await a.expect("bid", seq=a.snapshot["seq"] + 3)
            await asyncio.sleep(0.1)  # the query loggers' turn

            before = queries.total
            crowd = [await RoomClient.connect(session, url) for _ in range(20)]
            await asyncio.sleep(0.1)
            assert queries.total == before  # no ledger read for any of them

            ledger = await (
                await session.get(f"{served.base}/api/auctions/{world.auction_id}")
            ).json()
    for guest in crowd:
        assert guest.snapshot["seq"] == ledger["seq"]
        assert guest.snapshot["auction"] == ledger["auction"]
        assert guest.snapshot["recent_bids"] == ledger["recent_bids"]
        assert guest.snapshot["you"] is None


async def test_a_resume_past_the_kept_events_is_answered_from_memory_as_the_ledger_would(
    pool: Any, database_url: str
) -> None:
    # A reserve and an anti-sniping window that every bid falls in: the snapshot's
    # reserve_met and end_time_ms move with the bids.
    world = await make_world(
        pool,
        bidders=3,
        auction_type="reserve",
        reserve_kobo=START + 2 * STEP,
        window_ms=7_200_000,
        extension_ms=60_000,
    )
    alice, bob, carol = world.bidders
    tuning = RoomTuning(replay_events=2)
    with counting_queries() as queries:
        async with (
            serving(database_url, tuning=tuning) as served,
            aiohttp.ClientSession() as session,
        ):
            url = served.room_url(world.auction_id)
            guest = await RoomClient.connect(session, url)
            a = await RoomClient.connect(session, url, token=world.token(alice))
            b = await RoomClient.connect(session, url, token=world.token(bob))
            c = await RoomClient.connect(session, url, token=world.token(carol))
            for i, bidder in enumerate([a, b, a, b]):
                assert (await bidder.bid(START + i * STEP))["status"] == "accepted"
            new_end = (await guest.expect("bid"))["end_time_ms"] + 600_000
            await served.app[SEQUENCER].extend_auction(world.auction_id, new_end)
            # Carol bids elsewhere (REST): her socket hears `you` but not her handle.
            reply = await session.post(
                f"{served.base}/api/bids",
                json={
                    "auction_id": str(world.auction_id),
                    "amount_kobo": START + 5 * STEP,
                    "client_bid_id": "carol-rest",
                },
                headers={"Authorization": f"Bearer {world.token(carol)}"},
            )
            assert reply.status == 201
            last = guest.snapshot["seq"] + 6
            await guest.expect("bid", seq=last)
            for bidder in (a, b, c):
                await bidder.expect("bid", seq=last)
            await asyncio.sleep(0.05)

            before = queries.total
            resumed = {}
            for name, client in (("guest", guest), ("a", a), ("b", b)):
                await client.send(type="resume", last_seq=client.snapshot["seq"])
                resumed[name] = await client.expect("snapshot")
            await asyncio.sleep(0.1)  # the query loggers' turn
            assert queries.total == before  # answered from the room's memory

            ledger = await (
                await session.get(f"{served.base}/api/auctions/{world.auction_id}")
            ).json()
            for snapshot in resumed.values():
                assert snapshot["seq"] == ledger["seq"] == last
                assert snapshot["auction"] == ledger["auction"]
                assert snapshot["recent_bids"] == ledger["recent_bids"]
            assert ledger["auction"]["status"] == "live"
            assert ledger["auction"]["end_time_ms"] >= new_end
            assert ledger["auction"]["reserve_met"] is True
            assert resumed["guest"]["you"] is None
            assert resumed["a"]["you"] == you("Bidder 1", "outbid")
            assert resumed["b"]["you"] == you("Bidder 2", "outbid")
            for user, name in ((alice, "a"), (bob, "b")):
                fresh = await standing(pool, world.auction_id, user)
                assert resumed[name]["you"] == {
                    **you(fresh.handle, fresh.status),
                    "max_kobo": fresh.max_kobo,
                }
            # Carol's handle is looked up once (the core knows it): still no query.
            await asyncio.sleep(0.1)
            before = queries.total
            await c.send(type="resume", last_seq=-1)
            assert (await c.expect("snapshot"))["you"] == you(
                "Bidder 3", "winning", leads=START + 5 * STEP
            )
            await asyncio.sleep(0.1)
            assert queries.total == before


async def test_a_sold_rooms_snapshot_is_read_from_the_ledger_at_most_once_a_while(
    pool: Any, database_url: str
) -> None:
    # A payment settles a sale in the ledger without a room event: a resume then
    # shows what the ledger says, re-read at most once per settling_reread_s.
    world = await make_world(pool, bidders=1)
    alice = world.bidders[0]
    tuning = RoomTuning(settling_reread_s=2.0)
    with counting_queries() as queries:
        async with (
            serving(database_url, tuning=tuning) as served,
            aiohttp.ClientSession() as session,
        ):
            url = served.room_url(world.auction_id)
            guest = await RoomClient.connect(session, url)
            a = await RoomClient.connect(session, url, token=world.token(alice))
            await a.bid(START)
            sequencer = served.app[SEQUENCER]
            await sequencer.close_auction(world.auction_id)
            # As jobs.lifecycle finishes it.
            result = await end_auction(pool, world.auction_id, now_ms())
            assert result is not None and result.sold
            EndAnnouncer(served.app[ROOMS]).publish_ended(result)
            sequencer.forget_auction(world.auction_id)
            assert (await guest.expect("ended"))["result"] == "sold"

            await asyncio.sleep(0.05)
            before = queries.statements[SNAPSHOT_ROW]
            for _ in range(5):
                await guest.send(type="resume", last_seq=-1)
                sold = await guest.expect("snapshot")
                assert sold["auction"]["status"] == "pending_settlement"
            await asyncio.sleep(0.1)
            assert queries.statements[SNAPSHOT_ROW] - before == 1

            due = await session.get(
                f"{served.base}/internal/auctions/{world.auction_id}/settlement",
                headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
            )
            paid = await session.post(
                f"{served.base}/internal/auctions/{world.auction_id}/payments",
                json={
                    "payer_id": str(alice),
                    "amount_kobo": (await due.json())["settlement"]["due_kobo"],
                    "reference": "pay-in-full",
                },
                headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
            )
            assert paid.status == 201, await paid.text()
            await asyncio.sleep(tuning.settling_reread_s + 0.1)
            await guest.send(type="resume", last_seq=-1)
            settled = await guest.expect("snapshot")
            ledger = await (
                await session.get(f"{served.base}/api/auctions/{world.auction_id}")
            ).json()
            assert settled["auction"]["status"] == ledger["auction"]["status"] == "settled"
            assert (settled["seq"], settled["auction"]) == (ledger["seq"], ledger["auction"])


async def test_a_room_behind_its_auctions_new_owner_gets_the_ledgers_snapshot(
    pool: Any, database_url: str
) -> None:
    """A bid committed but never published (its owner died right after the
    commit) leaves every room elsewhere behind; the node taking the auction says
    its rebuilt seq (`publish_loaded`), and a room behind it sends its sockets
    the ledger's snapshot, then goes on from there (CLUSTER.md invariant 4:
    events in seq order, or a snapshot, never a silent gap)."""
    world = await make_world(pool)
    alice, bob = world.bidders
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        rooms, sequencer = served.app[ROOMS], served.app[SEQUENCER]
        guest = await RoomClient.connect(session, served.room_url(world.auction_id))
        seq = guest.snapshot["seq"]
        sequencer._listeners.remove(rooms.publish_bids)  # the dying owner publishes nothing
        await sequencer.place_bid(world.auction_id, alice, START, "unheard")
        assert await guest.silence(0.2) == []
        sequencer._listeners.append(rooms.publish_bids)
        rooms.publish_loaded([(world.auction_id, seq + 1)])
        snapshot = await guest.expect("snapshot", wait_s=2)
        await sequencer.place_bid(world.auction_id, bob, START + STEP, "heard")
        event = await guest.expect("bid")

    assert snapshot["seq"] == seq + 1
    assert snapshot["auction"]["current_price_kobo"] == START
    assert (event["seq"], event["amount_kobo"]) == (seq + 2, START + STEP)
