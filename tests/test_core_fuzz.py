"""Every call into the compiled core with arbitrary arguments returns or raises an
ordinary exception (never a Rust panic), and a refused call changes nothing.

`pyo3_runtime.PanicException` derives from BaseException, so calls are caught at
BaseException and anything that is not one of the expected exceptions fails.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import bidcore
from bench.reference_model import state_of

T0 = 1_700_000_000_000
HOUR = 3_600_000

#: What a misused call may raise: Python's conversion errors, or the core's own.
ORDINARY = (TypeError, OverflowError, ValueError, IndexError, bidcore.CoreError)

EDGE_INTS = [
    -(2**128),
    -(2**64),
    -(2**63) - 1,
    -(2**63),
    -(2**31),
    -1,
    0,
    1,
    2**31 - 1,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**128 - 1,
    2**128,
    2**200,
    10**15 - 1,
    10**15,
    10**18 - 1,
    10**18,
    bidcore.MAX_TIME_MS,
    bidcore.MAX_TIME_MS + 1,
]

ANYTHING = st.one_of(
    st.integers(),
    st.sampled_from(EDGE_INTS),
    st.integers(-(2**300), 2**300),
    st.none(),
    st.booleans(),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.one_of(st.integers(-(2**130), 2**130), st.none(), st.floats()), max_size=10),
    st.tuples(st.integers(), st.integers()),
)

USER_IDS = [101, 102, 103, 2**128 - 1]
AUCTION_IDS = [201, 202, 203, 204]

SMALL_HANDLES = st.integers(-2, 8)
AMOUNTS = st.one_of(st.integers(-10, 300_000), st.sampled_from(EDGE_INTS))
TIMES = st.one_of(st.integers(T0 - HOUR, T0 + 3 * HOUR), st.sampled_from(EDGE_INTS))
SETTINGS_MS = st.one_of(st.integers(-1, 604_800_001), st.sampled_from(EDGE_INTS))
BASIS_POINTS = st.one_of(st.integers(-1, 10_001), st.sampled_from(EDGE_INTS))
IDS = st.one_of(st.sampled_from(USER_IDS + AUCTION_IDS), st.sampled_from(EDGE_INTS))
FLAGS = st.booleans()

#: Argument names mapped to values close enough to valid that calls get past conversion.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "user_id": IDS,
    "auction_id": IDS,
    "user": SMALL_HANDLES,
    "auction": SMALL_HANDLES,
    "leader": st.one_of(st.none(), SMALL_HANDLES),
    "balance_kobo": AMOUNTS,
    "amount_kobo": AMOUNTS,
    "start_price_kobo": AMOUNTS,
    "bid_increment_kobo": AMOUNTS,
    "reserve_price_kobo": st.one_of(st.none(), AMOUNTS),
    "leading_amount_kobo": st.one_of(st.none(), AMOUNTS),
    "leader_max_kobo": st.one_of(st.none(), AMOUNTS),
    "max_kobo": AMOUNTS,
    "prebids": st.lists(st.tuples(SMALL_HANDLES, AMOUNTS), max_size=4),
    "start_time_ms": TIMES,
    "end_time_ms": TIMES,
    "original_end_ms": TIMES,
    "now_ms": TIMES,
    "deposit_pct_bp": BASIS_POINTS,
    "anti_snipe_window_ms": SETTINGS_MS,
    "anti_snipe_extension_ms": SETTINGS_MS,
    "sellers": st.lists(IDS, max_size=10),
    "bidders": st.lists(SMALL_HANDLES, max_size=6),
    "bid_count": st.one_of(st.integers(-1, 10), st.sampled_from(EDGE_INTS)),
    "platform_bid_count": st.one_of(st.integers(-1, 10), st.sampled_from(EDGE_INTS)),
    "seq": st.one_of(st.integers(-1, 10), st.sampled_from(EDGE_INTS)),
    "eligible": FLAGS,
    "live": FLAGS,
    "platform": FLAGS,
    "leader_is_platform": FLAGS,
}

ADD_AUCTION_KEYWORDS = [
    "start_time_ms",
    "end_time_ms",
    "start_price_kobo",
    "bid_increment_kobo",
    "reserve_price_kobo",
    "deposit_pct_bp",
    "anti_snipe_window_ms",
    "anti_snipe_extension_ms",
    "sellers",
    "live",
]
RESTORE_KEYWORDS = [
    *ADD_AUCTION_KEYWORDS,
    "original_end_ms",
    "leader",
    "leading_amount_kobo",
    "leader_is_platform",
    "bidders",
    "bid_count",
    "platform_bid_count",
    "seq",
    "leader_max_kobo",
    "prebids",
]

#: Core methods: (positional parameters, keyword-only parameters, changes nothing).
CORE_METHODS: dict[str, tuple[list[str], list[str], bool]] = {
    "upsert_user": (["user_id"], ["balance_kobo", "eligible"], False),
    "user_handle": (["user_id"], [], True),
    "set_balance": (["user", "balance_kobo"], [], False),
    "set_eligible": (["user", "eligible"], [], False),
    "user": (["user"], [], True),
    "add_auction": (["auction_id"], ADD_AUCTION_KEYWORDS, False),
    "restore_auction": (["auction_id"], RESTORE_KEYWORDS, False),
    "auction_handle": (["auction_id"], [], True),
    "auction": (["auction"], [], True),
    "auction_handles": ([], [], True),
    "status_counts": ([], [], True),
    "due": (["now_ms"], [], True),
    "open_auction": (["auction", "now_ms"], [], False),
    "close_auction": (["auction"], [], False),
    "cancel_auction": (["auction"], [], False),
    "extend_auction": (["auction", "end_time_ms"], [], False),
    "remove_auction": (["auction"], [], False),
    "place_bid": (["auction", "user", "amount_kobo", "now_ms", "platform"], [], False),
    "set_max": (["auction", "user", "max_kobo", "now_ms"], [], False),
    "reserve_protection": (["now_ms"], [], True),
}


def guarded(function: Any, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """(True, result) or (False, error); anything but an ordinary exception fails."""
    try:
        return True, function(*args, **kwargs)
    except BaseException as error:
        assert isinstance(error, ORDINARY), f"{type(error).__name__}: {error!r}"
        return False, error


def argument(data: st.DataObject, name: str) -> Any:
    """Mostly a plausible value for `name`, sometimes anything at all."""
    if data.draw(st.integers(0, 3)) == 0:
        return data.draw(ANYTHING)
    return data.draw(PLAUSIBLE[name])


#: Valid keyword arguments to start from, so that calls get past every check but one.
VALID_KEYWORDS: dict[str, dict[str, Any]] = {
    "add_auction": {
        "start_time_ms": T0,
        "end_time_ms": T0 + HOUR,
        "start_price_kobo": 10_000,
        "bid_increment_kobo": 1_000,
        "reserve_price_kobo": None,
        "deposit_pct_bp": 2000,
        "anti_snipe_window_ms": 120_000,
        "anti_snipe_extension_ms": 120_000,
        "sellers": [],
        "live": True,
    },
}
VALID_KEYWORDS["restore_auction"] = {
    **VALID_KEYWORDS["add_auction"],
    "original_end_ms": T0 + HOUR,
    "leader": 1,
    "leading_amount_kobo": 50_000,
    "leader_is_platform": False,
    "bidders": [1],
    "bid_count": 1,
    "platform_bid_count": 0,
    "seq": 0,
    "leader_max_kobo": None,
    "prebids": [],
}


def arguments(
    data: st.DataObject, method: str, positional: list[str], keywords: list[str]
) -> tuple[list[Any], dict[str, Any]]:
    """Plausible arguments with one changed, or wild ones (any value, missing, extra)."""
    args = [data.draw(PLAUSIBLE[name]) for name in positional]
    kwargs = {name: data.draw(PLAUSIBLE[name]) for name in keywords}
    kwargs.update(VALID_KEYWORDS.get(method, {}))
    mode = data.draw(st.sampled_from(["one_changed", "plausible", "wild"]))
    names = positional + keywords
    if mode == "one_changed" and names:
        name = data.draw(st.sampled_from(names))
        value = data.draw(st.one_of(PLAUSIBLE[name], ANYTHING))
        if name in keywords:
            kwargs[name] = value
        else:
            args[positional.index(name)] = value
    elif mode == "wild":
        args = [argument(data, name) for name in positional]
        kwargs = {name: argument(data, name) for name in keywords if data.draw(st.integers(0, 9))}
        if data.draw(st.integers(0, 9)) == 0:
            args.append(data.draw(ANYTHING))  # one argument too many
        if data.draw(st.integers(0, 9)) == 0:
            kwargs["unknown_keyword"] = data.draw(ANYTHING)
    return args, kwargs


def populated_core(data: st.DataObject) -> Any:
    """A core with users, live auctions with leads (one with a max), a closed one and
    a scheduled one with a pre-bid."""
    core = bidcore.Core(
        shards=data.draw(st.sampled_from([8, 1, 3])),
        parallel_min_batch=data.draw(st.sampled_from([4096, 0])),
    )
    for user_id, balance in zip(USER_IDS, [10**9, 50_000, 0, 10**12], strict=True):
        core.upsert_user(user_id, balance_kobo=balance, eligible=user_id != 103)
    for auction_id in AUCTION_IDS:
        core.add_auction(
            auction_id,
            start_time_ms=T0,
            end_time_ms=T0 + HOUR,
            start_price_kobo=10_000,
            bid_increment_kobo=1_000,
            reserve_price_kobo=500_000,
            sellers=[USER_IDS[2]],
            live=auction_id != AUCTION_IDS[3],
        )
    core.place_bid(0, 0, 10_000, T0)
    core.place_bid(1, 1, 20_000, T0 + HOUR - 1)
    assert core.set_max(1, 0, 100_000, T0).leading  # passes the bid: user 0 leads at 21 000
    core.close_auction(2)
    assert core.set_max(3, 3, 50_000, T0).leading  # a pre-bid
    return core


def bid_batch(data: st.DataObject) -> Any:
    """A batch built by either constructor from plausible or arbitrary values."""
    size = data.draw(st.integers(0, 12))
    columns = [
        [argument(data, name) for _ in range(size)]
        for name in ("auction", "user", "amount_kobo", "now_ms", "platform")
    ]
    if data.draw(st.booleans()):
        ok, batch = guarded(bidcore.BidBatch.from_columns, *columns)
        return batch if ok else bidcore.BidBatch()
    batch = bidcore.BidBatch()
    for bid in zip(*columns, strict=True):
        before = len(batch)
        if not guarded(batch.append, *bid)[0]:
            assert len(batch) == before, "a refused append changed the batch"
    return batch


def refused(ok: bool, result: Any) -> bool:
    """A raising call, a rejected bid, or a batch with every bid rejected."""
    if not ok:
        return True
    if isinstance(result, bidcore.Rejected):
        return True
    return isinstance(result, bidcore.BatchResult) and result.accepted_count == 0


def call_core_method(data: st.DataObject, core: Any) -> None:
    name = data.draw(st.sampled_from(sorted(CORE_METHODS)))
    positional, keywords, read_only = CORE_METHODS[name]
    args, kwargs = arguments(data, name, positional, keywords)
    before = state_of(core)
    ok, result = guarded(getattr(core, name), *args, **kwargs)
    if read_only or refused(ok, result):
        assert state_of(core) == before, f"{name}({args}, {kwargs}) changed the core"


def call_place_batch(data: st.DataObject, core: Any) -> None:
    not_a_batch = data.draw(st.integers(0, 4)) == 0
    batch = data.draw(ANYTHING) if not_a_batch else bid_batch(data)
    before = state_of(core)
    ok, result = guarded(core.place_batch, batch)
    if refused(ok, result):
        assert state_of(core) == before, "a refused batch changed the core"
    if ok:
        poke_batch_result(data, result)


def poke_batch_result(data: st.DataObject, result: Any) -> None:
    guarded(result.codes)
    guarded(result.accepted)
    guarded(lambda: result.accepted_count)
    guarded(len, result)
    for _ in range(data.draw(st.integers(0, 3))):
        index = data.draw(st.one_of(st.integers(-len(result) - 2, len(result) + 2), ANYTHING))
        guarded(lambda index=index: result[index])


def call_batch_method(data: st.DataObject) -> None:
    batch = bid_batch(data)
    before = len(batch)
    operation = data.draw(st.sampled_from(["append", "clear", "len", "from_columns"]))
    if operation == "append":
        args = [argument(data, n) for n in ("auction", "user", "amount_kobo", "now_ms")]
        args += [data.draw(st.one_of(FLAGS, ANYTHING))] * data.draw(st.integers(0, 1))
        if not guarded(batch.append, *args)[0]:
            assert len(batch) == before
    elif operation == "clear":
        batch.clear()
        assert len(batch) == 0
    elif operation == "len":
        assert guarded(len, batch) == (True, before)
    else:
        columns = [data.draw(st.one_of(st.lists(ANYTHING, max_size=4), ANYTHING)) for _ in range(5)]
        guarded(bidcore.BidBatch.from_columns, *columns[: data.draw(st.integers(3, 5))])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_core_calls_with_arbitrary_arguments_never_panic_and_refusals_change_nothing(
    data: st.DataObject,
) -> None:
    core = populated_core(data)
    for _ in range(data.draw(st.integers(1, 20))):
        if data.draw(st.integers(0, 4)) == 0:
            call_place_batch(data, core)
        else:
            call_core_method(data, core)
    state_of(core)  # still answers


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_bid_batches_with_arbitrary_arguments_never_panic(data: st.DataObject) -> None:
    call_batch_method(data)


@settings(max_examples=200, deadline=None)
@given(shards=ANYTHING, parallel_min_batch=ANYTHING)
def test_core_construction_with_arbitrary_arguments_never_panics(
    shards: Any, parallel_min_batch: Any
) -> None:
    ok, core = guarded(bidcore.Core, shards, parallel_min_batch)
    if ok:
        assert (core.shard_count, core.auction_count, core.user_count) == (shards, 0, 0)


@settings(max_examples=200, deadline=None)
@given(amount=ANYTHING, bp=ANYTHING)
def test_deposit_with_arbitrary_arguments_never_panics(amount: Any, bp: Any) -> None:
    guarded(bidcore.deposit, amount, bp)
