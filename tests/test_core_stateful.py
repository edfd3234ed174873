"""The compiled core and the reference model, driven by the same random operations.

After every step the answers (every attribute) and the whole visible state
(every auction, every user) must be the same, on a core that batches one bid at
a time and on cores that work batches over shards in parallel, and the rules'
invariants must hold. Maximum bids are among the operations: set and raised on
live auctions and as pre-bids on scheduled ones, resolved when those open,
restored with a leader's max or pre-bids, answering bids one by one and in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import bidcore
from bench.reference_model import (
    CLOSED_FIELDS,
    MAX_AMOUNT_KOBO,
    MAX_TIME_MS,
    ReferenceBidBatch,
    ReferenceCore,
    attributes,
    deposit,
    opened_fields,
    outcome_fields,
    state_of,
)

T0 = 1_700_000_000_000
SECOND = 1_000
MINUTE = 60_000
HOUR = 3_600_000

Bid = tuple[int, int, int, int, bool]

PLATFORM_ID = 1
#: Bidders' ids: small and full 128-bit ones.
USER_IDS = [2, 3, 4, 5, 6, 7, 2**127 + 8, 2**128 - 1]
#: Seller ids nobody bids as.
FOREIGN_IDS = [0, 2**100]
#: Few ids, so that duplicates and re-adding after removal happen.
AUCTION_IDS = [10, 11, 12, 13, 14, 15, 2**128 - 2]

VALID_BALANCES = st.one_of(
    st.integers(0, 150_000), st.sampled_from([0, 20_000, 40_000, 10**12, 10**18 - 1])
)
BALANCES = st.one_of(VALID_BALANCES, st.sampled_from([-1, 10**18]))  # refused: InvalidArgument
START_PRICES = st.sampled_from([1, 999, 50_000, 100_000])
INCREMENTS = st.sampled_from([1, 500, 5_000])
DEPOSIT_BP = st.sampled_from([0, 1, 2000, 3333, 10_000])
WINDOWS = st.sampled_from([0, SECOND, 120_000])
EXTENSIONS = st.sampled_from([0, 1, 120_000])

#: An auction's start, from now.
STARTS = st.sampled_from([0, -1, -MINUTE, -30 * MINUTE, SECOND, 5 * MINUTE])
DURATIONS = st.one_of(st.integers(1, 10 * MINUTE), st.integers(10 * MINUTE, 3 * HOUR))
CLOCK_STEPS = st.sampled_from([0, 1, 999, 5 * SECOND, 30 * SECOND, 10 * MINUTE])
INVALID_AMOUNTS = [0, -5, MAX_AMOUNT_KOBO - 1, MAX_AMOUNT_KOBO, 2**63 - 1]

#: One setting out of range at a time (all representable in 64 bits).
BAD_SETTINGS = st.sampled_from(
    [
        {"start_price_kobo": 0},
        {"bid_increment_kobo": MAX_AMOUNT_KOBO},
        {"reserve_price_kobo": 0},
        {"deposit_pct_bp": 10_001},
        {"anti_snipe_window_ms": 604_800_001},
        {"anti_snipe_extension_ms": -1},
        {"end_time_ms": MAX_TIME_MS + 1},
        {"start_time_ms": -1},
        {"sellers": list(range(9))},
    ]
)


def observed(value: Any) -> Any:
    """What can be compared across implementations: attributes, not classes."""
    if hasattr(value, "accepted") and hasattr(value, "code"):
        return outcome_fields(value)  # a bid's (with its answer), a max's (with its rows)
    if hasattr(value, "leader_is_platform") and hasattr(value, "platform_bid_count"):
        return attributes(value, CLOSED_FIELDS)
    if hasattr(value, "bids") and hasattr(value, "seq"):
        return opened_fields(value)
    return value


def rows_of(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """The bid rows an observed outcome placed, in order (none for a rejection)."""
    if not outcome["accepted"]:
        return []
    if "max_kobo" in outcome:
        rows: list[dict[str, Any]] = outcome["bids"]
        return rows
    return [outcome] if outcome["answer"] is None else [outcome, outcome["answer"]]


def would_be_leader(prebids: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The pre-bid ranked first: the highest max, the one set earlier among equals."""
    best: tuple[int, int] | None = None
    for user, max_kobo in prebids:
        if best is None or max_kobo > best[1]:
            best = (user, max_kobo)
    return best


