"""`python -m engine verify-log`: a log played through the app verifies; every
tampering is caught and named (a changed amount, a removed bid, reordered bids,
a changed time, a forged result, a wrong key, a swapped commitment); and against
a real server process, a bid row edited by hand is named by the verifier and by
recovery alike."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine import bidlog
from engine.recovery import recover
from engine.signing import LogSigner
from engine.verify_log import BROKEN, UNREADABLE, VERIFIED, Broken, verify
from tests.factories import create_auction
from tests.test_bid_log_api import play, staffed_world
from tests.ws_helpers import ROOT, ServerProcess, now_ms, process_env, serving

Log = dict[str, Any]


async def played_and_ended(pool: Any, database_url: str) -> tuple[Log, Log, Log, uuid.UUID]:
    """(log, keys, bob's opening, auction id) of an auction played and ended in the app."""
    world, staff = await staffed_world(pool)
    async with serving(database_url) as served, aiohttp.ClientSession() as session:
        played = await play(world, staff, served, session)
        await played.end()
        log = await played.log()
        _, keys = await played.get("/api/log-keys")
        path = f"/api/auctions/{played.auction_id}/log/me"
        _, opening = await played.get(path, played.tokens[played.bob])
    return log, keys, opening, played.auction_id


@pytest.fixture
async def ended(pool: Any, database_url: str) -> tuple[Log, Log, Log, uuid.UUID]:
    return await played_and_ended(pool, database_url)


def broken(log: Log, keys: Log, auction: uuid.UUID | None = None) -> str:
    with pytest.raises(Broken) as caught:
        verify(log, keys, auction)
    return str(caught.value)


def test_the_verifier_imports_nothing_but_the_standard_library_and_cryptography() -> None:
    probe = (
        "import json, sys; import engine.verify_log; "
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    foreign = {
        name
        for name in json.loads(done.stdout)
        if name not in sys.stdlib_module_names and not name.startswith("_")
    }
    assert foreign <= {"engine", "cryptography", "cffi"}, foreign  # cffi: cryptography's own


async def test_a_log_played_through_the_app_verifies_with_its_opening(
    ended: tuple[Log, Log, Log, uuid.UUID],
) -> None:
    log, keys, opening, auction = ended
    verdict = verify(log, keys, opening=opening)
    assert verdict.auction_id == auction
    assert verdict.bids == len(log["bids"])
    assert verdict.lines[-1] == f"opening: Bidder 2 is user {opening['user_id']}"


def tamper(log: Log, change: Callable[[list[Log]], None]) -> Log:
    changed = copy.deepcopy(log)
    change(changed["bids"])
    return changed


def _swap(bids: list[Log]) -> None:
    bids[1], bids[2] = bids[2], bids[1]


@pytest.mark.parametrize(
    ("change", "named_at", "says"),
    [
        (lambda bids: bids[2].update(amount_kobo=bids[2]["amount_kobo"] + 1), 2, "its hash"),
        (lambda bids: bids.pop(1), 1, "its hash"),  # the bid after the removed one
        (_swap, 1, "its hash"),
        (lambda bids: bids[3].update(at_ms=bids[3]["at_ms"] - 1), 3, "its hash"),
        (lambda bids: bids[0].update(is_proxy=True), 0, "its hash"),
        (lambda bids: bids[0].update(bidder="Bidder 2"), 0, "Bidder 2 bids before Bidder 1"),
        (lambda bids: bids[3].update(commitment=bids[2]["commitment"]), 3, "commitment differs"),
        (lambda bids: bids[4].update(hash="0" * 64), 4, "its hash"),
    ],
    ids=[
        "amount",
        "removed",
        "reordered",
        "time",
        "proxy flag",
        "handle",
        "commitment",
        "hash",
    ],
)
def test_a_tampered_bid_is_named(
    ended: tuple[Log, Log, Log, uuid.UUID],
    change: Callable[[list[Log]], None],
    named_at: int,
    says: str,
) -> None:
    log, keys, _, _ = ended
    changed = tamper(log, change)
    message = broken(changed, keys)
    assert message.startswith(f"bid seq {changed['bids'][named_at]['seq']}: "), message
    assert says in message


def test_the_last_bid_removed_is_caught_by_the_result(
    ended: tuple[Log, Log, Log, uuid.UUID],
) -> None:
    log, keys, _, _ = ended
    assert "not the log's last bid's" in broken(tamper(log, lambda bids: bids.pop()), keys)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("final_price_kobo", 1, "final_price_kobo"),
        ("winner", "Bidder 1", "did not place the last bid"),
        ("final_seq", 1, "final_seq and head"),
        ("head", "ab" * 32, "final_seq and head"),
        ("auction_id", str(uuid.UUID(int=1)), "is for auction"),
        ("signature", "cd" * 64, "signature does not hold"),
        ("key_id", "0123456789abcdef", "not among the published keys"),
    ],
)
def test_a_forged_result_is_named(
    ended: tuple[Log, Log, Log, uuid.UUID], field: str, value: Any, says: str
) -> None:
    log, keys, _, auction = ended
    forged = copy.deepcopy(log)
    forged["result"][field] = value
    assert says in broken(forged, keys, auction)


