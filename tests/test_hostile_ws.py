"""Hostile WebSocket frames against a live room: random bytes and text, wrong
types, huge numbers, deep nesting, unknown types, oversized frames, bids and
maximums with hostile fields. The room never breaks: every answer is one of API.md's server
messages (an `error` the client can act on, never `internal`), the socket stays
usable for the next valid frame (a frame over 64 KiB closes it with 1009), and
the ledger is exactly as before, but for the valid bids sent on purpose.

Hypothesis drives the frames from a worker thread; the socket and the app live
on the test's event loop, reached with `run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import jwt as pyjwt
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.tokens import mint_token
from tests.factories import create_user
from tests.test_hostile_ledger import changed, fingerprint
from tests.test_hostile_requests import LEAKS
from tests.ws_helpers import SECRET, RoomClient, Served, make_world, serving
from web.keys import DATABASE, SEQUENCER
from web.ws_messages import Auth, Bid, Max, client_decoder, server_decoder

T = TypeVar("T")

START = 100_000_000
STEP = 5_000_000
MAX_FRAME = 64 * 1024
REFUSALS = {
    "invalid_amount",
    "below_minimum",
    "insufficient_buying_power",
    "already_leading",
    "not_eligible",
    "own_auction",
}

# ---- frames ---------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([0, 1, -1, 10**15 - 1, 10**15, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63)]),
    st.integers(min_value=2**63, max_value=10**40),
    st.integers(max_value=-(2**63), min_value=-(10**40)),
    st.floats(),  # NaN and infinities too: json.dumps writes them as bare words
    st.sampled_from([1.0, 1.5, 1e3, 1e308, -0.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=80))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
TYPES = st.one_of(
    st.sampled_from(
        ["bid", "max", "auth", "resume", "ping", "pong", "snapshot", "error", "BID", ""]
    ),
    st.text(max_size=12),
    JSON_VALUES,
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            " ",
            "\u0000",
            "a\u0000b",
            "\t",
            "\u202eevil",
            "x" * 65,
            "x" * 64,
            "😀" * 64,
            "e\u0301" * 40,
            "'; DROP TABLE bids; --",
        ]
    ),
)


def _bid(amount: Any, client_bid_id: Any, extra: dict[str, Any]) -> str:
    return json.dumps(
        {"type": "bid", "amount_kobo": amount, "client_bid_id": client_bid_id, **extra}
    )


HOSTILE_BIDS = st.builds(
    _bid,
    st.one_of(NUMBERS, JSON_VALUES),
    st.one_of(HOSTILE_TEXT, JSON_VALUES),
    st.dictionaries(st.sampled_from(["is_platform_bid", "user_id", "auction_id", "seq"]), SCALARS),
)


def _max(amount: Any, client_bid_id: Any, extra: dict[str, Any]) -> str:
    return json.dumps({"type": "max", "max_kobo": amount, "client_bid_id": client_bid_id, **extra})


HOSTILE_MAXES = st.builds(
    _max,
    st.one_of(NUMBERS, JSON_VALUES),
    st.one_of(HOSTILE_TEXT, JSON_VALUES),
    st.dictionaries(
        st.sampled_from(["is_proxy", "user_id", "auction_id", "leading", "amount_kobo"]), SCALARS
    ),
)
HOSTILE_OBJECTS = st.builds(
    lambda kind, fields: json.dumps({**fields, "type": kind}),
    TYPES,
    st.dictionaries(
        st.sampled_from(
            ["token", "amount_kobo", "max_kobo", "client_bid_id", "last_seq", "client_time_ms"]
        ),
        JSON_VALUES,
    ),
)
NESTING = st.integers(min_value=1, max_value=MAX_FRAME // 2 - 64)
DEEP = st.one_of(
    NESTING.map(lambda n: "[" * n + "]" * n),
    NESTING.map(lambda n: '{"type": "bid", "amount_kobo": ' + "[" * n + "]" * n + "}"),
    NESTING.map(
        lambda n: '{"type": "ping", "x": ' + '{"a":' * (n // 6) + "1" + "}" * (n // 6) + "}"
    ),
)


@dataclass(frozen=True)
class Binary:
    data: bytes


FRAMES = st.one_of(
    st.binary(max_size=300).map(Binary),
    st.text(max_size=300),
    JSON_VALUES.map(json.dumps),
    HOSTILE_OBJECTS,
    HOSTILE_BIDS,
    HOSTILE_MAXES,
    DEEP,
)

# ---- the room ---------------------------------------------------------------------------


@dataclass
class Room:
    served: Served
    session: aiohttp.ClientSession
    auction_id: uuid.UUID
    rich: str  # a bidder's token, with buying power
    rival: str  # another's
    poor: str  # a bidder's token, without any: no bid of theirs can be accepted

    @property
    def pool(self) -> Any:
        return self.served.app[DATABASE].pool

    async def connect(self, token: str | None = None) -> RoomClient:
        return await RoomClient.connect(
            self.session, self.served.room_url(self.auction_id), token=token
        )


@pytest.fixture
async def room(pool: Any, database_url: str) -> AsyncIterator[Room]:
    world = await make_world(pool, bidders=2)
    poor = await create_user(pool, balance_kobo=0)
    async with (
        serving(database_url, ws_bids_per_s=1_000_000, ws_frames_per_s=1_000_000) as served,
        aiohttp.ClientSession() as session,
    ):
        yield Room(
            served,
            session,
            world.auction_id,
            rich=world.token(world.bidders[0]),
            rival=world.token(world.bidders[1]),
            poor=mint_token(poor, "user", SECRET),
        )


async def send(client: RoomClient, frame: str | Binary) -> None:
    if isinstance(frame, Binary):
        await client.ws.send_bytes(frame.data)
    else:
        await client.ws.send_str(frame)


def expected_results(frames: list[str | Binary], authenticated: bool) -> int:
    """How many `bid_result`s the frames earn (they come after the socket's other replies)."""
    count = 0
    for frame in frames:
        data = frame.data if isinstance(frame, Binary) else frame
        try:
            message = client_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            continue
        if isinstance(message, Auth):
            authenticated = False  # no generated token is valid: the socket turns guest
        elif isinstance(message, Bid | Max) and authenticated:
            count += 1
    return count


def assert_acceptable(raw: str) -> dict[str, Any]:
    """One of API.md's server messages, and no refusal a client could not act on."""
    assert not any(leak in raw for leak in LEAKS), raw
    server_decoder.decode(raw)
    message: dict[str, Any] = json.loads(raw)
    if message["type"] == "error":
        assert message["code"] in {"malformed", "unauthenticated"}, message
        assert message["message"].strip()
    if message["type"] == "bid_result" and message["status"] == "rejected":
        assert message["code"] in REFUSALS, message
    return message


async def exchange(client: RoomClient, token: str, frames: list[str | Binary], marker: int) -> None:
    """Signed in, send the frames, then a ping; read every reply up to its pong, and
    every bid's result (those may come after it)."""
    await client.send(type="auth", token=token)
    await expect_type(client, "snapshot")
    for frame in frames:
        await send(client, frame)
    await client.send(type="ping", client_time_ms=marker)
    results = expected_results(frames, authenticated=True)
    seen_pong = False
    while not seen_pong or results > 0:
        message = await client.ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data, frames)
        decoded = assert_acceptable(message.data)
        if decoded["type"] == "pong" and decoded["client_time_ms"] == marker:
            seen_pong = True
        elif decoded["type"] == "bid_result":
            assert decoded["status"] == "rejected", (decoded, frames)  # no buying power
            results -= 1
    assert results == 0


