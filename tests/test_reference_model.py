"""The bid rules by example, one behaviour per test.

`RuleExamples` holds the examples once; each implementation runs them by
subclassing it with its own `implementation` and `batch_class`: the reference
model here, the compiled core in test_core_rules.py.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from bench.reference_model import (
    CLOSED_FIELDS,
    MAX_TIME_MS,
    DuplicateAuction,
    InvalidArgument,
    InvalidTransition,
    ReferenceBidBatch,
    ReferenceCore,
    UnknownAuction,
    UnknownUser,
    attributes,
    outcome_fields,
    state_of,
)

T0 = 1_700_000_000_000
HOUR = 3_600_000
END = T0 + 2 * HOUR
WINDOW = 120_000
START_PRICE = 100_000
INCREMENT = 5_000
RICH = 10**12

SELLER_ID = 0x5E11E2
ALICE_ID = 0xA11CE
BOB_ID = 0xB0B
CAROL_ID = 0xCA201
PLATFORM_ID = 0x91A7F0


def add_user(core: Any, user_id: int, balance: int = RICH, eligible: bool = True) -> int:
    return core.upsert_user(user_id, balance_kobo=balance, eligible=eligible)


def add_live(core: Any, auction_id: int = 1, **settings: Any) -> int:
    """A live auction from T0 to END, start price 100 000, increment 5 000, 20 % deposit."""
    arguments: dict[str, Any] = {
        "start_time_ms": T0,
        "end_time_ms": END,
        "start_price_kobo": START_PRICE,
        "bid_increment_kobo": INCREMENT,
        "live": True,
    }
    arguments.update(settings)
    return core.add_auction(auction_id, **arguments)


def restore_arguments(**changes: Any) -> dict[str, Any]:
    """A consistent live auction with a real leader (user 0) and two bidders (0, 1)."""
    arguments: dict[str, Any] = {
        "start_time_ms": T0,
        "end_time_ms": END + WINDOW,
        "original_end_ms": END,
        "start_price_kobo": START_PRICE,
        "bid_increment_kobo": INCREMENT,
        "reserve_price_kobo": None,
        "deposit_pct_bp": 2000,
        "anti_snipe_window_ms": WINDOW,
        "anti_snipe_extension_ms": WINDOW,
        "sellers": [SELLER_ID],
        "live": True,
        "leader": 0,
        "leading_amount_kobo": 200_000,
        "leader_is_platform": False,
        "bidders": [1, 0],
        "bid_count": 4,
        "platform_bid_count": 1,
        "seq": 9,
    }
    arguments.update(changes)
    return arguments


class RuleExamples:
    """The examples, written once against the public API both implementations share."""

    implementation: ClassVar[Any]
    batch_class: ClassVar[Any]

    @pytest.fixture
    def core(self) -> Any:
        return self.implementation()

    @pytest.fixture
    def alice(self, core: Any) -> int:
        return add_user(core, ALICE_ID)

    @pytest.fixture
    def bob(self, core: Any) -> int:
        return add_user(core, BOB_ID)

    @pytest.fixture
    def platform(self, core: Any) -> int:
        return add_user(core, PLATFORM_ID, balance=0)

    @pytest.fixture
    def auction(self, core: Any) -> int:
        return add_live(core, sellers=[SELLER_ID])

    # --- reasons, in order of precedence -----------------------------------------------

    def test_invalid_amount_comes_before_every_other_reason(self, core: Any) -> None:
        assert core.place_bid(99, 99, 0, T0).code == "invalid_amount"

    @pytest.mark.parametrize("amount", [0, -1, 10**15, 2**63, 2**64, 2**130])
    def test_amount_outside_one_to_10_15_is_invalid_amount(
        self, core: Any, auction: int, alice: int, amount: int
    ) -> None:
        assert core.place_bid(auction, alice, amount, T0).code == "invalid_amount"

    def test_largest_amount_is_valid(self, core: Any, auction: int) -> None:
        rich = add_user(core, CAROL_ID, balance=10**18 - 1)
        assert core.place_bid(auction, rich, 10**15 - 1, T0).accepted

    @pytest.mark.parametrize("amount", [100_000.0, "100000", None])
    def test_amount_that_is_not_an_int_is_type_error(
        self, core: Any, auction: int, alice: int, amount: Any
    ) -> None:
        with pytest.raises(TypeError):
            core.place_bid(auction, alice, amount, T0)

    def test_handle_never_loaded_is_unknown_auction(self, core: Any, alice: int) -> None:
        assert core.place_bid(0, alice, START_PRICE, T0).code == "unknown_auction"

    def test_removed_auction_is_unknown_auction(self, core: Any, auction: int, alice: int) -> None:
        core.cancel_auction(auction)
        core.remove_auction(auction)
        assert core.place_bid(auction, alice, START_PRICE, T0).code == "unknown_auction"

    def test_scheduled_auction_is_not_live_even_after_its_end(self, core: Any, alice: int) -> None:
        auction = add_live(core, live=False)
        assert core.place_bid(auction, alice, START_PRICE, END + 1).code == "auction_not_live"

    def test_live_auction_before_its_start_is_not_live(
        self, core: Any, auction: int, alice: int
    ) -> None:
        assert core.place_bid(auction, alice, START_PRICE, T0 - 1).code == "auction_not_live"

    def test_live_auction_at_its_start_takes_bids(
        self, core: Any, auction: int, alice: int
    ) -> None:
        assert core.place_bid(auction, alice, START_PRICE, T0).accepted

    @pytest.mark.parametrize(
        ("finish", "code"),
        [("close_auction", "auction_ended"), ("cancel_auction", "auction_not_live")],
    )
    def test_a_closed_auction_has_ended_and_a_cancelled_one_is_not_live(
        self, core: Any, auction: int, alice: int, finish: str, code: str
    ) -> None:
        getattr(core, finish)(auction)  # before its end time: a forced end
        assert core.place_bid(auction, alice, START_PRICE, T0).code == code

    def test_bid_right_at_end_time_is_auction_ended(
        self, core: Any, auction: int, alice: int
    ) -> None:
        assert core.place_bid(auction, alice, START_PRICE, END).code == "auction_ended"

    def test_bid_in_last_millisecond_is_accepted(self, core: Any, auction: int, alice: int) -> None:
        assert core.place_bid(auction, alice, START_PRICE, END - 1).accepted

    def test_auction_ended_comes_before_own_auction(self, core: Any, auction: int) -> None:
        seller = add_user(core, SELLER_ID)
        assert core.place_bid(auction, seller, START_PRICE, END).code == "auction_ended"

    def test_any_seller_id_makes_it_own_auction(self, core: Any) -> None:
        auction = add_live(core, sellers=[ALICE_ID, SELLER_ID, BOB_ID])
        seller = add_user(core, SELLER_ID)
        assert core.place_bid(auction, seller, START_PRICE, T0).code == "own_auction"

    def test_own_auction_comes_before_not_eligible(self, core: Any, auction: int) -> None:
        seller = add_user(core, SELLER_ID, eligible=False)
        assert core.place_bid(auction, seller, START_PRICE, T0).code == "own_auction"

    def test_ineligible_user_is_not_eligible(self, core: Any, auction: int) -> None:
        user = add_user(core, CAROL_ID, eligible=False)
        assert core.place_bid(auction, user, START_PRICE, T0).code == "not_eligible"

    def test_unknown_user_handle_is_not_eligible(self, core: Any, auction: int, alice: int) -> None:
        assert core.place_bid(auction, alice + 1, START_PRICE, T0).code == "not_eligible"

    def test_not_eligible_comes_before_already_leading(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.set_eligible(alice, False)
        assert core.place_bid(auction, alice, 10**9, T0).code == "not_eligible"

    def test_leader_bidding_again_is_already_leading(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        assert core.place_bid(auction, alice, 10**9, T0).code == "already_leading"

    def test_already_leading_comes_before_below_minimum(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        assert core.place_bid(auction, alice, 1, T0).code == "already_leading"

    def test_first_bid_below_start_price_is_below_minimum(
        self, core: Any, auction: int, alice: int
    ) -> None:
        assert core.place_bid(auction, alice, START_PRICE - 1, T0).code == "below_minimum"

    def test_below_minimum_comes_before_insufficient_buying_power(
        self, core: Any, auction: int
    ) -> None:
        poor = add_user(core, CAROL_ID, balance=0)
        assert core.place_bid(auction, poor, START_PRICE - 1, T0).code == "below_minimum"

    def test_deposit_above_balance_is_insufficient_buying_power(
        self, core: Any, auction: int
    ) -> None:
        poor = add_user(core, CAROL_ID, balance=19_999)  # deposit(100 000) at 20 % is 20 000
        assert core.place_bid(auction, poor, START_PRICE, T0).code == "insufficient_buying_power"

    def test_deposit_equal_to_balance_is_accepted(self, core: Any, auction: int) -> None:
        user = add_user(core, CAROL_ID, balance=20_000)
        assert core.place_bid(auction, user, START_PRICE, T0).accepted

    def test_buying_power_counts_exposure_from_other_leads(self, core: Any, auction: int) -> None:
        other = add_live(core, auction_id=2)
        user = add_user(core, CAROL_ID, balance=39_999)
        core.place_bid(other, user, START_PRICE, T0)
        assert core.place_bid(auction, user, START_PRICE, T0).code == "insufficient_buying_power"

    def test_buying_power_is_freed_when_outbid_elsewhere(
        self, core: Any, auction: int, alice: int
    ) -> None:
        other = add_live(core, auction_id=2)
        user = add_user(core, CAROL_ID, balance=20_000)
        core.place_bid(other, user, START_PRICE, T0)
        core.place_bid(other, alice, START_PRICE + INCREMENT, T0)
        assert core.place_bid(auction, user, START_PRICE, T0).accepted

    # --- minimum next bid ----------------------------------------------------------------

    def test_first_bid_at_start_price_is_accepted(
        self, core: Any, auction: int, alice: int
    ) -> None:
        outcome = core.place_bid(auction, alice, START_PRICE, T0)
        assert (outcome.accepted, outcome.min_next_bid_kobo) == (True, START_PRICE + INCREMENT)

    def test_later_equal_bid_is_below_minimum(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, 150_000, T0)
        assert core.place_bid(auction, bob, 150_000, T0).code == "below_minimum"

    def test_earlier_of_equal_bids_keeps_the_lead(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, 150_000, T0)
        core.place_bid(auction, bob, 150_000, T0)
        state = core.auction(auction)
        assert (state.leader, state.current_price_kobo) == (alice, 150_000)

    def test_exactly_one_increment_above_is_accepted(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, 150_000, T0)
        assert core.place_bid(auction, bob, 150_000 + INCREMENT, T0).accepted

    def test_one_kobo_short_of_an_increment_is_below_minimum(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, 150_000, T0)
        assert core.place_bid(auction, bob, 150_000 + INCREMENT - 1, T0).code == "below_minimum"

    # --- anti-sniping --------------------------------------------------------------------

    def test_bid_inside_window_extends_end_by_extension(
        self, core: Any, auction: int, alice: int
    ) -> None:
        outcome = core.place_bid(auction, alice, START_PRICE, END - WINDOW + 1)
        assert (outcome.extended, outcome.end_time_ms) == (True, END + WINDOW)
        assert core.auction(auction).end_time_ms == END + WINDOW

    def test_bid_exactly_window_before_end_does_not_extend(
        self, core: Any, auction: int, alice: int
    ) -> None:
        outcome = core.place_bid(auction, alice, START_PRICE, END - WINDOW)
        assert (outcome.extended, outcome.end_time_ms) == (False, END)

    def test_bid_outside_window_does_not_extend(self, core: Any, auction: int, alice: int) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        assert core.auction(auction).end_time_ms == END

    def test_extension_keeps_original_end(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, END - 1)
        core.place_bid(auction, bob, START_PRICE + INCREMENT, END + WINDOW - 1)
        state = core.auction(auction)
        assert (state.end_time_ms, state.original_end_ms) == (END + 2 * WINDOW, END)

    def test_extended_auction_takes_bids_after_its_original_end(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, END - 1)
        assert core.place_bid(auction, bob, START_PRICE + INCREMENT, END).accepted

    def test_platform_bid_inside_window_extends_too(
        self, core: Any, auction: int, platform: int
    ) -> None:
        outcome = core.place_bid(auction, platform, START_PRICE, END - 1, platform=True)
        assert (outcome.extended, outcome.end_time_ms) == (True, END + WINDOW)

    def test_window_and_extension_are_per_auction(self, core: Any, alice: int) -> None:
        auction = add_live(core, anti_snipe_window_ms=10_000, anti_snipe_extension_ms=30_000)
        assert not core.place_bid(auction, alice, START_PRICE, END - 10_000).extended
        outcome = core.place_bid(auction, add_user(core, BOB_ID), 200_000, END - 9_999)
        assert (outcome.extended, outcome.end_time_ms) == (True, END + 30_000)

    def test_extension_stops_at_max_time(self, core: Any, alice: int) -> None:
        auction = add_live(core, end_time_ms=MAX_TIME_MS - 1_000)
        outcome = core.place_bid(auction, alice, START_PRICE, MAX_TIME_MS - 2_000)
        assert (outcome.extended, outcome.end_time_ms) == (True, MAX_TIME_MS)

    # --- exposure ------------------------------------------------------------------------

    def test_accepted_bid_adds_its_deposit_to_exposure(
        self, core: Any, auction: int, alice: int
    ) -> None:
        outcome = core.place_bid(auction, alice, 150_000, T0)
        assert (outcome.deposit_kobo, core.user(alice).exposure_kobo) == (30_000, 30_000)

    def test_deposit_rounds_up_to_the_kobo(self, core: Any, alice: int) -> None:
        auction = add_live(core, start_price_kobo=101, bid_increment_kobo=1, deposit_pct_bp=3333)
        outcome = core.place_bid(auction, alice, 101, T0)  # 101 * 0.3333 = 33.66...
        assert outcome.deposit_kobo == 34

    def test_zero_deposit_auction_needs_no_balance(self, core: Any) -> None:
        auction = add_live(core, deposit_pct_bp=0)
        user = add_user(core, CAROL_ID, balance=0)
        outcome = core.place_bid(auction, user, START_PRICE, T0)
        assert (outcome.accepted, outcome.deposit_kobo) == (True, 0)

    def test_outbid_moves_exposure_to_new_leader(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.place_bid(auction, bob, 200_000, T0)
        assert (core.user(alice).exposure_kobo, core.user(bob).exposure_kobo) == (0, 40_000)

    def test_outbid_reports_the_previous_lead(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        outcome = core.place_bid(auction, bob, 200_000, T0)
        previous = (outcome.previous_leader, outcome.previous_amount_kobo)
        assert (previous, outcome.previous_was_platform) == ((alice, START_PRICE), False)

    def test_exposure_sums_over_every_live_lead(self, core: Any, alice: int) -> None:
        first = add_live(core, auction_id=1)
        second = add_live(core, auction_id=2, deposit_pct_bp=1000)
        core.place_bid(first, alice, START_PRICE, T0)
        core.place_bid(second, alice, START_PRICE, T0)
        assert core.user(alice).exposure_kobo == 20_000 + 10_000

    # --- bidders and counters ------------------------------------------------------------

    def test_bidder_numbers_follow_first_bids(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        numbers = [
            core.place_bid(auction, bob, 100_000, T0).bidder_number,
            core.place_bid(auction, alice, 105_000, T0).bidder_number,
            core.place_bid(auction, bob, 110_000, T0).bidder_number,
        ]
        assert (numbers, core.auction(auction).bidders) == ([1, 2, 1], [bob, alice])

    def test_every_accepted_bid_counts_and_moves_seq(
        self, core: Any, auction: int, alice: int, bob: int
    ) -> None:
        core.place_bid(auction, alice, 100_000, T0)
        core.place_bid(auction, bob, 105_000, T0)
        core.place_bid(auction, alice, 110_000, T0)
        state = core.auction(auction)
        assert (state.bid_count, state.bidder_count, state.seq) == (3, 2, 3)

    # --- platform bids -------------------------------------------------------------------

    def test_platform_bid_skips_buying_power(self, core: Any, auction: int, platform: int) -> None:
        assert core.place_bid(auction, platform, START_PRICE, T0, platform=True).accepted

    def test_platform_bid_adds_no_exposure(self, core: Any, auction: int, platform: int) -> None:
        outcome = core.place_bid(auction, platform, START_PRICE, T0, platform=True)
        assert (outcome.deposit_kobo, core.user(platform).exposure_kobo) == (0, 0)

    def test_platform_bid_releases_the_real_leader_it_outbids(
        self, core: Any, auction: int, alice: int, platform: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.place_bid(auction, platform, 200_000, T0, platform=True)
        assert core.user(alice).exposure_kobo == 0

    def test_platform_bid_counts_apart_from_bidders(
        self, core: Any, auction: int, alice: int, platform: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        outcome = core.place_bid(auction, platform, 200_000, T0, platform=True)
        state = core.auction(auction)
        counts = (state.bid_count, state.platform_bid_count, state.bidders)
        assert (outcome.bidder_number, outcome.bidder_count, counts) == (0, 1, (2, 1, [alice]))

    def test_platform_lead_is_reported_as_platform(
        self, core: Any, auction: int, platform: int
    ) -> None:
        core.place_bid(auction, platform, START_PRICE, T0, platform=True)
        state = core.auction(auction)
        assert (state.leader, state.leader_is_platform) == (platform, True)

    def test_platform_never_outbids_itself(self, core: Any, auction: int, platform: int) -> None:
        core.place_bid(auction, platform, START_PRICE, T0, platform=True)
        outcome = core.place_bid(auction, platform, 200_000, T0, platform=True)
        assert outcome.code == "already_leading"

    def test_outbidding_a_platform_lead_releases_nothing(
        self, core: Any, auction: int, alice: int, platform: int
    ) -> None:
        core.place_bid(auction, platform, START_PRICE, T0, platform=True)
        outcome = core.place_bid(auction, alice, 200_000, T0)
        exposures = (core.user(platform).exposure_kobo, core.user(alice).exposure_kobo)
        assert (outcome.previous_was_platform, exposures) == (True, (0, 40_000))

    def test_platform_bid_from_ineligible_user_is_not_eligible(
        self, core: Any, auction: int
    ) -> None:
        platform = add_user(core, PLATFORM_ID, eligible=False)
        assert core.place_bid(auction, platform, START_PRICE, T0, True).code == "not_eligible"

    # --- reserve protection --------------------------------------------------------------

    @pytest.fixture
    def reserve_auction(self, core: Any) -> int:
        """Reserve 1 000 000: triggers below 900 000, never bids above 950 000."""
        return add_live(core, auction_id=7, reserve_price_kobo=1_000_000)

    def test_reserve_protection_offers_start_price_without_a_bid(
        self, core: Any, reserve_auction: int
    ) -> None:
        assert core.reserve_protection(END - HOUR + 1) == [(reserve_auction, START_PRICE)]

    def test_reserve_protection_offers_min_next_below_90_percent(
        self, core: Any, reserve_auction: int, alice: int
    ) -> None:
        core.place_bid(reserve_auction, alice, 899_999, T0)
        assert core.reserve_protection(END - 1_000) == [(reserve_auction, 899_999 + INCREMENT)]

    def test_reserve_protection_stops_at_90_percent(
        self, core: Any, reserve_auction: int, alice: int
    ) -> None:
        core.place_bid(reserve_auction, alice, 900_000, T0)
        assert core.reserve_protection(END - 1_000) == []

    def test_reserve_protection_waits_for_the_last_hour(
        self, core: Any, reserve_auction: int
    ) -> None:
        assert core.reserve_protection(END - HOUR) == []

    def test_reserve_protection_may_bid_exactly_95_percent(self, core: Any, alice: int) -> None:
        auction = add_live(core, reserve_price_kobo=1_000_000, bid_increment_kobo=100_000)
        core.place_bid(auction, alice, 850_000, T0)
        assert core.reserve_protection(END - 1_000) == [(auction, 950_000)]

    def test_reserve_protection_never_bids_above_95_percent(self, core: Any, alice: int) -> None:
        auction = add_live(core, reserve_price_kobo=1_000_000, bid_increment_kobo=100_001)
        core.place_bid(auction, alice, 850_000, T0)
        assert core.reserve_protection(END - 1_000) == []

    def test_reserve_protection_waits_while_its_own_bid_leads(
        self, core: Any, reserve_auction: int, platform: int
    ) -> None:
        core.place_bid(reserve_auction, platform, START_PRICE, T0, platform=True)
        assert core.reserve_protection(END - 1_000) == []

    def test_reserve_protection_answers_a_real_bid_over_its_own(
        self, core: Any, reserve_auction: int, alice: int, platform: int
    ) -> None:
        core.place_bid(reserve_auction, platform, START_PRICE, T0, platform=True)
        core.place_bid(reserve_auction, alice, 200_000, T0)
        assert core.reserve_protection(END - 1_000) == [(reserve_auction, 200_000 + INCREMENT)]

    def test_reserve_protection_skips_auctions_without_reserve(
        self, core: Any, auction: int
    ) -> None:
        assert core.reserve_protection(END - 1_000) == []

    @pytest.mark.parametrize("now", [T0 - 1, END, END + 1])
    def test_reserve_protection_skips_auctions_not_running_now(
        self, core: Any, reserve_auction: int, now: int
    ) -> None:
        assert core.reserve_protection(now) == []

    def test_reserve_protection_skips_scheduled_auctions(self, core: Any) -> None:
        add_live(core, reserve_price_kobo=1_000_000, live=False)
        assert core.reserve_protection(END - 1_000) == []

    def test_reserve_protection_lists_auctions_in_handle_order(self, core: Any) -> None:
        first = add_live(core, auction_id=30, reserve_price_kobo=1_000_000)
        second = add_live(core, auction_id=10, reserve_price_kobo=2_000_000)
        due = core.reserve_protection(END - 1_000)
        assert due == [(first, START_PRICE), (second, START_PRICE)]

    def test_reserve_protection_bid_is_accepted_as_platform_bid(
        self, core: Any, reserve_auction: int, platform: int
    ) -> None:
        [(handle, amount)] = core.reserve_protection(END - 1_000)
        outcome = core.place_bid(handle, platform, amount, END - 1_000, platform=True)
        assert (outcome.accepted, outcome.is_platform, outcome.extended) == (True, True, True)

    # --- closing, cancelling, extending, removing ----------------------------------------

    def test_close_keeps_the_leader_exposed_until_the_auction_is_removed(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        exposed = core.user(alice).exposure_kobo
        core.close_auction(auction)
        assert core.user(alice).exposure_kobo == exposed > 0  # end processing is still to come
        core.remove_auction(auction)
        assert core.user(alice).exposure_kobo == 0

    def test_removing_a_cancelled_auction_releases_nothing_twice(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.cancel_auction(auction)
        core.remove_auction(auction)
        assert core.user(alice).exposure_kobo == 0

    def test_cancel_releases_the_leaders_exposure(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.cancel_auction(auction)
        assert core.user(alice).exposure_kobo == 0

    def test_close_returns_the_result(self, core: Any, auction: int, alice: int, bob: int) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.place_bid(auction, bob, 200_000, END - 1)
        assert attributes(core.close_auction(auction), CLOSED_FIELDS) == {
            "auction": auction,
            "seq": 3,
            "leader": bob,
            "leading_amount_kobo": 200_000,
            "leader_is_platform": False,
            "bid_count": 2,
            "bidder_count": 2,
            "platform_bid_count": 0,
            "end_time_ms": END + WINDOW,
        }

    def test_closed_auction_keeps_its_result(self, core: Any, auction: int, alice: int) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        core.close_auction(auction)
        state = core.auction(auction)
        assert (state.status, state.leader, state.current_price_kobo) == (
            "ended",
            alice,
            START_PRICE,
        )

    def test_close_of_an_auction_without_bids_has_no_leader(self, core: Any, auction: int) -> None:
        closed = core.close_auction(auction)
        assert (closed.leader, closed.leading_amount_kobo, closed.bid_count) == (None, None, 0)

    def test_scheduled_auction_can_be_closed(self, core: Any) -> None:
        auction = add_live(core, live=False)
        assert core.close_auction(auction).seq == 1

    def test_open_makes_a_scheduled_auction_live(self, core: Any) -> None:
        auction = add_live(core, live=False)
        assert (core.open_auction(auction), core.auction(auction).status) == (1, "live")

    @pytest.mark.parametrize("finish", [None, "close_auction", "cancel_auction"])
    def test_open_of_an_auction_not_scheduled_is_invalid_transition(
        self, core: Any, auction: int, finish: str | None
    ) -> None:
        if finish:
            getattr(core, finish)(auction)
        with pytest.raises(InvalidTransition):
            core.open_auction(auction)

    @pytest.mark.parametrize("operation", ["close_auction", "cancel_auction"])
    @pytest.mark.parametrize("finish", ["close_auction", "cancel_auction"])
    def test_finishing_twice_is_invalid_transition(
        self, core: Any, auction: int, finish: str, operation: str
    ) -> None:
        getattr(core, finish)(auction)
        with pytest.raises(InvalidTransition):
            getattr(core, operation)(auction)

    def test_cancel_returns_the_new_seq(self, core: Any, auction: int) -> None:
        assert (core.cancel_auction(auction), core.auction(auction).status) == (1, "cancelled")

    def test_extend_moves_end_later_and_keeps_original_end(self, core: Any, auction: int) -> None:
        seq = core.extend_auction(auction, END + 1)
        state = core.auction(auction)
        assert (seq, state.end_time_ms, state.original_end_ms) == (1, END + 1, END)

    @pytest.mark.parametrize("end", [END, END - 1, -1, MAX_TIME_MS + 1, 2**64])
    def test_extend_to_no_later_end_or_past_max_time_is_invalid_argument(
        self, core: Any, auction: int, end: int
    ) -> None:
        with pytest.raises(InvalidArgument):
            core.extend_auction(auction, end)

    def test_extend_of_an_ended_auction_is_invalid_transition(
        self, core: Any, auction: int
    ) -> None:
        core.close_auction(auction)
        with pytest.raises(InvalidTransition):
            core.extend_auction(auction, END + HOUR)

    @pytest.mark.parametrize(
        "operation",
        ["open_auction", "close_auction", "cancel_auction", "remove_auction", "auction"],
    )
    def test_operation_on_unknown_handle_is_unknown_auction(
        self, core: Any, auction: int, operation: str
    ) -> None:
        with pytest.raises(UnknownAuction):
            getattr(core, operation)(auction + 1)

    def test_remove_of_a_live_auction_is_invalid_transition(self, core: Any, auction: int) -> None:
        with pytest.raises(InvalidTransition):
            core.remove_auction(auction)

    def test_removed_auction_is_forgotten(self, core: Any, auction: int) -> None:
        core.close_auction(auction)
        core.remove_auction(auction)
        forgotten = (core.auction_handle(1), core.auction_handles(), core.auction_count)
        assert forgotten == (None, [], 0)

    def test_removed_id_comes_back_under_a_new_handle(self, core: Any, auction: int) -> None:
        core.cancel_auction(auction)
        core.remove_auction(auction)
        again = add_live(core)
        assert (again, core.auction_handle(1), core.auction_handles()) == (1, 1, [1])

    # --- what is due, and status counts -------------------------------------------------

    def test_due_opens_scheduled_auctions_whose_start_has_come(self, core: Any) -> None:
        scheduled = add_live(core, live=False)
        assert (core.due(T0 - 1), core.due(T0)) == (([], []), ([scheduled], []))

    def test_due_closes_live_auctions_whose_end_has_come(self, core: Any, auction: int) -> None:
        assert (core.due(END - 1), core.due(END)) == (([], []), ([], [auction]))

    def test_due_follows_the_extended_end(self, core: Any, auction: int, alice: int) -> None:
        core.place_bid(auction, alice, START_PRICE, END - 1)
        assert (core.due(END), core.due(END + WINDOW)) == (([], []), ([], [auction]))

    def test_due_lists_auctions_in_handle_order(self, core: Any) -> None:
        first, second = add_live(core, auction_id=9), add_live(core, auction_id=3)
        scheduled = add_live(core, auction_id=5, live=False)
        assert core.due(END) == ([scheduled], [first, second])

    def test_due_skips_finished_auctions(self, core: Any, auction: int) -> None:
        core.close_auction(auction)
        cancelled = add_live(core, auction_id=2, live=False)
        core.cancel_auction(cancelled)
        assert core.due(END) == ([], [])

    def test_status_counts_name_every_status(self, core: Any) -> None:
        assert core.status_counts() == {"scheduled": 0, "live": 0, "ended": 0, "cancelled": 0}

    def test_status_counts_follow_transitions(self, core: Any) -> None:
        handles = [add_live(core, auction_id=i, live=i > 2) for i in range(1, 6)]
        core.close_auction(handles[2])
        core.cancel_auction(handles[0])
        core.cancel_auction(handles[4])
        core.remove_auction(handles[4])
        assert core.status_counts() == {"scheduled": 1, "live": 1, "ended": 1, "cancelled": 1}

    # --- rejected bids change nothing ----------------------------------------------------

    @pytest.mark.parametrize(
        ("bidder", "amount", "at", "expected"),
        [
            ("alice", 0, T0, "invalid_amount"),
            ("alice", 10**15, T0, "invalid_amount"),
            ("bob", 300_000, T0 - 1, "auction_not_live"),
            ("bob", 300_000, END, "auction_ended"),
            ("seller", 300_000, END - 1, "own_auction"),
            ("carol", 300_000, END - 1, "not_eligible"),
            ("alice", 300_000, END - 1, "already_leading"),
            ("bob", 204_999, END - 1, "below_minimum"),
            ("poor", 300_000, END - 1, "insufficient_buying_power"),
        ],
    )
    def test_rejected_bid_changes_nothing(
        self, core: Any, auction: int, bidder: str, amount: int, at: int, expected: str
    ) -> None:
        users = {
            "alice": add_user(core, ALICE_ID),
            "bob": add_user(core, BOB_ID),
            "seller": add_user(core, SELLER_ID),
            "carol": add_user(core, CAROL_ID, eligible=False),
            "poor": add_user(core, 0x9008, balance=59_999),
        }
        other = add_live(core, auction_id=2)
        core.place_bid(other, users["poor"], START_PRICE, T0)  # exposure 20 000 elsewhere
        core.place_bid(auction, users["alice"], 200_000, T0)
        before = state_of(core)
        outcome = core.place_bid(auction, users[bidder], amount, at)
        assert (outcome.code, state_of(core)) == (expected, before)

    def test_rejected_bid_reports_the_bid(self, core: Any, auction: int, alice: int) -> None:
        outcome = core.place_bid(auction, alice, 1, T0 + 5, platform=True)
        reported = (outcome.accepted, outcome.auction, outcome.user, outcome.amount_kobo)
        assert (reported, outcome.at_ms, outcome.is_platform) == (
            (False, auction, alice, 1),
            T0 + 5,
            True,
        )

    # --- users ---------------------------------------------------------------------------

    def test_user_handles_are_dense_from_zero(self, core: Any) -> None:
        handles = [add_user(core, user_id) for user_id in (50, 10, 30)]
        assert (handles, core.user_count, core.user_handle(10)) == ([0, 1, 2], 3, 1)

    def test_upsert_of_a_known_id_keeps_the_handle_and_takes_new_values(
        self, core: Any, auction: int, alice: int
    ) -> None:
        core.place_bid(auction, alice, START_PRICE, T0)
        again = core.upsert_user(ALICE_ID, balance_kobo=5, eligible=False)
        user = core.user(alice)
        values = (user.balance_kobo, user.eligible, user.exposure_kobo)
        assert (again, values, core.user_count) == (alice, (5, False, 20_000), 1)

    def test_unknown_user_id_has_no_handle(self, core: Any) -> None:
        assert core.user_handle(ALICE_ID) is None

    @pytest.mark.parametrize("balance", [-1, 10**18, 2**63, 2**64])
    def test_balance_outside_0_to_10_18_is_invalid_argument(self, core: Any, balance: int) -> None:
        with pytest.raises(InvalidArgument):
            add_user(core, ALICE_ID, balance=balance)

    def test_largest_balance_is_valid(self, core: Any) -> None:
        assert core.user(add_user(core, ALICE_ID, balance=10**18 - 1)).balance_kobo == 10**18 - 1

    def test_set_balance_and_eligibility_take_effect(self, core: Any, alice: int) -> None:
        core.set_balance(alice, 7)
        core.set_eligible(alice, False)
        assert (core.user(alice).balance_kobo, core.user(alice).eligible) == (7, False)

    @pytest.mark.parametrize(
        "call",
        [
            lambda core: core.user(0),
            lambda core: core.set_balance(0, 1),
            lambda core: core.set_eligible(0, True),
        ],
    )
    def test_unknown_user_handle_is_unknown_user(self, core: Any, call: Any) -> None:
        with pytest.raises(UnknownUser):
            call(core)

    # --- loading auctions ----------------------------------------------------------------

    def test_auction_without_sellers_has_none(self, core: Any) -> None:
        assert core.auction(add_live(core, sellers=None)).sellers == []

    def test_new_auction_is_scheduled_with_defaults(self, core: Any) -> None:
        state = core.auction(
            core.add_auction(
                1,
                start_time_ms=T0,
                end_time_ms=END,
                start_price_kobo=START_PRICE,
                bid_increment_kobo=INCREMENT,
            )
        )
        settings = (state.deposit_pct_bp, state.anti_snipe_window_ms, state.anti_snipe_extension_ms)
        assert (state.status, state.seq, state.original_end_ms, settings) == (
            "scheduled",
            0,
            END,
            (2000, 120_000, 120_000),
        )

    def test_new_auction_has_no_lead(self, core: Any, auction: int) -> None:
        state = core.auction(auction)
        lead = (state.leader, state.current_price_kobo, state.leader_is_platform)
        assert (lead, state.min_next_bid_kobo, state.bidders) == (
            (None, None, False),
            START_PRICE,
            [],
        )

    @pytest.mark.parametrize(
        "settings",
        [
            {"start_time_ms": -1},
            {"start_time_ms": END},
            {"end_time_ms": MAX_TIME_MS + 1, "start_time_ms": 0},
            {"start_price_kobo": 0},
            {"start_price_kobo": 10**15},
            {"bid_increment_kobo": 0},
            {"bid_increment_kobo": 10**15},
            {"reserve_price_kobo": 0},
            {"reserve_price_kobo": 10**15},
            {"deposit_pct_bp": -1},
            {"deposit_pct_bp": 10_001},
            {"anti_snipe_window_ms": -1},
            {"anti_snipe_window_ms": 604_800_001},
            {"anti_snipe_extension_ms": 604_800_001},
            {"sellers": list(range(9))},
            {"end_time_ms": 2**64},
            {"start_price_kobo": 2**64},
        ],
    )
    def test_setting_out_of_range_is_invalid_argument(
        self, core: Any, settings: dict[str, Any]
    ) -> None:
        with pytest.raises(InvalidArgument):
            add_live(core, **settings)

    def test_widest_valid_settings_are_accepted(self, core: Any) -> None:
        auction = add_live(
            core,
            start_time_ms=0,
            end_time_ms=MAX_TIME_MS,
            start_price_kobo=10**15 - 1,
            bid_increment_kobo=10**15 - 1,
            reserve_price_kobo=10**15 - 1,
            deposit_pct_bp=10_000,
            anti_snipe_window_ms=604_800_000,
            anti_snipe_extension_ms=604_800_000,
            sellers=[2**128 - 1, *range(7)],
        )
        assert core.auction(auction).sellers == [2**128 - 1, *range(7)]

    def test_loaded_id_is_duplicate_auction(self, core: Any, auction: int) -> None:
        with pytest.raises(DuplicateAuction):
            add_live(core)

    def test_auction_handles_are_dense_from_zero(self, core: Any) -> None:
        handles = [add_live(core, auction_id=auction_id) for auction_id in (9, 3, 5)]
        assert (handles, core.auction_handles(), core.auction_handle(3)) == (
            [0, 1, 2],
            [0, 1, 2],
            1,
        )

    # --- restoring auctions --------------------------------------------------------------

    @pytest.fixture
    def ledger_users(self, core: Any) -> tuple[int, int]:
        return add_user(core, ALICE_ID), add_user(core, BOB_ID)

    def test_restore_keeps_the_ledger_state(self, core: Any, ledger_users: Any) -> None:
        state = core.auction(core.restore_auction(1, **restore_arguments()))
        lead = (state.leader, state.current_price_kobo, state.bidders, state.min_next_bid_kobo)
        counts = (state.bid_count, state.bidder_count, state.platform_bid_count, state.seq)
        ends = (state.end_time_ms, state.original_end_ms)
        assert (lead, counts, ends) == (
            (0, 200_000, [1, 0], 205_000),
            (4, 2, 1, 9),
            (END + WINDOW, END),
        )

    def test_restore_adds_the_real_leaders_deposit_to_exposure(
        self, core: Any, ledger_users: Any
    ) -> None:
        core.restore_auction(1, **restore_arguments())
        assert (core.user(0).exposure_kobo, core.user(1).exposure_kobo) == (40_000, 0)

    def test_restored_platform_lead_adds_no_exposure(self, core: Any, ledger_users: Any) -> None:
        core.restore_auction(1, **restore_arguments(leader=0, leader_is_platform=True, bidders=[1]))
        assert core.user(0).exposure_kobo == 0

    def test_restore_of_an_auction_without_bids(self, core: Any) -> None:
        arguments = restore_arguments(
            live=False,
            leader=None,
            leading_amount_kobo=None,
            bidders=[],
            bid_count=0,
            platform_bid_count=0,
            seq=0,
        )
        state = core.auction(core.restore_auction(1, **arguments))
        assert (state.status, state.leader, state.bid_count) == ("scheduled", None, 0)

    @pytest.mark.parametrize(
        "changes",
        [
            {"original_end_ms": END + WINDOW + 1},
            {"original_end_ms": T0},
            {"live": False},
            {"leading_amount_kobo": START_PRICE - 1},
            {"leading_amount_kobo": None},
            {"leading_amount_kobo": 10**15},
            {"bidders": [1]},
            {"bidders": [0, 0]},
            {"bid_count": 2},
            {"leader": None, "leading_amount_kobo": None, "bidders": []},
            {"start_price_kobo": 0},
        ],
    )
    def test_inconsistent_restore_is_invalid_argument(
        self, core: Any, ledger_users: Any, changes: dict[str, Any]
    ) -> None:
        with pytest.raises(InvalidArgument):
            core.restore_auction(1, **restore_arguments(**changes))

    @pytest.mark.parametrize("changes", [{"leader": 5, "bidders": [1, 5]}, {"bidders": [0, 1, 5]}])
    def test_restore_naming_an_unknown_user_is_unknown_user(
        self, core: Any, ledger_users: Any, changes: dict[str, Any]
    ) -> None:
        with pytest.raises(UnknownUser):
            core.restore_auction(1, **restore_arguments(**changes, bid_count=5))

    def test_restore_of_a_loaded_id_is_duplicate_auction(
        self, core: Any, ledger_users: Any, auction: int
    ) -> None:
        with pytest.raises(DuplicateAuction):
            core.restore_auction(1, **restore_arguments())

    def test_restore_refused_as_inconsistent_changes_nothing(
        self, core: Any, ledger_users: Any
    ) -> None:
        before = state_of(core)
        with pytest.raises(InvalidArgument):
            core.restore_auction(1, **restore_arguments(bid_count=1))
        assert state_of(core) == before

    def test_restore_refused_as_duplicate_changes_nothing(
        self, core: Any, ledger_users: Any, auction: int
    ) -> None:
        before = state_of(core)
        with pytest.raises(DuplicateAuction):
            core.restore_auction(1, **restore_arguments())
        assert state_of(core) == before

    # --- batches -------------------------------------------------------------------------

    def test_batch_decides_like_bids_one_by_one(self) -> None:
        bids = [
            (0, 0, START_PRICE, T0, False),
            (0, 1, START_PRICE, T0, False),  # equal: below minimum
            (0, 1, 120_000, END - 1, False),  # extends
            (1, 2, START_PRICE, T0, True),  # platform
            (1, 2, 200_000, T0, True),  # already leading
            (0, 0, 125_000, END + WINDOW - 1, False),  # inside the extended time
            (0, 1, 10**15, T0, False),  # invalid amount
            (3, 0, START_PRICE, T0, False),  # unknown auction
        ]
        one_by_one, batched = self.implementation(), self.implementation()
        for core in (one_by_one, batched):
            for user_id in (ALICE_ID, BOB_ID, PLATFORM_ID):
                add_user(core, user_id, balance=40_000)
            add_live(core, auction_id=1)
            add_live(core, auction_id=2, reserve_price_kobo=10**6)
        expected = [outcome_fields(one_by_one.place_bid(*bid)) for bid in bids]
        batch = self.batch_class()
        for bid in bids:
            batch.append(*bid)
        outcomes = batched.place_batch(batch)
        assert [outcome_fields(outcomes[i]) for i in range(len(outcomes))] == expected
        assert state_of(batched) == state_of(one_by_one)

    def test_batch_from_columns_equals_appended_bids(self) -> None:
        appended = self.batch_class()
        appended.append(0, 0, START_PRICE, T0)
        appended.append(0, 1, 200_000, END - 1, True)
        from_columns = self.batch_class.from_columns(
            [0, 0], [0, 1], [START_PRICE, 200_000], [T0, END - 1], [False, True]
        )
        outcomes = []
        for batch in (appended, from_columns):
            core = self.implementation()
            add_user(core, ALICE_ID)
            add_user(core, PLATFORM_ID)
            add_live(core)
            result = core.place_batch(batch)
            outcomes.append([outcome_fields(result[i]) for i in range(len(result))])
        assert outcomes[0] == outcomes[1]

    def test_batch_from_columns_without_platform_column_holds_real_bids(self) -> None:
        batch = self.batch_class.from_columns([0], [0], [1], [2])
        core = self.implementation()
        assert core.place_batch(batch)[0].is_platform is False

    def test_batch_columns_of_different_lengths_are_value_error(self) -> None:
        with pytest.raises(ValueError):
            self.batch_class.from_columns([0, 1], [0], [1], [2])

    def test_batch_len_counts_bids_and_clear_empties_it(self) -> None:
        batch = self.batch_class()
        batch.append(0, 0, 1, 2)
        batch.append(0, 0, 1, 2, True)
        size = len(batch)
        batch.clear()
        assert (size, len(batch)) == (2, 0)


class TestReferenceModel(RuleExamples):
    implementation = ReferenceCore
    batch_class = ReferenceBidBatch
