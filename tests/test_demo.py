"""The README's run command: the engine on its embedded defaults with the demo."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
#: A bidder's sign-in link: the token in the fragment, never in the query string.
LINK = re.compile(r"/rooms/([0-9a-f-]{36})#token=[\w.-]+$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_demo_prints_sign_in_links_serves_a_live_auction_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**os.environ, "ENGINE_DATA_DIR": str(tmp_path / "data"), "PORT": str(port)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "demo",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        printed: list[str] = []
        async with asyncio.timeout(60):
            while not printed or "REST:" not in printed[-1]:  # its last line
                line = (await process.stdout.readline()).decode()
                assert line, "the demo exited before printing the room"
                printed.append(line)
        links = [found for line in printed if (found := LINK.search(line))]
        assert len(links) == 3 and "?token=" not in "".join(printed), printed
        room = links[0].group(1)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).status == 200
            async with asyncio.timeout(30):
                while True:
                    snapshot = await (await http.get(f"/api/auctions/{room}")).json()
                    if snapshot["auction"]["status"] == "live":
                        break
                    await asyncio.sleep(0.5)
            page = await http.get(f"/rooms/{room}")
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    finally:
        process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), timeout=30)
    assert status == 0