def call(function: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "returned", observed(function(*args, **kwargs))
    except Exception as error:  # the error's class is the answer compared
        return "raised", type(error)


def batch_outcomes(result: Any) -> list[dict[str, Any]]:
    """A batch's outcomes; for a `BatchResult`, checked against its other views too."""
    outcomes = [outcome_fields(result[i]) for i in range(len(result))]
    if isinstance(result, bidcore.BatchResult):
        codes = [bidcore.REASON_CODES[code] for code in result.codes()]
        assert codes == [outcome["code"] for outcome in outcomes]
        accepted = [outcome for outcome in outcomes if outcome["accepted"]]
        assert [outcome_fields(o) for o in result.accepted()] == accepted
        assert result.accepted_count == len(accepted)
    return outcomes


def restore_faults(arguments: dict[str, Any], unknown_user: int) -> list[dict[str, Any]]:
    """No change (mostly), or one change that makes the restore refused."""
    start, end = arguments["start_time_ms"], arguments["end_time_ms"]
    faults: list[dict[str, Any]] = [{}, {}, {}, {}, {"original_end_ms": end + 1}]
    faults.append({"original_end_ms": start})
    faults.append({"log_head": bytes(33)})
    if arguments["leader"] is None:
        faults.append({"bid_count": 1})  # bids without a leader
        faults.append({"log_head": bytes(32)})  # a head without bids
        faults.append({"leader_max_kobo": arguments["start_price_kobo"]})  # a max, no leader
        faults += prebid_faults(arguments, unknown_user)
        return faults
    bidders, bid_count = arguments["bidders"], arguments["bid_count"]
    faults += [
        {"live": False},
        {"leading_amount_kobo": arguments["start_price_kobo"] - 1},
        {"bidders": [*bidders, unknown_user], "bid_count": bid_count + 1},
    ]
    least = len(bidders) + arguments["platform_bid_count"]
    if least > 0:
        faults.append({"bid_count": least - 1})
    if bidders:
        faults.append({"bidders": [*bidders, bidders[0]], "bid_count": bid_count + 1})
    if not arguments["leader_is_platform"]:
        others = [user for user in bidders if user != arguments["leader"]]
        faults.append({"bidders": others})  # the leader not among the bidders
        faults.append({"leader_max_kobo": arguments["leading_amount_kobo"] - 1})
        faults.append({"leader_max_kobo": MAX_AMOUNT_KOBO})
    else:
        faults.append({"leader_max_kobo": arguments["leading_amount_kobo"]})  # a platform max
    faults.append({"prebids": [(arguments["leader"], arguments["start_price_kobo"])]})  # live
    return faults


def prebid_faults(arguments: dict[str, Any], unknown_user: int) -> list[dict[str, Any]]:
    """For an auction without a leader: pre-bids that make the restore refused."""
    start_price = arguments["start_price_kobo"]
    prebids = list(arguments.get("prebids", ()))
    if arguments["live"]:
        return [{"prebids": [*prebids, (unknown_user - 1, start_price)]}]  # on a live auction
    faults: list[dict[str, Any]] = [
        {"prebids": [*prebids, (unknown_user, start_price)]},
        {"prebids": [(0, start_price - 1)]},
        {"prebids": [(0, MAX_AMOUNT_KOBO)]},
    ]
    if prebids:
        faults.append({"prebids": [*prebids, (prebids[0][0], start_price + 1)]})  # a user twice
    return faults


class CoreAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = ReferenceCore()
        self.cores = [
            bidcore.Core(),  # batches below 4096 bids: one bid at a time
            bidcore.Core(shards=8, parallel_min_batch=0),
            bidcore.Core(shards=3, parallel_min_batch=2),
        ]
        self.now = T0
        self.next_auction_handle = 0
        self.platform = -1
        #: Per auction handle: the last bid row placed as (amount, user, platform).
        self.top: dict[int, tuple[int, int, bool] | None] = {}
        #: Per auction handle: whether that row was placed for a max.
        self.top_is_proxy: dict[int, bool] = {}
        #: Per auction handle: each bidder's highest bid or max there, by (user,
        #: platform): the platform is a bidder of its own, whatever its user handle
        #: (since the auction went live; a restored one's other bidders are unknown,
        #: all below its price).
        self.offers: dict[int, dict[tuple[int, bool], int]] = {}
        #: Per auction handle: its price when last looked at.
        self.prices: dict[int, int] = {}

    # --- running the same call everywhere ----------------------------------------------

    def same(self, method: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        """Calls `method` on the model and every core; all must answer alike."""
        expected = call(getattr(self.model, method), *args, **kwargs)
        for core in self.cores:
            actual = call(getattr(core, method), *args, **kwargs)
            assert actual == expected, f"{method}{args}{kwargs} on {core!r}"
        return expected

    def same_batch(self, bids: list[Bid], columns: bool) -> list[dict[str, Any]]:
        model_batch = ReferenceBidBatch()
        for bid in bids:
            model_batch.append(*bid)
        if columns:
            core_batch = bidcore.BidBatch.from_columns(
                *([bid[i] for bid in bids] for i in range(5))
            )
        else:
            core_batch = bidcore.BidBatch()
            for bid in bids:
                core_batch.append(*bid)
        assert len(core_batch) == len(model_batch) == len(bids)
        expected = batch_outcomes(self.model.place_batch(model_batch))
        for core in self.cores:
            assert batch_outcomes(core.place_batch(core_batch)) == expected, repr(core)
        return expected

    # --- drawing arguments from the current state --------------------------------------

    def auction_handle(self, data: st.DataObject, *preferred: str) -> int:
        """Mostly an auction in a preferred status ("running": live, and now within its
        times), else any loaded one, a removed one or one never loaded."""
        loaded = self.model.auction_handles()
        wanted = [h for h in loaded if self.status(h) in preferred]
        pick = data.draw(st.integers(0, 19))
        if wanted and pick < 16:
            return data.draw(st.sampled_from(wanted))
        if loaded and pick < 19:
            return data.draw(st.sampled_from(loaded))
        return data.draw(st.integers(0, self.next_auction_handle + 1))

    def running_auction(self, data: st.DataObject) -> int:
        """Mostly a running auction; a third of the time one whose leader has a max
        (the case maxes are about), when there is one."""
        with_max = [
            h
            for h in self.model.auction_handles()
            if self.status(h) == "running" and self.model.auction(h).leader_max_kobo is not None
        ]
        if with_max and data.draw(st.integers(0, 2)) == 0:
            return data.draw(st.sampled_from(with_max))
        return self.auction_handle(data, "running")

    def status(self, handle: int) -> str:
        state = self.model.auction(handle)
        running = state.status == "live" and state.start_time_ms <= self.now < state.end_time_ms
        return "running" if running else state.status

    def user_handle(self, data: st.DataObject) -> int:
        """Mostly a registered user, sometimes the next, unknown handle."""
        if data.draw(st.integers(0, 9)) == 9:
            return self.model.user_count
        return data.draw(st.integers(0, self.model.user_count - 1))

    def amount(self, data: st.DataObject, state: Any, earlier: int) -> int:
        """Near the minimum next bid (below, equal, above) once `earlier` bids of the same
        batch have raised it by an increment each; sometimes an invalid amount."""
        if data.draw(st.integers(0, 9)) == 9:
            return data.draw(st.sampled_from(INVALID_AMOUNTS))
        increment = state.bid_increment_kobo
        deltas = [0, increment, -1, 1, 3 * increment, -increment, 0, 20 * increment]
        return state.min_next_bid_kobo + earlier * increment + data.draw(st.sampled_from(deltas))

    def max_amount(self, data: st.DataObject, state: Any, user: int) -> int:
        """Near what decides a max: the minimum, the leader's max (equal, just past,
        an increment past), the user's own pre-bid or another's; sometimes invalid."""
        if data.draw(st.integers(0, 14)) == 14:
            return data.draw(st.sampled_from(INVALID_AMOUNTS))
        increment = state.bid_increment_kobo
        marks = [state.min_next_bid_kobo, state.min_next_bid_kobo]
        if state.leader_max_kobo is not None:
            marks += [state.leader_max_kobo, state.leader_max_kobo]
        marks += [max_kobo for _, max_kobo in state.prebids]
        marks += [max_kobo for holder, max_kobo in state.prebids if holder == user]
        deltas = [0, 0, 1, -1, increment, 3 * increment, 20 * increment, -increment]
        return max(1, data.draw(st.sampled_from(marks)) + data.draw(st.sampled_from(deltas)))

    def moment_before_end(self, data: st.DataObject, state: Any) -> int:
        """The last moments of an auction: inside its window, at the window's edge, at the end."""
        window = state.anti_snipe_window_ms
        to_end = data.draw(st.sampled_from([window - 1, 1, window, 0, window + 1, 2, SECOND]))
        return max(state.end_time_ms - to_end, 0)

    def bid(self, data: st.DataObject, near_end: bool = False, batch: Sequence[Bid] = ()) -> Bid:
        """A bid at the clock's time, or stamped in the last moments of its auction (the
        core never reads a clock: a bid's time is what it is told)."""
        auction = self.running_auction(data)
        user = self.user_handle(data)
        platform = data.draw(st.integers(0, 3)) < 3 if user == self.platform else False
        platform = platform or data.draw(st.integers(0, 29)) == 29
        amount, at = data.draw(st.integers(1, 200_000)), self.now
        if auction in self.model.auction_handles():
            state = self.model.auction(auction)
            earlier = sum(1 for bid in batch if bid[0] == auction)
            amount = self.amount(data, state, earlier)
            if near_end or data.draw(st.integers(0, 4)) == 4:
                at = self.moment_before_end(data, state)
        return auction, user, amount, at, platform

    def auction_settings(self, data: st.DataObject) -> dict[str, Any]:
        """Valid terms; mostly started already, ending within minutes to hours."""
        start = max(self.now + data.draw(STARTS), 0)
        start_price = data.draw(START_PRICES)
        reserves = st.integers(1, 40).map(lambda tenths: start_price * tenths // 10 + 1)
        sellers = st.lists(st.sampled_from([*USER_IDS, *FOREIGN_IDS, PLATFORM_ID]), max_size=3)
        return {
            "start_time_ms": start,
            "end_time_ms": start + data.draw(DURATIONS),
            "start_price_kobo": start_price,
            "bid_increment_kobo": data.draw(INCREMENTS),
            "reserve_price_kobo": data.draw(st.one_of(st.none(), reserves)),
            "deposit_pct_bp": data.draw(DEPOSIT_BP),
            "anti_snipe_window_ms": data.draw(WINDOWS),
            "anti_snipe_extension_ms": data.draw(EXTENSIONS),
            "sellers": data.draw(sellers),
        }

    def ledger_state(self, data: st.DataObject, arguments: dict[str, Any]) -> dict[str, Any]:
        """A consistent state for `restore_auction`: no lead (a scheduled auction
        maybe with pre-bids), or a real lead (maybe with a max) or a platform lead."""
        users = list(range(self.model.user_count))
        extended_by = data.draw(st.sampled_from([0, 0, 1, 120_000]))
        state: dict[str, Any] = {
            "original_end_ms": arguments["end_time_ms"],
            "end_time_ms": arguments["end_time_ms"] + extended_by,
            "live": data.draw(st.booleans()),
            "leader": None,
            "leading_amount_kobo": None,
            "leader_is_platform": False,
            "bidders": [],
            "bid_count": 0,
            "platform_bid_count": 0,
            "seq": data.draw(st.integers(0, 50)),
        }
        if not data.draw(st.booleans()):
            if not state["live"] and data.draw(st.booleans()):
                prebidders = data.draw(st.lists(st.sampled_from(users), unique=True, max_size=4))
                more = st.sampled_from([0, 0, 1, 500, 5_000, 100_000])
                start_price = arguments["start_price_kobo"]
                state["prebids"] = [(user, start_price + data.draw(more)) for user in prebidders]
            return state
        platform_lead = data.draw(st.booleans())
        bidders = data.draw(
            st.lists(st.sampled_from(users), unique=True, min_size=0 if platform_lead else 1)
        )
        platform_bids = data.draw(st.integers(int(platform_lead), 3))
        state.update(
            live=True,
            ended=data.draw(st.booleans()),  # closed, its end processing not yet done
            leader=data.draw(st.sampled_from(users if platform_lead else bidders)),
            leading_amount_kobo=arguments["start_price_kobo"] + data.draw(st.integers(0, 300_000)),
            leader_is_platform=platform_lead,
            bidders=bidders,
            bid_count=len(bidders) + platform_bids + data.draw(st.integers(0, 3)),
            platform_bid_count=platform_bids,
            log_head=data.draw(st.one_of(st.none(), st.binary(min_size=32, max_size=32))),
        )
        if not platform_lead and data.draw(st.booleans()):
            more = st.sampled_from([0, 1, 500, 5_000, 100_000])
            state["leader_max_kobo"] = state["leading_amount_kobo"] + data.draw(more)
        return state

    # --- bookkeeping for the invariants ------------------------------------------------

    def loaded(
        self,
        kind: str,
        handle: Any,
        lead: tuple[int, int, bool] | None = None,
        offers: dict[tuple[int, bool], int] | None = None,
    ) -> None:
        if kind == "returned":
            assert handle == self.next_auction_handle
            self.next_auction_handle += 1
            self.top[handle] = lead
            self.top_is_proxy[handle] = False
            self.offers[handle] = offers or {}

    def forget(self, handle: int) -> None:
        for table in (self.top, self.top_is_proxy, self.offers, self.prices):
            table.pop(handle, None)

    def offered(self, auction: int, user: int, amount: int, platform: bool = False) -> None:
        offers = self.offers[auction]
        offers[user, platform] = max(offers.get((user, platform), 0), amount)

    def placed(self, rows: list[dict[str, Any]]) -> None:
        """Remembers bid rows: the last one leads."""
        for row in rows:
            self.top[row["auction"]] = (row["amount_kobo"], row["user"], row["is_platform"])
            self.top_is_proxy[row["auction"]] = row["is_proxy"]
            self.offered(row["auction"], row["user"], row["amount_kobo"], row["is_platform"])

    def record(self, outcomes: list[dict[str, Any]]) -> None:
        """Remembers accepted bids and their answers; no accepted real bid leaves its
        bidder over its balance."""
        for outcome in outcomes:
            self.placed(rows_of(outcome))
        for outcome in outcomes:
            if outcome["accepted"] and not outcome["is_platform"]:
                user = self.model.user(outcome["user"])
                assert user.exposure_kobo <= user.balance_kobo, outcome

    def record_max(self, outcome: dict[str, Any], before: dict[str, Any]) -> None:
        """A rejected max changed nothing; an accepted one is within its setter's
        buying power, and on a live auction it is an offer and its rows are bids."""
        if not outcome["accepted"]:
            assert state_of(self.model) == before, outcome
            return
        user = self.model.user(outcome["user"])
        assert user.exposure_kobo <= user.balance_kobo, outcome
        if self.model.auction(outcome["auction"]).status == "live":
            self.offered(outcome["auction"], outcome["user"], outcome["max_kobo"])
            self.placed(rows_of(outcome))

    def open_and_record(self, handle: int) -> None:
        """Opens an auction everywhere; its eligible pre-bids become offers and rows."""
        prebids: list[tuple[int, int]] = []
        if handle in self.model.auction_handles():
            prebids = self.model.auction(handle).prebids
        eligible = [
            (user, max_kobo) for user, max_kobo in prebids if self.model.user(user).eligible
        ]
        kind, opened = self.same("open_auction", handle, self.now)
        if kind == "returned":
            for user, max_kobo in eligible:
                self.offered(handle, user, max_kobo)
            self.placed(opened["bids"])

    # --- rules -------------------------------------------------------------------------

    @initialize(balances=st.lists(VALID_BALANCES, min_size=3, max_size=6))
    def register_users(self, balances: list[int]) -> None:
        kind, self.platform = self.same("upsert_user", PLATFORM_ID, balance_kobo=0, eligible=True)
        assert kind == "returned"
        for user_id, balance in zip(USER_IDS, balances, strict=False):
            self.same("upsert_user", user_id, balance_kobo=balance, eligible=True)

    @initialize(data=st.data(), count=st.integers(2, 6))
    def load_live_auctions(self, data: st.DataObject, count: int) -> None:
        for auction_id in AUCTION_IDS[:count]:
            arguments = self.auction_settings(data)
            self.loaded(*self.same("add_auction", auction_id, live=True, **arguments))

    @initialize(data=st.data(), ahead=st.sampled_from([10 * MINUTE, HOUR]))
    def load_a_scheduled_auction(self, data: st.DataObject, ahead: int) -> None:
        """An auction announced ahead (an id the live ones do not take): pre-bids come in
        until the scheduler opens it."""
        arguments = self.auction_settings(data)
        start = self.now + ahead
        arguments.update(start_time_ms=start, end_time_ms=start + data.draw(DURATIONS))
        self.loaded(*self.same("add_auction", AUCTION_IDS[-1], live=False, **arguments))

    @rule(
        user_id=st.sampled_from([*USER_IDS, PLATFORM_ID]),
        balance=BALANCES,
        eligible=st.sampled_from([True, True, True, False]),
    )
    def upsert_user(self, user_id: int, balance: int, eligible: bool) -> None:
        self.same("upsert_user", user_id, balance_kobo=balance, eligible=eligible)

    @rule(data=st.data(), balance=BALANCES, eligible=st.booleans())
    def update_user(self, data: st.DataObject, balance: int, eligible: bool) -> None:
        if data.draw(st.booleans()):
            self.same("set_balance", self.user_handle(data), balance)
        else:
            self.same("set_eligible", self.user_handle(data), eligible)

    @rule(
        data=st.data(),
        auction_id=st.sampled_from(AUCTION_IDS),
        live=st.sampled_from([True, True, False]),
    )
    def add_auction(self, data: st.DataObject, auction_id: int, live: bool) -> None:
        arguments = self.auction_settings(data)
        if not live and data.draw(st.booleans()):
            # Announced well ahead: time for pre-bids before the scheduler opens it.
            start = self.now + data.draw(st.sampled_from([10 * MINUTE, HOUR]))
            arguments.update(start_time_ms=start, end_time_ms=start + data.draw(DURATIONS))
        if data.draw(st.integers(0, 9)) == 9:
            arguments.update(data.draw(BAD_SETTINGS))
        self.loaded(*self.same("add_auction", auction_id, live=live, **arguments))

    @rule(data=st.data(), auction_id=st.sampled_from(AUCTION_IDS))
    def restore_auction(self, data: st.DataObject, auction_id: int) -> None:
        arguments = self.auction_settings(data)
        arguments.update(self.ledger_state(data, arguments))
        faults = restore_faults(arguments, unknown_user=self.model.user_count)
        arguments.update(data.draw(st.sampled_from(faults)))
        lead, offers = None, {}
        if arguments["leader"] is not None:
            leader, amount = arguments["leader"], arguments["leading_amount_kobo"]
            platform = arguments["leader_is_platform"]
            lead = (amount, leader, platform)
            offers[leader, platform] = max(amount, arguments.get("leader_max_kobo") or 0)
        self.loaded(*self.same("restore_auction", auction_id, **arguments), lead, offers)

    @rule(data=st.data())
    def open_auction(self, data: st.DataObject) -> None:
        self.open_and_record(self.auction_handle(data, "scheduled"))

    @rule(data=st.data(), operation=st.sampled_from(["close_auction", "cancel_auction"]))
    def finish_auction(self, data: st.DataObject, operation: str) -> None:
        # Mostly auctions past their end or not yet open: running ones are for bidding.
        self.same(operation, self.auction_handle(data, "live", "scheduled"))

    @rule(data=st.data())
    def remove_auction(self, data: st.DataObject) -> None:
        handle = self.auction_handle(data, "ended", "cancelled")
        if self.same("remove_auction", handle)[0] == "returned":
            self.forget(handle)

    @rule(data=st.data(), later_by=st.sampled_from([MINUTE, 1, 0, -1, HOUR]))
    def extend_auction(self, data: st.DataObject, later_by: int) -> None:
        handle = self.auction_handle(data, "running", "live", "scheduled")
        end = self.now + HOUR
        if handle in self.model.auction_handles():
            end = self.model.auction(handle).end_time_ms + later_by
        end = data.draw(st.sampled_from([end, end, end, MAX_TIME_MS, MAX_TIME_MS + 1]))
        self.same("extend_auction", handle, end)

    @rule()
    def run_scheduler(self) -> None:
        """What the engine's clock does: open what is due to open, close what is due to close."""
        kind, (to_open, to_close) = self.same("due", self.now)
        assert kind == "returned"
        for handle in to_open:
            self.open_and_record(handle)
        for handle in to_close:
            self.same("close_auction", handle)

    @rule(step=CLOCK_STEPS)
    def advance_clock(self, step: int) -> None:
        self.now += step

    @rule(data=st.data())
    def place_bid(self, data: st.DataObject) -> None:
        kind, outcome = self.same("place_bid", *self.bid(data))
        assert kind == "returned"
        self.record([outcome])

    @rule(data=st.data())
    def snipe(self, data: st.DataObject) -> None:
        """The clock runs to an auction's last moments and a bid comes in."""
        bid = self.bid(data, near_end=True)
        self.now = max(self.now, bid[3])
        kind, outcome = self.same("place_bid", *bid)
        assert kind == "returned"
        self.record([outcome])

    @rule(data=st.data())
    def set_max(self, data: st.DataObject) -> None:
        """A max on a running auction: a new one, or the leader raising its own."""
        self.max_on(data, self.running_auction(data))

    @rule(data=st.data())
    def set_prebid(self, data: st.DataObject) -> None:
        """A max on a scheduled auction: a pre-bid, new or raised."""
        self.max_on(data, self.auction_handle(data, "scheduled"))

    def max_on(self, data: st.DataObject, auction: int) -> None:
        """A max from a bidder (the leader a quarter of the time, else half the time
        one who can afford it), now or in the auction's last moments."""
        user = self.user_handle(data)
        amount, at = data.draw(st.integers(1, 200_000)), self.now
        if auction in self.model.auction_handles():
            state = self.model.auction(auction)
            if state.leader is not None and data.draw(st.integers(0, 3)) == 0:
                user = state.leader
            amount = self.max_amount(data, state, user)
            solvent = [
                handle
                for handle in range(self.model.user_count)
                if handle != state.leader
                and self.model.user(handle).balance_kobo - self.model.user(handle).exposure_kobo
                >= deposit(amount, state.deposit_pct_bp)
            ]
            if user != state.leader and solvent and data.draw(st.booleans()):
                user = data.draw(st.sampled_from(solvent))
            if data.draw(st.integers(0, 4)) == 4:
                at = self.moment_before_end(data, state)
                self.now = max(self.now, at)
        before = state_of(self.model)
        kind, outcome = self.same("set_max", auction, user, amount, at)
        assert kind == "returned"
        self.record_max(outcome, before)

    @rule(data=st.data(), size=st.integers(0, 32), columns=st.booleans())
    def place_batch(self, data: st.DataObject, size: int, columns: bool) -> None:
        bids: list[Bid] = []
        for _ in range(size):
            bids.append(self.bid(data, batch=bids))
        self.record(self.same_batch(bids, columns))

    @rule(as_batch=st.booleans())
    def reserve_protection(self, as_batch: bool) -> None:
        """The platform bids reserve protection asks for, placed by the platform user."""
        kind, due = self.same("reserve_protection", self.now)
        assert kind == "returned"
        bids = [(handle, self.platform, amount, self.now, True) for handle, amount in due]
        if as_batch:
            self.record(self.same_batch(bids, columns=False))
        else:
            self.record([self.same("place_bid", *bid)[1] for bid in bids])

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def same_state_everywhere(self) -> None:
        expected = state_of(self.model)
        for core in self.cores:
            assert state_of(core) == expected, repr(core)

    @invariant()
    def unknown_ids_have_no_handle(self) -> None:
        for core in [self.model, *self.cores]:
            assert [core.user_handle(user_id) for user_id in FOREIGN_IDS] == [None, None]

    @invariant()
    def price_never_falls(self) -> None:
        for handle in self.model.auction_handles():
            price = self.model.auction(handle).current_price_kobo
            if price is not None:
                assert price >= self.prices.get(handle, price), handle
                self.prices[handle] = price

    @invariant()
    def leader_holds_the_last_bid_row(self) -> None:
        for handle in self.model.auction_handles():
            state = self.model.auction(handle)
            lead = None
            if state.leader is not None:
                lead = (state.current_price_kobo, state.leader, state.leader_is_platform)
            assert lead == self.top[handle], handle

    @invariant()
    def leader_holds_the_highest_max_or_bid(self) -> None:
        for handle in self.model.auction_handles():
            state = self.model.auction(handle)
            if state.leader is not None:
                offers = self.offers[handle]
                leader = (state.leader, state.leader_is_platform)
                assert offers[leader] == max(offers.values()), (handle, offers)

    @invariant()
    def price_is_within_the_second_and_the_leaders_max(self) -> None:
        """Never above the leader's max; set by a max, never above the second (the
        highest max or bid of anyone else) + increment, or the start price."""
        for handle in self.model.auction_handles():
            state = self.model.auction(handle)
            price = state.current_price_kobo
            if price is None:
                continue
            if state.leader_max_kobo is not None:
                assert state.leader_is_platform is False, handle
                assert price <= state.leader_max_kobo, handle
            if self.top_is_proxy[handle]:
                leader = (state.leader, state.leader_is_platform)
                others = [v for u, v in self.offers[handle].items() if u != leader]
                second = max(others, default=0)
                bound = max(state.start_price_kobo, second + state.bid_increment_kobo)
                assert price <= bound, (handle, self.offers[handle])

    @invariant()
    def exposure_is_what_each_auction_adds(self) -> None:
        """Live and ended real leads add deposit(max, else amount) (ended: closed and
        still loaded, its end processing, the deposit hold, to come); a scheduled
        auction adds deposit(max) to its pre-bids' would-be leader."""
        owed = [0] * self.model.user_count
        for handle in self.model.auction_handles():
            state = self.model.auction(handle)
            if state.prebids:
                assert state.status == "scheduled", handle
                top = would_be_leader(state.prebids)
                assert top is not None
                owed[top[0]] += deposit(top[1], state.deposit_pct_bp)
            if (
                state.status in ("live", "ended")
                and state.leader is not None
                and not state.leader_is_platform
            ):
                reach = state.leader_max_kobo or state.current_price_kobo
                owed[state.leader] += deposit(reach, state.deposit_pct_bp)
        assert [self.model.user(h).exposure_kobo for h in range(self.model.user_count)] == owed


CoreAgainstModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCoreAgainstModel = CoreAgainstModel.TestCase
