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

What the bid log adds: every row a batch places (with the maxes' rows) is
recorded untimed, then hashed alone, ``--repeats`` times, in one
``bidcore.LogBatch.heads()`` call: the hashing the core does where it places
each row, with no decision around it. Reported per row and as a share of the
batch path's time, and its heads held equal to the core's.

Then, unless ``--max-share 0``, the same again on a second stream in which that
share of bidders use maximum bids (bench/streams.py): the bids go in batches of
a tick each, with the maxes asked for in a tick set by ``set_max`` between it
and the next (timed too: a path's rate is its decisions, bids and maxes, over its
median time), so that leaders' maxes answer bids inside the batches. The maxes'
result codes and sampled outcomes are cross-checked like the bids'.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import bidcore
from bench.reference_model import ReferenceBidBatch, ReferenceCore, outcome_fields, state_of
from bench.report import Result, environment, progress
from bench.streams import MAX_TICK_BIDS, REASONS, BidStream, MaxEvent, StreamParams, generate

HELP = "the bid core: compiled batch and one-by-one, 8 shards, against the reference model"
PARALLEL_SHARDS = 8
OUTCOME_SAMPLE = 1000  # bids (and maxes) whose every outcome field is compared across paths
DEFAULT_MAX_SHARE = 0.2
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
    parser.add_argument(
        "--max-share",
        type=_share,
        default=DEFAULT_MAX_SHARE,
        help="share of bidders using maxes in the second stream (0: no second stream)",
    )


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
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
    max_codes: bytes = b""  # bidcore's byte per max
    max_sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Path:
    name: str
    place: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(run.seconds for run in self.runs)


#: set_max's arguments: (auction, user, max_kobo, now_ms).
MaxCall = tuple[int, int, int, int]
#: Bids as columns: auctions, users, amounts, times.
Columns = tuple[list[int], list[int], list[int], list[int]]


@dataclass(frozen=True, slots=True)
class Segment:
    """Bids ``start:end`` of the stream, then the maxes set before the next bid."""

    start: int
    end: int
    maxes: tuple[MaxCall, ...]


def segments(stream: BidStream) -> list[Segment]:
    """The stream cut where maxes come: one segment for a stream without maxes."""
    cuts: dict[int, list[MaxCall]] = {}
    for event in stream.maxes:
        cuts.setdefault(event.before, []).append(_max_call(event))
    parts, start = [], 0
    for before, maxes in sorted(cuts.items()):
        parts.append(Segment(start, before, tuple(maxes)))
        start = before
    if start < len(stream) or not parts:
        parts.append(Segment(start, len(stream), ()))
    return parts


def _max_call(event: MaxEvent) -> MaxCall:
    return event.auction, event.user, event.max_kobo, event.at_ms


class Bench:
    """The prepared stream and batches (one per segment), and one method per timed path."""

    def __init__(self, stream: BidStream, chunk: int) -> None:
        self.stream = stream
        columns = (stream.auction, stream.user, stream.amount_kobo, stream.at_ms)
        self.segments = segments(stream)
        self.single = [
            (_slice(columns, part.start, part.end), part.maxes) for part in self.segments
        ]
        started = time.perf_counter()
        self.batches = [(_batch(bids), maxes) for bids, maxes in self.single]
        self.batch_build_s = time.perf_counter() - started
        started = time.perf_counter()
        self.chunks = [
            ([_batch(_slice(bids, i, i + chunk)) for i in range(0, len(bids[0]), chunk)], maxes)
            for bids, maxes in self.single
        ]
        self.chunks_build_s = time.perf_counter() - started
        started = time.perf_counter()
        self.reference_batches = [
            (ReferenceBidBatch.from_columns(bids[0], bids[1], bids[2], bids[3]), maxes)
            for bids, maxes in self.single
        ]
        self.reference_batch_build_s = time.perf_counter() - started
        step = max(1, len(stream) // OUTCOME_SAMPLE)
        self.sampled = range(0, len(stream), step)
        self.max_sampled = range(0, len(stream.maxes), max(1, len(stream.maxes) // OUTCOME_SAMPLE))
        self.load_s: float | None = None

    def fresh(self, shards: int) -> bidcore.Core:
        core = bidcore.Core(shards=shards)
        started = time.perf_counter()
        load(core, self.stream)
        self.load_s = time.perf_counter() - started
        return core

    def log_rows(self) -> tuple[bidcore.LogBatch, bidcore.Core]:
        """Every row the batch path places, in order, as bid log records (untimed),
        and the core that placed them."""
        core = self.fresh(1)
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
        ids = {handle: core.auction(handle).auction_id for handle in core.auction_handles()}

        def record(rows: Sequence[Any]) -> None:
            for row in rows:
                values = (ids[row.auction], row.seq, row.bidder_number, row.amount_kobo)
                for column, value in zip(
                    columns, (*values, row.at_ms, row.is_platform, row.is_proxy), strict=True
                ):
                    column.append(value)

        for batch, maxes in self.batches:
            for bid in core.place_batch(batch).accepted():
                record([bid] if bid.answer is None else [bid, bid.answer])
            for call in maxes:
                placed = core.set_max(*call)
                record(placed.bids if placed.accepted else [])
        return bidcore.LogBatch.from_columns(*columns), core

    def rust_batch(self, shards: int = 1) -> Run:
        core = self.fresh(shards)
        place, set_max = core.place_batch, core.set_max

        def decide() -> tuple[list[bidcore.BatchResult], list[Any]]:
            results, maxes_set = [], []
            for batch, maxes in self.batches:
                results.append(place(batch))
                for call in maxes:
                    maxes_set.append(set_max(*call))
            return results, maxes_set

        seconds, (results, maxes_set) = _timed(decide)
        outcomes = _Concatenated(results)
        sample = [outcome_fields(outcomes[i]) for i in self.sampled]
        codes = b"".join(result.codes() for result in results)
        return Run(seconds, codes, core, sample, *self._maxes_seen(maxes_set))

    def rust_batch_parallel(self) -> Run:
        return self.rust_batch(PARALLEL_SHARDS)

    def rust_batch_parallel_chunked(self) -> Run:
        core = self.fresh(PARALLEL_SHARDS)
        place, set_max = core.place_batch, core.set_max

        def decide() -> tuple[list[bidcore.BatchResult], list[Any]]:
            results, maxes_set = [], []
            for chunks, maxes in self.chunks:
                results += [place(chunk) for chunk in chunks]
                for call in maxes:
                    maxes_set.append(set_max(*call))
            return results, maxes_set

        seconds, (results, maxes_set) = _timed(decide)
        codes = b"".join(result.codes() for result in results)
        return Run(seconds, codes, core, max_codes=self._maxes_seen(maxes_set)[0])

    def rust_single(self) -> Run:
        core = self.fresh(1)
        place, set_max = core.place_bid, core.set_max

        def one_by_one() -> tuple[list[str], list[str]]:
            # Read each outcome and let it go, as the engine does: outcomes are
            # GC-tracked, and holding a million would time the collector instead.
            codes: list[str] = []
            max_codes: list[str] = []
            append = codes.append
            for bids, maxes in self.single:
                for auction, user, amount, at in zip(*bids, strict=True):
                    append(place(auction, user, amount, at).code)
                for call in maxes:
                    max_codes.append(set_max(*call).code)
            return codes, max_codes

        seconds, (codes, max_codes) = _timed(one_by_one)
        return Run(
            seconds,
            bytes(CODE_OF[code] for code in codes),
            core,
            max_codes=bytes(CODE_OF[code] for code in max_codes),
        )

    def reference(self) -> Run:
        core = ReferenceCore(shards=1)
        load(core, self.stream)
        place, set_max = core.place_batch, core.set_max

        def decide() -> tuple[list[Any], list[Any]]:
            outcomes, maxes_set = [], []
            for batch, maxes in self.reference_batches:
                outcomes += place(batch)
                for call in maxes:
                    maxes_set.append(set_max(*call))
            return outcomes, maxes_set

        seconds, (outcomes, maxes_set) = _timed(decide)
        sample = [outcome_fields(outcomes[i]) for i in self.sampled]
        codes = bytes(CODE_OF[outcome.code] for outcome in outcomes)
        return Run(seconds, codes, core, sample, *self._maxes_seen(maxes_set))

    def _maxes_seen(self, maxes_set: list[Any]) -> tuple[bytes, list[dict[str, Any]]]:
        """The maxes' codes, and every field of a sample of them."""
        codes = bytes(CODE_OF[outcome.code] for outcome in maxes_set)
        return codes, [outcome_fields(maxes_set[i]) for i in self.max_sampled]


def _slice(columns: Columns, start: int, end: int) -> Columns:
    auctions, users, amounts, at = columns
    return auctions[start:end], users[start:end], amounts[start:end], at[start:end]


def _batch(bids: Columns) -> bidcore.BidBatch:
    return bidcore.BidBatch.from_columns(bids[0], bids[1], bids[2], bids[3])


class _Concatenated:
    """Batch results read as one sequence of outcomes."""

    def __init__(self, results: Sequence[bidcore.BatchResult]) -> None:
        self.results = results
        self.starts = [0]
        for result in results:
            self.starts.append(self.starts[-1] + len(result))

    def __getitem__(self, index: int) -> Any:
        part = bisect_right(self.starts, index) - 1
        return self.results[part][index - self.starts[part]]


def _timed(work: Callable[[], T]) -> tuple[float, T]:
    gc.collect()
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def run(args: argparse.Namespace) -> Result:
    params = StreamParams(
        bids=args.bids, auctions=args.auctions, bidders=args.bidders, seed=args.seed
    )
    stream, paths, bench, generate_s, generator_agrees = _measure(params, args)
    result = _result(stream, bench, paths, generate_s, generator_agrees, args)
    result.update(log_cost(bench, args.repeats, paths[0].median_s))
    progress(_summary(result))
    result["maxes"] = None
    if args.max_share > 0:
        params = replace(params, max_share=args.max_share)
        stream, paths, bench, generate_s, generator_agrees = _measure(params, args)
        maxes = _maxes_result(stream, bench, paths, generate_s, generator_agrees)
        maxes.update(log_cost(bench, args.repeats, paths[0].median_s))
        progress(_maxes_summary(maxes))
        result["maxes"] = maxes
    return result


def _measure(
    params: StreamParams, args: argparse.Namespace
) -> tuple[BidStream, list[Path], Bench, float, bool]:
    """Generate the stream, run every path on it and cross-check them."""
    with_maxes = f", {params.max_share:.0%} of bidders using maxes" if params.max_share else ""
    progress(
        f"generating {params.bids:,} bids on {params.auctions:,} auctions from "
        f"{params.bidders:,} bidders (seed {params.seed}{with_maxes})"
    )
    started = time.perf_counter()
    stream = generate(params)
    generate_s = time.perf_counter() - started
    refused = 1 - stream.mix()["accepted"] / len(stream)
    maxes = f", and {len(stream.maxes):,} maxes" if stream.maxes else ""
    progress(
        f"generated in {generate_s:.2f}s ({refused:.1%} to be rejected{maxes}); building batches"
    )
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
    unit = "decisions/s" if stream.maxes else "bids/s"
    for path in paths:
        for repeat in range(args.repeats):
            path.runs.append(path.place())
            progress(
                f"repeat {repeat + 1}/{args.repeats} {path.name:<28} "
                f"{path.runs[-1].seconds:8.3f}s  "
                f"{stream.decisions / path.runs[-1].seconds:>14,.0f} {unit}"
            )
    progress("cross-checking codes, final states and sampled outcomes")
    check_agreement(stream, paths)
    first = paths[0].runs[0]
    generator_agrees = (
        _generator_codes(stream.expected) == first.codes
        and _generator_codes(bytes(event.expected for event in stream.maxes)) == first.max_codes
        and _extensions(_comparable_state(paths[0].runs[-1].core)) == stream.extensions
    )
    if not generator_agrees:
        progress(
            "warning: the stream generator's own expectation differs from the cores "
            "(bench/streams.py's market model is off; the cores agree with each other)"
        )
    return stream, paths, bench, generate_s, generator_agrees


def log_cost(bench: Bench, repeats: int, batch_s: float) -> Result:
    """What hashing the bid log costs per row (module docstring)."""
    rows, core = bench.log_rows()
    times: list[float] = []
    heads: list[tuple[int, bytes]] = []
    for _ in range(repeats):
        seconds, heads = _timed(rows.heads)
        times.append(seconds)
    hashed = statistics.median(times)
    held = {core.auction(h).auction_id: core.auction(h).log_head for h in core.auction_handles()}
    agree = all(head == held.get(auction) for auction, head in heads)
    if not agree:
        raise BenchFailure("the bid log's heads hashed alone differ from the core's")
    per_row = hashed / len(rows) if len(rows) else 0.0
    progress(
        f"bid log: {len(rows):,} rows hashed in {hashed * 1e3:.1f} ms, {per_row * 1e9:.0f} ns a "
        f"row, {len(rows) * per_row / batch_s:.0%} of the batch path's time"
    )
    return {
        "bid_log_rows": len(rows),
        "bid_log_hash_s": hashed,
        "bid_log_hash_ns_per_row": per_row * 1e9,
        "bid_log_hash_share_of_rust_batch": len(rows) * per_row / batch_s,
        "bid_log_heads_agree": agree,
    }


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
    """Every path and repeat: same codes (bids' and maxes'), same final state, same
    sampled outcomes."""
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
            if one.max_codes != base.runs[0].max_codes:
                raise BenchFailure(
                    _max_code_difference(
                        stream,
                        base.name,
                        base.runs[0].max_codes,
                        f"{path.name} (run {number})",
                        one.max_codes,
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
        for i, (mine, theirs) in enumerate(
            zip(path.runs[0].max_sample, sampled[0].runs[0].max_sample, strict=True)
        ):
            if mine != theirs:
                raise BenchFailure(
                    f"sampled max {i} differs between {sampled[0].name} and "
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


def _max_code_difference(stream: BidStream, name_a: str, a: bytes, name_b: str, b: bytes) -> str:
    if len(a) != len(b):
        return f"{name_a} gave {len(a)} max outcomes, {name_b} {len(b)}"
    first = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    event, names = stream.maxes[first], bidcore.REASON_CODES
    return (
        f"{name_a} and {name_b} disagree on max {first} (auction, user, max_kobo, at_ms) = "
        f"{_max_call(event)}, before bid {event.before}: {name_a} says {names[a[first]]}, "
        f"{name_b} says {names[b[first]]}, the stream generator expected "
        f"{REASONS[event.expected]}"
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


def _generator_codes(expected: bytes) -> bytes:
    """The generator's verdicts (indexes into REASONS) as bidcore's bytes."""
    table = bytearray(range(256))
    for i, name in enumerate(REASONS):
        table[i] = CODE_OF[name]
    return expected.translate(table)


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


def _maxes_result(
    stream: BidStream, bench: Bench, paths: Sequence[Path], generate_s: float, agrees: bool
) -> Result:
    """The stream with maxes: rates in decisions (bids and maxes) per second."""
    n = stream.decisions
    rate = {path.name: n / path.median_s for path in paths}
    first = paths[0].runs[0]
    bid_counts, max_counts = Counter(first.codes), Counter(first.max_codes)
    names = bidcore.REASON_CODES
    accepted = bid_counts.get(0, 0)
    final = _comparable_state(paths[0].runs[-1].core)
    rows = sum(auction["bid_count"] for auction in final["auctions"].values())
    return {
        "max_share": stream.params.max_share,
        "bids": len(stream),
        "maxes": len(stream.maxes),
        "decisions": n,
        "rust_batch_decisions_per_s": rate["rust_batch"],
        "rust_single_decisions_per_s": rate["rust_single"],
        "reference_decisions_per_s": rate["reference"],
        "ratio_batch_vs_reference": rate["rust_batch"] / rate["reference"],
        "ratio_single_vs_reference": rate["rust_single"] / rate["reference"],
        "rust_batch_parallel_decisions_per_s": rate["rust_batch_parallel"],
        "rust_batch_parallel_chunked_decisions_per_s": rate["rust_batch_parallel_chunked"],
        "batches": len(bench.segments),
        "max_tick_bids": MAX_TICK_BIDS,
        "seconds": {path.name: path.median_s for path in paths},
        "seconds_best": {path.name: min(run.seconds for run in path.runs) for path in paths},
        "generate_s": generate_s,
        "accepted": accepted,
        "rejected_share": 1 - accepted / len(stream),
        "rejections": {names[code]: count for code, count in sorted(bid_counts.items()) if code},
        "max_outcomes": {names[code]: count for code, count in sorted(max_counts.items())},
        # Rows beyond the accepted bids: placed for maxes (answers, and the maxes' own).
        "proxy_rows": rows - accepted,
        "extensions": _extensions(final),
        "outcomes_agree": True,  # check_agreement raised otherwise
        "states_agree": True,
        "outcome_fields_sampled": len(bench.sampled),
        "max_fields_sampled": len(bench.max_sampled),
        "generator_agrees": agrees,
    }


def _maxes_summary(result: Result) -> str:
    def rate(key: str) -> str:
        value = result[key]
        assert isinstance(value, float)
        return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"

    return (
        f"with maxes, decisions/s: rust batch {rate('rust_batch_decisions_per_s')}, "
        f"rust one by one {rate('rust_single_decisions_per_s')}, "
        f"8 shards {rate('rust_batch_parallel_decisions_per_s')} "
        f"(chunked {rate('rust_batch_parallel_chunked_decisions_per_s')}), "
        f"reference {rate('reference_decisions_per_s')}; "
        f"batch/reference {result['ratio_batch_vs_reference']:.0f}x; "
        f"{result['maxes']:,} maxes, {result['proxy_rows']:,} rows placed for them"
    )
