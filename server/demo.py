"""`python -m engine demo` (the README's `make run`): the engine on its embedded
defaults, seeded with the demo's world (engine/demo.py) once it serves."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from engine.config import Settings
from engine.demo import seed
from server.serve import serve
from web.keys import CLOCK, DATABASE, SEQUENCER


def main(settings: Settings) -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    base_url = f"http://{host}:{port}"

    def ready(app: web.Application) -> None:
        # A task, so seeding (which needs the jobs' scheduler running) never
        # holds up start-up.
        asyncio.get_running_loop().create_task(
            seed(app[DATABASE].pool, app[SEQUENCER], app[CLOCK].now_ms(), settings, base_url)
        )

    return serve(settings, host=host, port=port, on_ready=ready)
