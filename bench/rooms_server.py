"""``python -m bench.rooms_server --host H --port P``: the engine's server on the
Python reference core, for ``python -m bench rooms --compare``.

The engine cannot be told to run on another core (the class is fixed in
engine/recovery.py), so this launcher swaps it in from outside, without
touching engine/ or web/: it rebinds ``bidcore.Core`` (and the outcome classes
the sequencer tests for) to bench/reference_model.py's, then serves exactly as
``python -m engine serve`` does (server.serve.serve), and once started prints
which core the sequencer holds; the bench refuses to compare without that line.
(The per-bid-lock baseline needs no launcher: LEDGER_MODE=baseline.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

import bidcore
from bench import reference_model
from engine.config import Settings
from engine.errors import ConfigError
from server.serve import serve
from web.keys import SEQUENCER

#: The prefix of the line saying what was swapped in.
WIRED = "bench.rooms_server wired:"


def use_reference_core() -> None:
    """Make the engine build and recognise the reference model's core and outcomes.

    The engine names these through the module (`bidcore.Core(...)` in recovery,
    `isinstance(outcome, bidcore.Rejected)` in the sequencer), so rebinding the
    module's attributes before the app starts is enough; the exceptions are
    bidcore's own in both.
    """
    bidcore.Core = reference_model.ReferenceCore  # type: ignore[misc,assignment]
    bidcore.Accepted = reference_model.Accepted  # type: ignore[misc,assignment]
    bidcore.Rejected = reference_model.Rejected  # type: ignore[misc,assignment]
    bidcore.Closed = reference_model.Closed  # type: ignore[misc,assignment]


def _announce_core(app: web.Application) -> None:
    core = type(app[SEQUENCER].core)
    print(f"{WIRED} core {core.__module__}.{core.__qualname__}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rooms_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    use_reference_core()
    return serve(settings, host=args.host, port=args.port, on_ready=_announce_core)


if __name__ == "__main__":
    sys.exit(main())