async def expect_type(client: RoomClient, *kinds: str) -> dict[str, Any]:
    """The next message of one of these types; every one read on the way is acceptable."""
    while True:
        message = await client.ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data)
        decoded = assert_acceptable(message.data)
        if decoded["type"] in kinds:
            return decoded


REFUSED_BIDS = [
    _bid(START, "a\u0000", {}),
    _bid(START, "x" * 65, {}),
    _bid(START, "", {}),
    _bid(START, 7, {}),
    _bid(str(START), "string", {}),
    _bid(True, "bool", {}),
    _bid(None, "null", {}),
    _bid([START], "list", {}),
    '{"type": "bid", "amount_kobo": 100000000, "client_bid_id": "dup", "type": "auth"}',
]
#: Bids of START written as integral numbers with a fraction or an exponent: JSON's
#: integers, so bids of START like any other.
INTEGRAL_BIDS = {
    "float": _bid(float(START), "float", {}),
    "exp": '{"type": "bid", "amount_kobo": 1e8, "client_bid_id": "exp"}',
}


def jwt_sub(token: str) -> str:
    claims: dict[str, Any] = pyjwt.decode(token, SECRET, algorithms=["HS256"])
    return str(claims["sub"])


# ---- tests ----------------------------------------------------------------------------------


async def test_hostile_frames_get_readable_errors_and_change_nothing(room: Room) -> None:
    client = await room.connect()
    before = await fingerprint(room.pool)
    loop = asyncio.get_running_loop()
    markers = itertools.count(1)

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames=st.lists(FRAMES, min_size=1, max_size=5))
    def hostile(frames: list[str | Binary]) -> None:
        run(exchange(client, room.poor, frames, next(markers)))

    await asyncio.to_thread(hostile)

    assert changed(before, await fingerprint(room.pool)) == set()
    assert (await client.bid(START))["code"] == "insufficient_buying_power"  # still usable


