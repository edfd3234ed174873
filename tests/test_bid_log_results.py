"""The bid log's signed results: each node's Ed25519 key (LOG_SIGNING_KEY, or one
kept in ENGINE_DATA_DIR), the keys published in the ledger, and the result end
processing signs and stores in the transaction that ends the auction."""

from __future__ import annotations

import hashlib
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine import bidlog
from engine.clock import ManualClock
from engine.config import Settings
from engine.errors import ConfigError
from engine.publiclog import read_log
from engine.sequencer import Sequencer
from engine.signing import KEY_FILE, LogSigner, kept_seed, load_signer, publish, published_keys
from jobs.lifecycle import Lifecycle
from tests.factories import create_auction, create_user
from tests.test_lifecycle import Rooms

PRICE = 100_000_000
STEP = 5_000_000
START = (time.time_ns() // 1_000_000 // 1000) * 1000
END = START + 3_600_000
SEED = bytes(range(32))

RESULT = """
SELECT final_seq, head, winner_number, final_price_kobo, handles, signature, key_id
FROM bid_log_results WHERE auction_id = $1
"""


# ---- keys ---------------------------------------------------------------------------


def test_a_key_is_made_once_readable_by_its_owner_alone(tmp_path: Path) -> None:
    first = kept_seed(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kept_seed(tmp_path / "data") == first
    assert len(first) == 32
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILE]  # no draft left


def test_a_kept_key_others_may_read_is_refused(tmp_path: Path) -> None:
    kept_seed(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        kept_seed(tmp_path)


def test_a_kept_file_without_a_seed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text("not hex\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="32-byte seed in hex"):
        kept_seed(tmp_path)


def test_log_signing_key_wins_over_the_kept_key(tmp_path: Path) -> None:
    settings = Settings.from_env({"ENGINE_DATA_DIR": str(tmp_path), "LOG_SIGNING_KEY": SEED.hex()})
    signer = load_signer(settings)
    assert signer == LogSigner.from_seed(SEED)
    assert not (tmp_path / KEY_FILE).exists()
    assert load_signer(Settings(engine_data_dir=tmp_path)).key_id != signer.key_id


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "00" * 31, "00" * 33])
def test_a_log_signing_key_that_is_not_32_bytes_of_hex_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="LOG_SIGNING_KEY is not a 32-byte seed") as caught:
        Settings.from_env({"LOG_SIGNING_KEY": value})
    assert value not in str(caught.value)  # a secret is not repeated into logs


def test_a_key_id_is_the_first_8_bytes_of_sha256_of_the_public_key() -> None:
    signer = LogSigner.from_seed(SEED)
    assert signer.key_id == hashlib.sha256(signer.public_key).hexdigest()[:16]
    assert "log_signing_key" not in repr(Settings(log_signing_key=SEED))


async def test_every_nodes_key_is_published_once_and_kept(pool: Any) -> None:
    one, two = LogSigner.from_seed(SEED), LogSigner.from_seed(bytes(32))
    await publish(pool, one, "node-a")
    await publish(pool, two, "node-b")
    await publish(pool, one, "node-a")  # again, at its next start
    keys = (await published_keys(pool)).keys
    assert {key_id: key.public_key for key_id, key in keys.items()} == {
        one.key_id: one.public_key.hex(),
        two.key_id: two.public_key.hex(),
    }
    assert {key.algorithm for key in keys.values()} == {"Ed25519"}


# ---- results --------------------------------------------------------------------------


