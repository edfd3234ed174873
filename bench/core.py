"""The ``core`` scenario: the compiled bid core against the reference model.

One generated stream (bench/streams.py), fixed before any timing, is decided
from the same initial state by every path, each run on a fresh core:

- ``rust_batch``: ``Core(shards=1).place_batch`` over the whole stream as one
  ``BidBatch`` (built beforehand; its build time is reported apart);
- ``rust_single``: ``Core(shards=1).place_bid`` once per bid from a Python loop;
- ``reference``: ``ReferenceCore.place_batch`` over a prebuilt
  ``ReferenceBidBatch``, the model's fastest path (its ``place_bid`` converts
  and checks every argument first, its batch does that once at build time);
- ``rust_batch_parallel``: ``Core(shards=8).place_batch`` over the whole stream;
- ``rust_batch_parallel_chunked``: the same 8-shard core fed the stream as
  prebuilt batches of ``--chunk`` bids, the way the engine batches a tick's bids.

Each path runs ``--repeats`` times, the paths taking turns, and its rate is the
bid count over the median time. The bench then requires every path (and every
repeat) to give the same result code for every bid, the same final state of
every auction and user, and the same outcome fields on a sample of bids; any
difference fails the run, no figures printed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import bidcore
from bench.reference_model import ReferenceBidBatch, ReferenceCore, outcome_fields, state_of
from bench.report import Result, environment, progress
from bench.streams import REASONS, BidStream, StreamParams, generate

HELP = "the bid core: compiled batch and one-by-one, 8 shards, against the reference model"
PARALLEL_SHARDS = 8
OUTCOME_SAMPLE = 1000  # bids whose every outcome field is compared across paths
#: bidcore's byte for each outcome name.
CODE_OF = {name: i for i, name in enumerate(bidcore.REASON_CODES)}
T = TypeVar("T")


class BenchFailure(Exception):
    """The paths disagree: the figures would compare different work."""


class Loadable(Protocol):
    """What loading the initial state needs; both cores have it."""

    def upsert_user(self, user_id: int, *, balance_kobo: int, eligible: bool) -> int: ...

    def add_auction(
        self,
        auction_id: int,
        *,
        start_time_ms: int,
        end_time_ms: int,
        start_price_kobo: int,
        bid_increment_kobo: int,
        deposit_pct_bp: int = ...,
        sellers: Sequence[int] = ...,
        live: bool = ...,
    ) -> int: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = StreamParams()
    parser.add_argument("--bids", type=_positive, default=defaults.bids)
    parser.add_argument("--auctions", type=_positive, default=defaults.auctions)
    parser.add_argument("--bidders", type=_positive, default=defaults.bidders)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--repeats", type=_positive, default=3, help="runs per path; the median counts"
    )
    parser.add_argument(
        "--chunk", type=_positive, default=8192, help="bids per batch for the chunked 8-shard run"
    )


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load(core: Loadable, stream: BidStream) -> None:
    """Register the stream's users and auctions; handles must be their indexes."""
    for handle, user in enumerate(stream.users):
        got = core.upsert_user(user.user_id, balance_kobo=user.balance_kobo, eligible=user.eligible)
        _require_handle("user", handle, got)
    for handle, auction in enumerate(stream.auctions):
        got = core.add_auction(
            auction.auction_id,
            start_time_ms=auction.start_time_ms,
            end_time_ms=auction.end_time_ms,
            start_price_kobo=auction.start_price_kobo,
            bid_increment_kobo=auction.bid_increment_kobo,
            deposit_pct_bp=auction.deposit_pct_bp,
            sellers=auction.sellers,
            live=auction.live,
        )
        _require_handle("auction", handle, got)


def _require_handle(kind: str, expected: int, got: int) -> None:
    if got != expected:
        raise BenchFailure(
            f"the {kind} registered {expected}th got handle {got}: the stream's "
            "handles assume dense handles in registration order"
        )


@dataclass(slots=True)
class Run:
    """One timed pass of a path over the whole stream, on a fresh core."""

    seconds: float
    codes: bytes  # bidcore's byte per bid
    core: Any  # kept from the last repeat for the state comparison
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Path:
    name: str
    place: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(run.seconds for run in self.runs)


