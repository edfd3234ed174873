"""``python -m bench.rooms_server MODE --host H --port P``: the engine's server
with one part swapped, for ``python -m bench rooms --compare``.

The engine cannot be told to run these variants yet (LEDGER_MODE is read into
the settings and routed nowhere; the core class is fixed in engine/recovery.py),
so this launcher wires them from outside, without touching engine/ or web/, and
then serves exactly as ``python -m engine serve`` does (web.serve.serve):

- ``baseline``: every bid goes to engine/baseline.py's BaselineLedger (the
  seed's design: one READ COMMITTED transaction per bid holding the auction's
  row lock, rules checked in Python from the rows) instead of the core and the
  write-behind ledger; an accepted bid is handed to the sequencer's commit
  listeners, so the rooms fan it out as they would a committed batch. The core
  is not told about these bids: snapshots then come from the ledger's rows (the
  core's seq is behind), and the core's own end times stay the original ones,
  so a run must finish before its auctions' first end (the bench's runs do).
- ``reference``: the Python reference model (tests/reference_model.py) in
  place of ``bidcore.Core``; every other part is the engine's.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from aiohttp import web

import bidcore
from engine.baseline import BaselineLedger
from engine.bids import BidAccepted, BidOutcome
from engine.config import ConfigError, Settings
from web.app import CLOCK, DATABASE, SEQUENCER


def use_reference_core() -> None:
    """Make the engine build and recognise the reference model's core and outcomes.

    The engine names these through the module (`bidcore.Core(...)` in recovery,
    `isinstance(outcome, bidcore.Rejected)` in the sequencer), so rebinding the
    module's attributes before the app starts is enough; the exceptions are
    bidcore's own in both.
    """
    from tests import reference_model

    bidcore.Core = reference_model.ReferenceCore  # type: ignore[misc,assignment]
    bidcore.Accepted = reference_model.Accepted  # type: ignore[misc,assignment]
    bidcore.Rejected = reference_model.Rejected  # type: ignore[misc,assignment]
    bidcore.Closed = reference_model.Closed  # type: ignore[misc,assignment]


def route_bids_to_baseline(app: web.Application) -> None:
    """From now on the app's sequencer places bids through a BaselineLedger."""
    sequencer = app[SEQUENCER]
    ledger = BaselineLedger(app[DATABASE].pool, clock=app[CLOCK])

    async def place_bid(
        auction_id: uuid.UUID,
        user_id: uuid.UUID,
        amount_kobo: int,
        client_bid_id: str | None = None,
        *,
        platform: bool = False,
    ) -> BidOutcome:
        outcome = await ledger.place_bid(
            auction_id, user_id, amount_kobo, client_bid_id, platform=platform
        )
        if isinstance(outcome, BidAccepted):
            # What the write-behind writer does after a commit: the rooms' listener.
            sequencer._committed([outcome.bid])
        return outcome

    sequencer.place_bid = place_bid  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rooms_server", description=__doc__)
    parser.add_argument("mode", choices=("baseline", "reference"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    from web.serve import serve

    if args.mode == "reference":
        use_reference_core()
        return serve(settings, host=args.host, port=args.port)
    return serve(settings, host=args.host, port=args.port, on_ready=route_bids_to_baseline)


if __name__ == "__main__":
    sys.exit(main())