async def ended_world(
    pool: Any, signer: LogSigner, *, reserve_kobo: int | None = None, bids: int = 3
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """An auction with `bids` bids from two bidders, ended and end-processed."""
    seller = await create_user(pool, role="dealer")
    auction = await create_auction(
        pool,
        seller=seller,
        start_ms=START,
        end_ms=END,
        reserve_kobo=reserve_kobo,
        auction_type="reserve" if reserve_kobo else "timed",
    )
    bidders = [await create_user(pool, balance_kobo=10**12) for _ in range(2)]
    await publish(pool, signer, "test")
    clock = ManualClock(START + 1000)
    sequencer = await Sequencer.open(pool, clock=clock)
    try:
        for i in range(bids):
            assert (await sequencer.place_bid(auction, bidders[i % 2], PRICE + i * STEP)).accepted
        clock.set(END)
        await Lifecycle(pool, sequencer, clock, Rooms(), signer=signer).tick()
    finally:
        await sequencer.close()
    return auction, bidders


def verified(signer: LogSigner, message: bytes, signature: bytes) -> bool:
    key = Ed25519PublicKey.from_public_bytes(signer.public_key)
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


async def test_a_sold_auction_has_its_result_signed_with_the_winner(pool: Any) -> None:
    signer = LogSigner.from_seed(SEED)
    auction, bidders = await ended_world(pool, signer)
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == (
        "pending_settlement"
    )
    row = await pool.fetchrow(RESULT, auction)
    async with pool.acquire() as conn:
        log = await read_log(conn, auction)
    assert log is not None
    last = log.bids[-1]
    assert (row["final_seq"], row["head"]) == (last.entry.seq, last.hash)
    assert (row["winner_number"], row["final_price_kobo"]) == (1, PRICE + 2 * STEP)
    assert row["key_id"] == signer.key_id
    commitments = [
        bidlog.commitment(auction, n, user, log.secret) for n, user in enumerate(bidders, 1)
    ]
    handles = bidlog.handles_digest(auction, commitments)
    assert row["handles"] == handles
    message = bidlog.result_message(
        auction, last.entry.seq, last.hash, 1, PRICE + 2 * STEP, handles
    )
    assert verified(signer, message, row["signature"])
    assert not verified(signer, message[:-1] + b"\x00", row["signature"])


async def test_an_auction_without_bids_signs_its_genesis_and_no_winner(pool: Any) -> None:
    signer = LogSigner.from_seed(SEED)
    auction, _ = await ended_world(pool, signer, bids=0)
    row = await pool.fetchrow(RESULT, auction)
    assert (row["final_seq"], row["head"]) == (0, bidlog.genesis(auction))
    assert (row["winner_number"], row["final_price_kobo"]) == (None, None)
    handles = bidlog.handles_digest(auction, [])
    message = bidlog.result_message(auction, 0, bidlog.genesis(auction), None, None, handles)
    assert verified(signer, message, row["signature"])


async def test_an_auction_below_its_reserve_signs_its_last_price_and_no_winner(pool: Any) -> None:
    signer = LogSigner.from_seed(SEED)
    auction, _ = await ended_world(pool, signer, reserve_kobo=PRICE * 10)
    row = await pool.fetchrow(RESULT, auction)
    assert (row["winner_number"], row["final_price_kobo"]) == (None, PRICE + 2 * STEP)


async def test_a_chain_broken_before_the_end_leaves_the_auction_ended_and_unsigned(
    pool: Any,
) -> None:
    signer = LogSigner.from_seed(SEED)
    seller = await create_user(pool, role="dealer")
    auction = await create_auction(pool, seller=seller, start_ms=START, end_ms=END)
    bidder = await create_user(pool, balance_kobo=10**12)
    await publish(pool, signer, "test")
    clock = ManualClock(START + 1000)
    sequencer = await Sequencer.open(pool, clock=clock)
    try:
        assert (await sequencer.place_bid(auction, bidder, PRICE)).accepted
        # Changed by hand while the auction runs: the core, loaded before, cannot know.
        await pool.execute("UPDATE bids SET amount = amount - 1 WHERE auction_id = $1", auction)
        clock.set(END)
        await Lifecycle(pool, sequencer, clock, Rooms(), signer=signer).tick()
    finally:
        await sequencer.close()
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == "ended"
    assert await pool.fetchval("SELECT count(*) FROM bid_log_results") == 0
    assert await pool.fetchval("SELECT count(*) FROM transactions") == 0  # no deposit held


async def test_a_result_with_an_unpublished_key_is_not_stored(pool: Any) -> None:
    signer = LogSigner.from_seed(SEED)
    seller = await create_user(pool, role="dealer")
    auction = await create_auction(pool, seller=seller, start_ms=START, end_ms=END)
    clock = ManualClock(END)
    sequencer = await Sequencer.open(pool, clock=clock)
    try:
        await Lifecycle(pool, sequencer, clock, Rooms(), signer=signer).tick()
    finally:
        await sequencer.close()
    # The foreign key refused it: the end (unsold) rolled back with it, left to the sweep.
    assert await pool.fetchval("SELECT status FROM auctions WHERE id = $1", auction) == "ended"