class Bench:
    """The prepared stream and batches, and one method per timed path."""

    def __init__(self, stream: BidStream, chunk: int) -> None:
        self.stream = stream
        columns = (stream.auction, stream.user, stream.amount_kobo, stream.at_ms)
        self.columns = columns
        started = time.perf_counter()
        self.batch = bidcore.BidBatch.from_columns(*columns)
        self.batch_build_s = time.perf_counter() - started
        started = time.perf_counter()
        auctions, users, amounts, at = columns
        self.chunks = [
            bidcore.BidBatch.from_columns(
                auctions[i : i + chunk],
                users[i : i + chunk],
                amounts[i : i + chunk],
                at[i : i + chunk],
            )
            for i in range(0, len(stream), chunk)
        ]
        self.chunks_build_s = time.perf_counter() - started
        started = time.perf_counter()
        self.reference_batch = ReferenceBidBatch.from_columns(*columns)
        self.reference_batch_build_s = time.perf_counter() - started
        step = max(1, len(stream) // OUTCOME_SAMPLE)
        self.sampled = range(0, len(stream), step)
        self.load_s: float | None = None

    def fresh(self, shards: int) -> bidcore.Core:
        core = bidcore.Core(shards=shards)
        started = time.perf_counter()
        load(core, self.stream)
        self.load_s = time.perf_counter() - started
        return core

    def rust_batch(self, shards: int = 1) -> Run:
        core = self.fresh(shards)
        seconds, result = _timed(lambda: core.place_batch(self.batch))
        sample = [outcome_fields(result[i]) for i in self.sampled]
        return Run(seconds, result.codes(), core, sample)

    def rust_batch_parallel(self) -> Run:
        return self.rust_batch(PARALLEL_SHARDS)

    def rust_batch_parallel_chunked(self) -> Run:
        core = self.fresh(PARALLEL_SHARDS)
        place = core.place_batch
        seconds, results = _timed(lambda: [place(chunk) for chunk in self.chunks])
        return Run(seconds, b"".join(result.codes() for result in results), core)

    def rust_single(self) -> Run:
        core = self.fresh(1)
        place = core.place_bid

        def one_by_one() -> list[str]:
            # Read each outcome and let it go, as the engine does: outcomes are
            # GC-tracked, and holding a million would time the collector instead.
            codes: list[str] = []
            append = codes.append
            for auction, user, amount, at in zip(*self.columns, strict=True):
                append(place(auction, user, amount, at).code)
            return codes

        seconds, codes = _timed(one_by_one)
        return Run(seconds, bytes(CODE_OF[code] for code in codes), core)

    def reference(self) -> Run:
        core = ReferenceCore(shards=1)
        load(core, self.stream)
        seconds, outcomes = _timed(lambda: core.place_batch(self.reference_batch))
        sample = [outcome_fields(outcomes[i]) for i in self.sampled]
        return Run(seconds, bytes(CODE_OF[outcome.code] for outcome in outcomes), core, sample)


def _timed(work: Callable[[], T]) -> tuple[float, T]:
    gc.collect()
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def run(args: argparse.Namespace) -> Result:
    params = StreamParams(
        bids=args.bids, auctions=args.auctions, bidders=args.bidders, seed=args.seed
    )
    progress(
        f"generating {params.bids:,} bids on {params.auctions:,} auctions from "
        f"{params.bidders:,} bidders (seed {params.seed})"
    )
    started = time.perf_counter()
    stream = generate(params)
    generate_s = time.perf_counter() - started
    refused = 1 - stream.mix()["accepted"] / len(stream)
    progress(f"generated in {generate_s:.2f}s ({refused:.1%} to be rejected); building batches")
    bench = Bench(stream, args.chunk)
    # The reference goes last: the heap it churns through slows the page faults
    # of whatever allocates next, which would blur the compiled paths' figures.
    paths = [
        Path("rust_batch", bench.rust_batch),
        Path("rust_single", bench.rust_single),
        Path("rust_batch_parallel", bench.rust_batch_parallel),
        Path("rust_batch_parallel_chunked", bench.rust_batch_parallel_chunked),
        Path("reference", bench.reference),
    ]
    for path in paths:
        for repeat in range(args.repeats):
            path.runs.append(path.place())
            progress(
                f"repeat {repeat + 1}/{args.repeats} {path.name:<28} "
                f"{path.runs[-1].seconds:8.3f}s  "
                f"{len(stream) / path.runs[-1].seconds:>14,.0f} bids/s"
            )
    progress("cross-checking codes, final states and sampled outcomes")
    check_agreement(stream, paths)
    generator_agrees = (
        _generator_codes(stream) == paths[0].runs[0].codes
        and _extensions(_comparable_state(paths[0].runs[-1].core)) == stream.extensions
    )
    if not generator_agrees:
        progress(
            "warning: the stream generator's own expectation differs from the cores "
            "(bench/streams.py's market model is off; the cores agree with each other)"
        )
    result = _result(stream, bench, paths, generate_s, generator_agrees, args)
    progress(_summary(result))
    return result


def _summary(result: Result) -> str:
    def rate(key: str) -> str:
        value = result[key]
        assert isinstance(value, float)
        return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"

    return (
        f"bids/s: rust batch {rate('rust_batch_bids_per_s')}, "
        f"rust one by one {rate('rust_single_bids_per_s')}, "
        f"8 shards {rate('rust_batch_parallel_bids_per_s')} "
        f"(chunked {rate('rust_batch_parallel_chunked_bids_per_s')}), "
        f"reference {rate('reference_bids_per_s')}; "
        f"batch/reference {result['ratio_batch_vs_reference']:.0f}x, "
        f"single/reference {result['ratio_single_vs_reference']:.0f}x; "
        f"{result['rejected_share']:.1%} of bids rejected"
    )


def check_agreement(stream: BidStream, paths: Sequence[Path]) -> None:
    """Every path and repeat: same codes, same final state, same sampled outcomes."""
    base = paths[0]
    for path in paths:
        for number, one in enumerate(path.runs, 1):
            if one.codes != base.runs[0].codes:
                raise BenchFailure(
                    _code_difference(
                        stream,
                        base.name,
                        base.runs[0].codes,
                        f"{path.name} (run {number})",
                        one.codes,
                    )
                )
    base_state = _comparable_state(base.runs[-1].core)
    for path in paths[1:]:
        state = _comparable_state(path.runs[-1].core)
        if state != base_state:
            raise BenchFailure(
                f"final state of {path.name} differs from {base.name}: "
                f"{_first_difference(base_state, state)}"
            )
    sampled = [path for path in paths if path.runs[0].sample]
    for path in sampled[1:]:
        for i, (mine, theirs) in enumerate(
            zip(path.runs[0].sample, sampled[0].runs[0].sample, strict=True)
        ):
            if mine != theirs:
                raise BenchFailure(
                    f"sampled outcome {i} differs between {sampled[0].name} and "
                    f"{path.name}: {theirs} != {mine}"
                )


def _code_difference(stream: BidStream, name_a: str, a: bytes, name_b: str, b: bytes) -> str:
    if len(a) != len(b):
        return f"{name_a} gave {len(a)} outcomes, {name_b} {len(b)}"
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    first = differing[0]
    bid = (
        stream.auction[first],
        stream.user[first],
        stream.amount_kobo[first],
        stream.at_ms[first],
    )
    names = bidcore.REASON_CODES
    return (
        f"{name_a} and {name_b} disagree on {len(differing):,} of {len(a):,} bids; first at "
        f"bid {first} (auction, user, amount_kobo, at_ms) = {bid}: {name_a} says "
        f"{names[a[first]]}, {name_b} says {names[b[first]]}, the stream generator expected "
        f"{REASONS[stream.expected[first]]}"
    )


def _comparable_state(core: Any) -> dict[str, Any]:
    state = state_of(core)
    state.pop("shard_count", None)  # the only thing sharding may change
    return state


def _first_difference(a: Any, b: Any, where: str = "state") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}[{key!r}]")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where}: {a!r} != {b!r}"


