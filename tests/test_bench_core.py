"""The `core` bench scenario and its bid stream. Speed is the bench's to show,
never asserted here: these tests hold the stream fixed and the cross-check honest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.core import BenchFailure, Run, check_agreement, load, segments
from bench.core import Path as BenchPath
from bench.reference_model import REASON_CODES, ReferenceBidBatch, ReferenceCore
from bench.streams import MAX_TICK_BIDS, REASONS, BidStream, StreamParams, generate

REPO = Path(__file__).resolve().parent.parent
REQUIRED_RATES = (
    "rust_batch_bids_per_s",
    "rust_single_bids_per_s",
    "reference_bids_per_s",
    "ratio_batch_vs_reference",
    "rust_batch_parallel_bids_per_s",
)
REQUIRED_MAX_RATES = (
    "rust_batch_decisions_per_s",
    "rust_single_decisions_per_s",
    "reference_decisions_per_s",
    "ratio_batch_vs_reference",
    "rust_batch_parallel_decisions_per_s",
    "rust_batch_parallel_chunked_decisions_per_s",
)


def small(bids: int = 20_000, seed: int = 7, max_share: float = 0.0) -> BidStream:
    return generate(StreamParams(bids=bids, seed=seed, max_share=max_share))


def decided_by_the_reference(stream: BidStream) -> tuple[list[Any], list[Any]]:
    """Every bid's and every max's outcome, segment by segment as the bench decides them."""
    core = ReferenceCore(shards=1)
    load(core, stream)
    columns = (stream.auction, stream.user, stream.amount_kobo, stream.at_ms)
    bids, maxes = [], []
    for part in segments(stream):
        batch = ReferenceBidBatch.from_columns(*(c[part.start : part.end] for c in columns))
        bids += core.place_batch(batch)
        maxes += [core.set_max(*call) for call in part.maxes]
    return bids, maxes


def test_the_same_seed_gives_the_same_stream() -> None:
    first, again = small(5_000), small(5_000)
    assert first == again


def test_another_seed_gives_another_stream() -> None:
    assert small(5_000, seed=1).amount_kobo != small(5_000, seed=2).amount_kobo


def test_the_stream_is_equal_columns_of_ints_with_rising_times() -> None:
    stream = small()
    columns = (stream.auction, stream.user, stream.amount_kobo, stream.at_ms)
    assert {len(column) for column in columns} == {20_000}
    assert all(type(value) is int for column in columns for value in column)
    assert stream.at_ms == sorted(stream.at_ms)


def test_about_a_third_of_the_bids_are_refused() -> None:
    mix = small(50_000).mix()
    refused = 1 - mix["accepted"] / 50_000
    assert 0.25 <= refused <= 0.40, mix


def test_every_reason_a_real_bid_can_get_occurs() -> None:
    mix = small(50_000).mix()
    assert all(mix[name] > 0 for name in REASONS), mix


def test_some_accepted_bids_land_in_the_anti_sniping_window() -> None:
    assert small().extensions > 0


def test_the_generators_expectation_is_what_the_reference_model_decides() -> None:
    stream = small()
    core = ReferenceCore(shards=1)
    load(core, stream)
    batch = ReferenceBidBatch.from_columns(
        stream.auction, stream.user, stream.amount_kobo, stream.at_ms
    )
    decided = [outcome.code for outcome in core.place_batch(batch)]
    assert decided == [REASONS[code] for code in stream.expected]


def test_a_stream_without_a_max_share_has_no_maxes_and_one_segment() -> None:
    stream = small(5_000)
    assert (stream.maxes, len(segments(stream))) == ((), 1)


def test_the_same_seed_gives_the_same_stream_with_maxes() -> None:
    assert small(5_000, max_share=0.2) == small(5_000, max_share=0.2)


def test_maxes_come_between_ticks_of_bids_in_order() -> None:
    stream = small(max_share=0.2)
    befores = [event.before for event in stream.maxes]
    assert stream.maxes and befores == sorted(befores)
    # A tick ends after MAX_TICK_BIDS bids, or one more when a race's pair spans it.
    assert all(b % MAX_TICK_BIDS <= 1 or b == len(stream) for b in befores), set(befores)
    assert [event.at_ms for event in stream.maxes] == sorted(event.at_ms for event in stream.maxes)


def test_about_a_tenth_of_the_decisions_are_maxes_mostly_accepted() -> None:
    stream = small(50_000, max_share=0.2)
    accepted = sum(1 for event in stream.maxes if REASONS[event.expected] == "accepted")
    assert 0.04 <= len(stream.maxes) / stream.decisions <= 0.15
    assert accepted / len(stream.maxes) >= 0.5


def test_the_generators_expectation_with_maxes_is_what_the_reference_model_decides() -> None:
    stream = small(max_share=0.2)
    bids, maxes = decided_by_the_reference(stream)
    assert [outcome.code for outcome in bids] == [REASONS[code] for code in stream.expected]
    assert [outcome.code for outcome in maxes] == [REASONS[e.expected] for e in stream.maxes]


def test_leaders_maxes_answer_bids_inside_the_batches() -> None:
    bids, _ = decided_by_the_reference(small(max_share=0.2))
    answered = [outcome for outcome in bids if outcome.accepted and outcome.answer is not None]
    assert len(answered) > 100


def test_a_path_that_decides_one_bid_differently_fails_the_bench() -> None:
    stream = small(1_000)
    codes = bytes(REASON_CODES.index(REASONS[code]) for code in stream.expected)
    tampered = bytearray(codes)
    tampered[500] = (tampered[500] + 1) % len(REASON_CODES)

    def path(name: str, decided: bytes) -> BenchPath:
        def never() -> Run:
            raise AssertionError("not run")

        return BenchPath(name, never, [Run(1.0, decided, core=None)])

    with pytest.raises(BenchFailure, match="first at bid 500"):
        check_agreement(stream, [path("honest", codes), path("tampered", bytes(tampered))])


def test_a_path_that_decides_one_max_differently_fails_the_bench() -> None:
    stream = small(5_000, max_share=0.2)
    codes = bytes(REASON_CODES.index(REASONS[code]) for code in stream.expected)
    max_codes = bytes(REASON_CODES.index(REASONS[e.expected]) for e in stream.maxes)
    tampered = bytearray(max_codes)
    tampered[3] = (tampered[3] + 1) % len(REASON_CODES)

    def path(name: str, decided: bytes) -> BenchPath:
        def never() -> Run:
            raise AssertionError("not run")

        return BenchPath(name, never, [Run(1.0, codes, core=None, max_codes=decided)])

    with pytest.raises(BenchFailure, match="disagree on max 3 "):
        check_agreement(stream, [path("honest", max_codes), path("tampered", bytes(tampered))])


def without_the_tests_package(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import tests` fails, as where the wheel or the
    image is installed (they ship bench/, not tests/)."""
    shadow = tmp_path / "shadow" / "tests"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the tests are not shipped')\n")
    return {**os.environ, "PYTHONPATH": str(shadow.parent)}


