"""The `core` bench scenario and its bid stream. Speed is the bench's to show,
never asserted here: these tests hold the stream fixed and the cross-check honest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import BenchFailure, Run, check_agreement, load
from bench.core import Path as BenchPath
from bench.reference_model import REASON_CODES, ReferenceBidBatch, ReferenceCore
from bench.streams import REASONS, BidStream, StreamParams, generate

REPO = Path(__file__).resolve().parent.parent
REQUIRED_RATES = (
    "rust_batch_bids_per_s",
    "rust_single_bids_per_s",
    "reference_bids_per_s",
    "ratio_batch_vs_reference",
    "rust_batch_parallel_bids_per_s",
)


def small(bids: int = 20_000, seed: int = 7) -> BidStream:
    return generate(StreamParams(bids=bids, seed=seed))


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