def _extensions(state: dict[str, Any]) -> int:
    """Anti-sniping extensions so far, read from the auctions' end times."""
    return sum(
        (a["end_time_ms"] - a["original_end_ms"]) // a["anti_snipe_extension_ms"]
        for a in state["auctions"].values()
        if a["anti_snipe_extension_ms"]
    )


def _generator_codes(stream: BidStream) -> bytes:
    table = bytearray(range(256))
    for i, name in enumerate(REASONS):
        table[i] = CODE_OF[name]
    return stream.expected.translate(table)


def _result(
    stream: BidStream,
    bench: Bench,
    paths: Sequence[Path],
    generate_s: float,
    generator_agrees: bool,
    args: argparse.Namespace,
) -> Result:
    n = len(stream)
    rate = {path.name: n / path.median_s for path in paths}
    counts = Counter(paths[0].runs[0].codes)
    rejections = {name: counts.get(code, 0) for code, name in enumerate(bidcore.REASON_CODES)}
    accepted = rejections.pop("accepted")
    return {
        "scenario": "core",
        "rust_batch_bids_per_s": rate["rust_batch"],
        "rust_single_bids_per_s": rate["rust_single"],
        "reference_bids_per_s": rate["reference"],
        "ratio_batch_vs_reference": rate["rust_batch"] / rate["reference"],
        "ratio_single_vs_reference": rate["rust_single"] / rate["reference"],
        "rust_batch_parallel_bids_per_s": rate["rust_batch_parallel"],
        "rust_batch_parallel_chunked_bids_per_s": rate["rust_batch_parallel_chunked"],
        "parallel_shards": PARALLEL_SHARDS,
        "chunk_bids": args.chunk,
        "reference_path": "place_batch",
        "timing": f"median of {args.repeats}, each run on a fresh core",
        "seconds": {path.name: path.median_s for path in paths},
        "seconds_best": {path.name: min(run.seconds for run in path.runs) for path in paths},
        "batch_build_s": bench.batch_build_s,
        "chunks_build_s": bench.chunks_build_s,
        "reference_batch_build_s": bench.reference_batch_build_s,
        "load_s": bench.load_s,
        "generate_s": generate_s,
        "bids": n,
        "auctions": len(stream.auctions),
        "bidders": len(stream.users),
        "seed": stream.params.seed,
        "accepted": accepted,
        "accepted_share": accepted / n,
        "rejected_share": 1 - accepted / n,
        "rejections": rejections,
        "extensions": _extensions(_comparable_state(paths[0].runs[-1].core)),
        "outcomes_agree": True,  # check_agreement raised otherwise
        "states_agree": True,
        "outcome_fields_sampled": len(bench.sampled),
        "generator_agrees": generator_agrees,
        # The stub declares __version__; a build without it should not sink the run.
        "bidcore_version": getattr(bidcore, "__version__", None),
        **environment(),
    }
