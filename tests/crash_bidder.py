"""A bidding engine to be killed: `python -m tests.crash_bidder DSN ACK_FILE SEED`.

It recovers a Sequencer from the ledger (which verifies the rebuilt core),
then bids without end from many tasks on every live auction, appending one
line per *acknowledged* bid to ACK_FILE. Some bids reuse a client_bid_id
acknowledged before, to check idempotency across kills. The parent test
kills it with SIGKILL at random moments.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from engine.bids import BidAccepted
from engine.database import create_pool
from engine.sequencer import Sequencer

TASKS = 64


async def main(dsn: str, ack_path: str, seed: int) -> None:
    rng = random.Random(seed)
    pool = await create_pool(dsn, min_size=2, max_size=8)
    engine = await Sequencer.open(pool, batch_max=200)
    auctions = [
        row["id"] for row in await pool.fetch("SELECT id FROM auctions WHERE status = 'live'")
    ]
    users = [row["id"] for row in await pool.fetch("SELECT id FROM users WHERE role = 'user'")]
    acked: list[tuple[str, str, str]] = []
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)

    async def bidder(task: int) -> None:
        n = 0
        while True:
            n += 1
            if acked and rng.random() < 0.05:
                auction_s, user_s, client_bid_id = rng.choice(acked)
                auction, user = (
                    next(a for a in auctions if str(a) == auction_s),
                    next(u for u in users if str(u) == user_s),
                )
            else:
                auction, user = rng.choice(auctions), rng.choice(users)
                client_bid_id = f"{seed}-{task}-{n}"
            state = engine.core.auction(engine.registry.auction_handle(auction))
            amount = state.min_next_bid_kobo + rng.choice([0, 0, 5_000_000])
            outcome = await engine.place_bid(auction, user, amount, client_bid_id)
            if isinstance(outcome, BidAccepted):
                bid = outcome.bid
                line = {
                    "id": str(bid.id),
                    "auction": str(auction),
                    "user": str(user),
                    "client_bid_id": client_bid_id,
                    "amount": bid.amount_kobo,
                }
                os.write(fd, (json.dumps(line) + "\n").encode())
                acked.append((str(auction), str(user), client_bid_id))
            await asyncio.sleep(0)

    await asyncio.gather(*(bidder(t) for t in range(TASKS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