def test_every_bench_module_imports_without_the_tests(tmp_path: Path) -> None:
    walk = (
        "import importlib, pkgutil, bench\n"
        "for module in pkgutil.walk_packages(bench.__path__, 'bench.'):\n"
        "    importlib.import_module(module.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", walk],
        cwd=tmp_path,
        env=without_the_tests_package(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_core_scenario_runs_end_to_end_and_its_paths_agree(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "core", "--json", "--bids", "20000"],
        cwd=tmp_path,
        env=without_the_tests_package(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == "core"
    for key in REQUIRED_RATES:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["bids"] == 20_000
    assert result["outcomes_agree"] is True
    assert result["states_agree"] is True
    assert sum(result["rejections"].values()) + result["accepted"] == 20_000
    maxes = result["maxes"]  # the stream with maxes (20 % of bidders, by default)
    for key in REQUIRED_MAX_RATES:
        assert isinstance(maxes[key], float) and maxes[key] > 0, key
    assert (maxes["bids"], maxes["decisions"]) == (20_000, 20_000 + maxes["maxes"])
    assert sum(maxes["max_outcomes"].values()) == maxes["maxes"] > 0
    assert maxes["proxy_rows"] > 0
    assert (maxes["outcomes_agree"], maxes["states_agree"]) == (True, True)
    # What the bid log's hashing costs: every row placed (the maxes' rows too), hashed alone.
    assert result["bid_log_rows"] == result["accepted"]
    assert maxes["bid_log_rows"] == maxes["accepted"] + maxes["proxy_rows"]
    for report in (result, maxes):
        assert report["bid_log_heads_agree"] is True
        assert report["bid_log_hash_ns_per_row"] > 0
        assert 0 < report["bid_log_hash_share_of_rust_batch"] < 1


def test_the_core_scenario_without_a_max_share_runs_the_plain_stream_alone(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "core", "--json", "--bids", "2000", "--max-share", "0"],
        cwd=tmp_path,
        env=without_the_tests_package(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["bids"], result["maxes"]) == (2_000, None)