async def test_hostile_max_frames_are_answered_by_their_rule_and_change_nothing(
    room: Room,
) -> None:
    """A bidder without buying power sends maximums of every shape: each is refused
    with a readable answer (a whole amount in range by a rule, anything else
    `invalid_amount`, a bad client_bid_id `malformed`), none changes the ledger or
    the core, and the socket answers the next frame."""
    client = await room.connect()
    before = await fingerprint(room.pool)
    state = room.served.app[SEQUENCER].held(room.auction_id)
    loop = asyncio.get_running_loop()
    markers = itertools.count(1)

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames=st.lists(HOSTILE_MAXES, min_size=1, max_size=5))
    def hostile(frames: list[str | Binary]) -> None:
        run(exchange(client, room.poor, frames, next(markers)))

    await asyncio.to_thread(hostile)

    assert changed(before, await fingerprint(room.pool)) == set()
    after = room.served.app[SEQUENCER].held(room.auction_id)
    assert state is not None and after is not None
    assert (after.seq, after.leader, after.prebids) == (state.seq, state.leader, state.prebids)
    await client.send(type="max", max_kobo="lots", client_bid_id="still-usable")
    answer = await client.expect("bid_result", client_bid_id="still-usable")
    assert (answer["status"], answer["code"]) == ("rejected", "invalid_amount")


async def test_a_deeply_nested_frame_is_malformed_and_the_socket_stays_usable(room: Room) -> None:
    client = await room.connect(room.rich)
    depth = 5_000  # msgspec gives up at the interpreter's recursion limit (1000)
    for frame in [
        '{"type": "ping", "client_time_ms": 1, "x": ' + "[" * depth + "]" * depth + "}",
        "[" * (MAX_FRAME // 2) + "]" * (MAX_FRAME // 2),
        '{"type": "bid", "amount_kobo": ' + "[" * depth + "]" * depth + ', "client_bid_id": "a"}',
    ]:
        await client.ws.send_str(frame)
        error = await expect_type(client, "error")
        assert error["code"] == "malformed", (frame[:60], error)
    await client.send(type="ping", client_time_ms=2)
    assert (await expect_type(client, "pong"))["client_time_ms"] == 2


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_a_frame_over_64_kib_closes_with_1009_and_the_room_still_serves(
    room: Room, binary: bool
) -> None:
    before = await fingerprint(room.pool)
    client = await room.connect(room.rich)
    frame = _bid(START, "big", {"pad": "x" * MAX_FRAME})
    if binary:
        await client.ws.send_bytes(frame.encode())
    else:
        await client.ws.send_str(frame)
    closed = await client.ws.receive(timeout=10)
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1009)

    again = await room.connect(room.rich)
    await again.send(type="ping", client_time_ms=5)
    assert (await expect_type(again, "pong"))["client_time_ms"] == 5
    assert changed(before, await fingerprint(room.pool)) == set()


async def test_valid_bids_among_hostile_frames_are_the_only_change(room: Room) -> None:
    before = await fingerprint(room.pool)
    first, second = await room.connect(room.rich), await room.connect(room.rival)
    for client in (first, second):
        for frame in REFUSED_BIDS:
            await client.ws.send_str(frame)
    assert (await first.bid(START, "legit-1"))["status"] == "accepted"
    assert (await second.bid(START + STEP, "legit-2"))["status"] == "accepted"
    for client in (first, second):
        replies = [*client.seen, *await client.silence(0.3)]
        errors = [assert_acceptable(json.dumps(reply)) for reply in replies]
        assert len([e for e in errors if e["type"] == "error"]) == len(REFUSED_BIDS), replies
    for client_bid_id, frame in INTEGRAL_BIDS.items():  # bids of START: below the minimum now
        await first.ws.send_str(frame)
        result = await first.expect("bid_result", client_bid_id=client_bid_id)
        assert (result["status"], result["code"]) == ("rejected", "below_minimum"), frame

    # ledger_progress: the writer's count of committed batches (sql/0012).
    assert changed(before, await fingerprint(room.pool)) == {"bids", "auctions", "ledger_progress"}
    rows = await room.pool.fetch("SELECT client_bid_id FROM bids ORDER BY seq")
    assert [row["client_bid_id"] for row in rows] == ["legit-1", "legit-2"]


async def test_fields_smuggled_into_a_bid_are_never_honoured(room: Room) -> None:
    bidder = await room.connect(room.rich)
    rival_id = uuid.UUID(jwt_sub(room.rival))
    frame = _bid(
        START,
        "smuggled",
        {"is_platform_bid": True, "user_id": str(rival_id), "auction_id": str(uuid.uuid4())},
    )
    await bidder.ws.send_str(frame)
    reply = await expect_type(bidder, "bid_result", "error")
    if reply["type"] == "error":  # refusing unknown fields outright is fine too
        assert reply["code"] == "malformed"
        return
    assert reply["status"] == "accepted"
    row = await room.pool.fetchrow(
        "SELECT user_id, auction_id, is_platform_bid FROM bids WHERE client_bid_id = 'smuggled'"
    )
    assert row["user_id"] == uuid.UUID(jwt_sub(room.rich))
    assert (row["auction_id"], row["is_platform_bid"]) == (room.auction_id, False)
