"""``python -m bench SCENARIO [--json] [options]``: run one load scenario.

Progress and a summary go to stderr; the result goes to stdout, as a small table
or, with ``--json``, as one JSON object on the last line. A scenario is a module
with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict``: adding one
is an import and a line in ``SCENARIOS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import cluster, core, ledger, rooms, soak
from bench.report import Result, emit, progress


@dataclass(frozen=True, slots=True)
class Scenario:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Result]


SCENARIOS: dict[str, Scenario] = {
    "core": Scenario(core.HELP, core.add_arguments, core.run),
    "ledger": Scenario(ledger.HELP, ledger.add_arguments, ledger.run),
    "rooms": Scenario(rooms.HELP, rooms.add_arguments, rooms.run),
    "soak": Scenario(soak.HELP, soak.add_arguments, soak.run),
    "cluster": Scenario(cluster.HELP, cluster.add_arguments, cluster.run),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    scenarios = top.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, scenario in SCENARIOS.items():
        sub = scenarios.add_parser(name, help=scenario.help, description=scenario.help)
        sub.add_argument(
            "--json", action="store_true", help="print the result as one JSON line (the last)"
        )
        scenario.add_arguments(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = SCENARIOS[args.scenario].run(args)
    except core.BenchFailure as failure:
        progress(f"FAILED: {failure}")
        return 1
    progress("done")
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
