"""Guests flooding a room with `resume` and bogus `auth`, as a process of their own
(so that a test's measured clients do not share an event loop with them).

`python -m tests.ws_flood URL SOCKETS SECONDS [FRAMES_PER_S]` opens SOCKETS guest
sockets to the room at URL, prints `ready` once all have their snapshot, waits for
a line on stdin, then on every socket sends `resume` (last_seq -1) and `auth` with
a token that proves nothing, pair after pair, for SECONDS: FRAMES_PER_S a socket,
or (0, the default) as fast as the socket takes them. It reads the answers, and a
second after the last frame prints one JSON line: frames sent (the client's
buffers may hold more than the server has read), answers by kind (`snapshot`,
`error:rate_limited`, …), close codes of sockets closed early.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time

import aiohttp

RESUME = '{"type":"resume","last_seq":-1}'
BOGUS_AUTH = '{"type":"auth","token":"not-a-token-at-all"}'


async def _read(ws: aiohttp.ClientWebSocketResponse, answers: collections.Counter[str]) -> None:
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            break
        decoded = json.loads(message.data)
        kind = decoded["type"]
        answers[f"error:{decoded['code']}" if kind == "error" else kind] += 1


async def _flood(ws: aiohttp.ClientWebSocketResponse, until: float, per_s: float) -> int:
    sent = 0
    began = time.monotonic()
    try:
        while time.monotonic() < until and not ws.closed:
            await ws.send_str(RESUME)
            await ws.send_str(BOGUS_AUTH)
            sent += 2
            due = began + sent / per_s if per_s else 0.0
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # (0: the readers' turn)
    except aiohttp.ClientConnectionResetError:
        pass  # the server let go of this socket (counted as closed early)
    return sent


async def main(url: str, sockets: int, seconds: float, per_s: float) -> None:
    answers: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        guests = [await session.ws_connect(url, heartbeat=None) for _ in range(sockets)]
        for ws in guests:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "snapshot", first
        readers = [asyncio.create_task(_read(ws, answers)) for ws in guests]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        until = time.monotonic() + seconds
        sent = sum(await asyncio.gather(*(_flood(ws, until, per_s) for ws in guests)))
        await asyncio.sleep(1.0)  # the answers to the last frames acted on
        closed_early = [ws.close_code for ws in guests if ws.closed]
        tally = {"sent": sent, "answers": dict(answers), "closed_early": closed_early}
        print(json.dumps(tally), flush=True)
        for reader in readers:
            reader.cancel()
        # Frames still queued behind the close would hold a clean close up: let go.
        for ws in guests:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.close(), 0.1)


if __name__ == "__main__":
    per_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), per_s))