def test_a_result_signed_by_a_key_not_published_under_its_id_is_refused(
    ended: tuple[Log, Log, Log, uuid.UUID],
) -> None:
    log, keys, _, auction = ended
    impostor = LogSigner.from_seed(b"\x07" * 32)
    wrong = copy.deepcopy(keys)
    key_id = log["result"]["key_id"]
    wrong["keys"][key_id]["public_key"] = impostor.public_key.hex()  # another key, the same id
    assert "is not the key with that id" in broken(log, wrong, auction)
    # A result re-signed by the impostor, its key published under its own id: the
    # signature holds, but only over what the impostor signed: a forged price does not.
    forged = copy.deepcopy(log)
    forged["result"]["key_id"] = impostor.key_id
    keys_too = copy.deepcopy(keys)
    keys_too["keys"][impostor.key_id] = {
        "algorithm": "Ed25519",
        "public_key": impostor.public_key.hex(),
    }
    assert "signature does not hold" in broken(forged, keys_too, auction)


def test_a_changed_commitment_breaks_the_signature(
    ended: tuple[Log, Log, Log, uuid.UUID],
) -> None:
    log, keys, _, auction = ended
    other = bidlog.commitment_of(auction, 1, uuid.uuid4(), b"\x00" * 32).hex()

    def swap_bidder_1(bids: list[Log]) -> None:
        for bid in bids:
            if bid["bidder"] == "Bidder 1":
                bid["commitment"] = other

    assert "signature does not hold" in broken(tamper(log, swap_bidder_1), keys, auction)


def test_an_opening_for_another_user_is_refused(ended: tuple[Log, Log, Log, uuid.UUID]) -> None:
    log, keys, opening, _ = ended
    lie = {**opening, "user_id": str(uuid.uuid4())}
    with pytest.raises(Broken, match="does not open Bidder 2's commitment"):
        verify(log, keys, opening=lie)


# ---- the command, against files and a running server ----------------------------------


def verify_log(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "verify-log", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_command_reads_files_and_exits_by_the_verdict(
    ended: tuple[Log, Log, Log, uuid.UUID], tmp_path: Path
) -> None:
    log, keys, _, _ = ended
    (tmp_path / "log.json").write_text(json.dumps(log))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    done = await asyncio.to_thread(
        verify_log, str(tmp_path / "log.json"), "--keys", str(tmp_path / "keys.json")
    )
    assert done.returncode == VERIFIED, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "VERIFIED"
    assert done.stderr == ""
    forged = tamper(log, lambda bids: bids[2].update(amount_kobo=1))
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    done = await asyncio.to_thread(
        verify_log, str(tmp_path / "forged.json"), "--keys", str(tmp_path / "keys.json")
    )
    assert done.returncode == BROKEN
    assert done.stdout.startswith(f"BROKEN: bid seq {forged['bids'][2]['seq']}: ")
    done = await asyncio.to_thread(verify_log, str(tmp_path / "log.json"))
    assert done.returncode == UNREADABLE
    assert "needs --keys" in done.stderr
    done = await asyncio.to_thread(verify_log, str(tmp_path / "missing.json"))
    assert done.returncode == UNREADABLE


async def post(session: aiohttp.ClientSession, url: str, token: str, body: Any) -> None:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status in (200, 201), await r.text()


async def test_a_row_edited_by_hand_is_named_by_the_verifier_and_by_recovery(
    pool: Any, database_url: str
) -> None:
    """Against the engine as its own process: the verifier fetches the logs and the
    keys over HTTP (urllib); one auction is ended and its signed result verified,
    then a bid row of the other, still live, is changed in PostgreSQL."""
    world, staff = await staffed_world(pool)
    ending = await create_auction(
        pool, seller=world.seller, start_ms=now_ms() - 1_000, end_ms=now_ms() + 3_600_000
    )
    live = world.auction_id
    server = await ServerProcess.start(process_env(database_url))
    try:
        async with aiohttp.ClientSession() as session:
            for auction in (live, ending):
                for i, bidder in enumerate([*world.bidders, world.bidders[0]]):
                    bid = {
                        "auction_id": str(auction),
                        "amount_kobo": 100_000_000 + i * 5_000_000,
                        "client_bid_id": f"bid-{i}",
                    }
                    await post(session, f"{server.base}/api/bids", world.token(bidder), bid)
            path = f"/internal/admin/auctions/{ending}/force-end"
            await post(session, server.base + path, staff, {"reason": "Ended for the test"})
        url = f"{server.base}/api/auctions/{{}}/log"
        done = await asyncio.to_thread(verify_log, url.format(ending), "--require-result")
        assert done.returncode == VERIFIED, done.stdout + done.stderr
        assert "won by Bidder 1" in done.stdout
        done = await asyncio.to_thread(verify_log, url.format(live))
        assert done.returncode == VERIFIED, done.stdout + done.stderr

        seq = await pool.fetchval(
            "SELECT seq FROM bids WHERE auction_id = $1 ORDER BY seq OFFSET 1 LIMIT 1", live
        )
        await pool.execute(
            "UPDATE bids SET amount = amount + 100 WHERE auction_id = $1 AND seq = $2", live, seq
        )
        done = await asyncio.to_thread(verify_log, url.format(live))
        assert done.returncode == BROKEN
        assert done.stdout.startswith(f"BROKEN: bid seq {seq}: its hash does not match")
    finally:
        await server.stop()
    assert (await recover(pool)).broken == {live: seq}
