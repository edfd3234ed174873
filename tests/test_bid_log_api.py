"""The public bid log over HTTP, as API.md gives it: GET /api/auctions/{id}/log
(anyone), GET /api/auctions/{id}/log/me (the bidder's opening), GET /api/log-keys;
an auction played through the whole app, ended by staff, its log read back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine import bidlog
from engine.roles import PLATFORM_USER_ID
from engine.signing import LogSigner
from engine.tokens import mint_token
from tests.factories import create_auction, create_user
from tests.ws_helpers import LOG_SIGNING_SEED, SECRET, Served, World, make_world, now_ms, serving
from web.keys import SEQUENCER

START = 100_000_000  # the factory's start price, kobo
STEP = 5_000_000  # the factory's increment, kobo
LOG_FIELDS = {
    "seq",
    "bidder",
    "amount_kobo",
    "at_ms",
    "is_platform_bid",
    "is_proxy",
    "hash",
    "commitment",
}
RESULT_FIELDS = {
    "auction_id",
    "final_seq",
    "head",
    "winner",
    "final_price_kobo",
    "signature",
    "key_id",
}


@dataclass
class Played:
    """An auction played through the app: a bid each by two bidders, a reserve-
    protection bid, a maximum answered by a proxy; `end()` has staff end it."""

    served: Served
    session: aiohttp.ClientSession
    auction_id: uuid.UUID
    alice: uuid.UUID
    bob: uuid.UUID
    tokens: dict[uuid.UUID, str]
    staff: str

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.served.base + path, headers=headers) as reply:
            return reply.status, await reply.json()

    async def log(self) -> dict[str, Any]:
        status, body = await self.get(f"/api/auctions/{self.auction_id}/log")
        assert status == 200, body
        return dict(body)

    async def end(self) -> None:
        path = f"/internal/admin/auctions/{self.auction_id}/force-end"
        headers = {"Authorization": f"Bearer {self.staff}"}
        body = {"reason": "Ended for the test"}
        async with self.session.post(self.served.base + path, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()


async def staffed_world(pool: Any) -> tuple[World, str]:
    """A live auction, two bidders, and a manager's token (staff end the auction)."""
    world = await make_world(pool)
    manager = await create_user(pool, role="manager")
    return world, mint_token(manager, "manager", SECRET)


async def play(world: World, staff: str, served: Served, session: aiohttp.ClientSession) -> Played:
    """Bids through the app on an auction made before it started (recovery loads it)."""
    alice, bob = world.bidders
    played = Played(
        served,
        session,
        world.auction_id,
        alice,
        bob,
        world.tokens,
        staff,
    )
    sequencer = served.app[SEQUENCER]
    auction = world.auction_id
    assert (await sequencer.place_bid(auction, alice, START, "a1")).accepted
    assert (
        await sequencer.place_bid(auction, PLATFORM_USER_ID, START + STEP, platform=True)
    ).accepted
    assert (await sequencer.set_max(auction, bob, START + 10 * STEP, "b-max")).accepted
    assert (await sequencer.place_bid(auction, alice, START + 4 * STEP, "a2")).accepted
    return played


async def test_anyone_reads_every_bid_with_its_handle_hash_and_commitment(
    pool: Any, database_url: str
) -> None:
    world, staff = await staffed_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        played = await play(world, staff, served, session)
        log = await played.log()
    assert log["result"] is None
    bids = log["bids"]
    assert all(set(bid) == LOG_FIELDS for bid in bids)
    assert [bid["bidder"] for bid in bids] == [
        "Bidder 1",
        "Reserve protection",
        "Bidder 2",  # the maximum's opening row
        "Bidder 1",
        "Bidder 2",  # its proxy's answer
    ]
    assert [bid["is_proxy"] for bid in bids] == [False, False, True, False, True]
    assert str(played.alice) not in str(log) and str(played.bob) not in str(log)
    seqs = [bid["seq"] for bid in bids]
    assert seqs == sorted(seqs)
    entries = [
        bidlog.Entry(
            b["seq"],
            bidlog.number_of(b["bidder"]) or 0,
            b["amount_kobo"],
            b["at_ms"],
            b["is_platform_bid"],
            b["is_proxy"],
        )
        for b in bids
    ]
    assert [bid["hash"] for bid in bids] == [
        h.hex() for h in bidlog.chain(played.auction_id, entries)
    ]
    platform = bids[1]
    assert platform["commitment"] is None
    assert bids[0]["commitment"] == bids[3]["commitment"] != bids[2]["commitment"]


async def test_the_result_is_published_once_the_auction_is_end_processed(
    pool: Any, database_url: str
) -> None:
    world, staff = await staffed_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        played = await play(world, staff, served, session)
        await played.end()
        log = await played.log()
        status, keys = await played.get("/api/log-keys")
    result = log["result"]
    assert set(result) == RESULT_FIELDS
    last = log["bids"][-1]
    assert result["auction_id"] == str(played.auction_id)
    assert (result["final_seq"], result["head"]) == (last["seq"], last["hash"])
    assert (result["winner"], result["final_price_kobo"]) == ("Bidder 2", last["amount_kobo"])
    signer = LogSigner.from_seed(LOG_SIGNING_SEED)
    assert status == 200
    assert result["key_id"] == signer.key_id
    assert keys["keys"][signer.key_id]["public_key"] == signer.public_key.hex()
    assert keys["keys"][signer.key_id]["algorithm"] == "Ed25519"


async def test_a_bidder_gets_the_opening_of_their_own_handle_alone(
    pool: Any, database_url: str
) -> None:
    world, staff = await staffed_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        played = await play(world, staff, served, session)
        path = f"/api/auctions/{played.auction_id}/log/me"
        openings = {}
        for user in (played.alice, played.bob):
            status, openings[user] = await played.get(path, played.tokens[user])
            assert status == 200, openings[user]
        log = await played.log()
    by_handle = {bid["bidder"]: bid["commitment"] for bid in log["bids"]}
    for user, opening in openings.items():
        assert opening["user_id"] == str(user)
        assert opening["auction_id"] == str(played.auction_id)
        nonce = bytes.fromhex(opening["nonce"])
        commitment = bidlog.commitment_of(played.auction_id, opening["number"], user, nonce)
        assert commitment.hex() == opening["commitment"] == by_handle[opening["bidder"]]
    # One bidder's nonce opens nothing else: not the other's commitment, not for another user.
    alice, bob = openings[played.alice], openings[played.bob]
    alice_nonce = bytes.fromhex(alice["nonce"])
    assert alice_nonce != bytes.fromhex(bob["nonce"])
    for user in (played.alice, played.bob):
        guess = bidlog.commitment_of(played.auction_id, bob["number"], user, alice_nonce)
        assert guess.hex() != bob["commitment"]


async def test_the_opening_needs_a_token_and_a_bid_there(pool: Any, database_url: str) -> None:
    world, staff = await staffed_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        played = await play(world, staff, served, session)
        path = f"/api/auctions/{played.auction_id}/log/me"
        stranger = await create_user(pool, balance_kobo=10**12)
        status, body = await played.get(path)
        assert (status, body["error"]["code"]) == (401, "unauthenticated")
        status, body = await played.get(path, mint_token(stranger, "user", SECRET))
        assert (status, body["error"]["code"]) == (404, "no_handle")
        status, body = await played.get(f"/api/auctions/{uuid.uuid4()}/log/me", played.staff)
        assert (status, body["error"]["code"]) == (404, "not_found")


async def test_an_unknown_or_draft_auction_has_no_log(pool: Any, database_url: str) -> None:
    seller = await create_user(pool, role="dealer")
    draft = await create_auction(
        pool, seller=seller, start_ms=now_ms() + 60_000, end_ms=now_ms() + 120_000, status="draft"
    )
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        for auction in (draft, uuid.uuid4()):
            async with session.get(f"{served.base}/api/auctions/{auction}/log") as reply:
                assert reply.status == 404
                assert (await reply.json())["error"]["code"] == "not_found"
        async with session.get(f"{served.base}/api/auctions/not-a-uuid/log") as reply:
            assert reply.status == 404
