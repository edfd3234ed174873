"""The bid rules by example, one behaviour per test (maximum bids included).

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
    deposit,
    opened_fields,
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
DAVE_ID = 0xDA7E

#: RULES.md's maximum-bid examples are in increments of 50 from a start of 100.
SMALL_START = 100
SMALL_STEP = 50


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


def rows(bids: Any) -> list[tuple[int, int, bool]]:
    """Bid rows as (user, amount, placed for a max)."""
    return [(bid.user, bid.amount_kobo, bid.is_proxy) for bid in bids]


def lead(core: Any, auction: int) -> tuple[int | None, int | None, int | None]:
    """(leader, price, the leader's max)."""
    state = core.auction(auction)
    return state.leader, state.current_price_kobo, state.leader_max_kobo


def exposures(core: Any, *users: int) -> tuple[int, ...]:
    return tuple(core.user(user).exposure_kobo for user in users)


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
        opened = core.open_auction(auction, T0)
        assert (opened.seq, opened.bids, core.auction(auction).status) == (1, [], "live")

    @pytest.mark.parametrize("finish", [None, "close_auction", "cancel_auction"])
    def test_open_of_an_auction_not_scheduled_is_invalid_transition(
        self, core: Any, auction: int, finish: str | None
    ) -> None:
        if finish:
            getattr(core, finish)(auction)
        with pytest.raises(InvalidTransition):
            core.open_auction(auction, T0)

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
        ("operation", "more"),
        [
            ("open_auction", (T0,)),
            ("close_auction", ()),
            ("cancel_auction", ()),
            ("remove_auction", ()),
            ("auction", ()),
        ],
    )
    def test_operation_on_unknown_handle_is_unknown_auction(
        self, core: Any, auction: int, operation: str, more: tuple[int, ...]
    ) -> None:
        with pytest.raises(UnknownAuction):
            getattr(core, operation)(auction + 1, *more)

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

    # --- eviction (a partition moved to another node) -----------------------------------

    def test_an_evicted_live_auction_is_forgotten_and_frees_its_leaders_exposure(
        self, core: Any, auction: int, alice: int
    ) -> None:
        assert core.place_bid(auction, alice, START_PRICE, T0).accepted
        core.evict_auction(auction)
        forgotten = (core.auction_handle(1), core.auction_handles(), exposures(core, alice))
        assert forgotten == (None, [], (0,))
        assert core.place_bid(auction, alice, START_PRICE, T0).code == "unknown_auction"

    def test_an_evicted_scheduled_auction_frees_its_pre_bids_exposure(
        self, core: Any, alice: int
    ) -> None:
        scheduled = add_live(core, live=False)
        assert core.set_max(scheduled, alice, 2 * START_PRICE, T0 - 10).accepted
        assert exposures(core, alice) != (0,)
        core.evict_auction(scheduled)
        assert exposures(core, alice) == (0,)

    def test_an_evicted_cancelled_or_ended_auction_releases_no_more_than_it_held(
        self, core: Any, alice: int, bob: int
    ) -> None:
        cancelled, ended = add_live(core, 1), add_live(core, 2)
        assert core.place_bid(cancelled, alice, START_PRICE, T0).accepted
        assert core.place_bid(ended, bob, START_PRICE, T0).accepted
        core.cancel_auction(cancelled)  # alice released here
        core.close_auction(ended)  # bob stays exposed until end processing
        core.evict_auction(cancelled)
        core.evict_auction(ended)
        assert exposures(core, alice, bob) == (0, 0)

    def test_evicting_an_unknown_auction_is_unknown_auction(self, core: Any) -> None:
        with pytest.raises(UnknownAuction):
            core.evict_auction(7)

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

    # --- maximum (proxy) bids: RULES.md's examples, increment 50 ---------------------

    @pytest.fixture
    def small(self, core: Any) -> int:
        """A live auction from 100 in steps of 50, 20 % deposit: RULES.md's examples."""
        return add_live(
            core,
            auction_id=5,
            start_price_kobo=SMALL_START,
            bid_increment_kobo=SMALL_STEP,
            sellers=[SELLER_ID],
        )

    @pytest.fixture
    def carol(self, core: Any) -> int:
        return add_user(core, CAROL_ID)

    def test_a_max_on_an_auction_without_bids_leads_at_the_start_price(
        self, core: Any, small: int, alice: int
    ) -> None:
        result = core.set_max(small, alice, 1_000, T0)
        assert (rows(result.bids), result.leading, result.price_kobo) == (
            [(alice, SMALL_START, True)],
            True,
            SMALL_START,
        )

    def test_a_set_max_reports_itself(self, core: Any, small: int, alice: int) -> None:
        result = core.set_max(small, alice, 1_000, T0)
        reported = (result.accepted, result.code, result.auction, result.user, result.max_kobo)
        assert reported == (True, "accepted", small, alice, 1_000)

    def test_rules_example_a_bid_under_a_max_is_answered_one_increment_up(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        trigger = core.place_bid(small, bob, 500, T0)
        answer = trigger.answer
        assert (trigger.accepted, trigger.is_proxy) == (True, False)
        assert (answer.user, answer.amount_kobo, answer.is_proxy, answer.seq) == (
            alice,
            550,
            True,
            trigger.seq + 1,
        )
        assert lead(core, small) == (alice, 550, 1_000)

    def test_rules_example_a_lower_max_places_itself_and_is_answered(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.place_bid(small, bob, 500, T0)
        result = core.set_max(small, bob, 800, T0)
        assert (rows(result.bids), result.leading, result.price_kobo) == (
            [(bob, 800, True), (alice, 850, True)],
            False,
            850,
        )

    def test_rules_example_an_equal_max_leaves_the_earlier_leading_at_that_amount(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.place_bid(small, bob, 500, T0)
        core.set_max(small, bob, 800, T0)
        result = core.set_max(small, bob, 1_000, T0)
        assert (rows(result.bids), result.leading) == (
            [(bob, 1_000, True), (alice, 1_000, True)],
            False,
        )
        assert lead(core, small) == (alice, 1_000, 1_000)

    def test_rules_example_a_bid_above_the_max_leads_and_spends_it(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.place_bid(small, bob, 500, T0)
        core.set_max(small, bob, 1_000, T0)
        trigger = core.place_bid(small, bob, 1_100, T0)
        assert (trigger.accepted, trigger.answer, lead(core, small)) == (
            True,
            None,
            (bob, 1_100, None),
        )
        assert exposures(core, alice, bob) == (0, deposit(1_100, 2000))

    # --- maximum bids: the edges -------------------------------------------------------

    def test_a_bid_one_increment_under_the_max_is_answered_at_the_max(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        assert core.place_bid(small, bob, 950, T0).answer.amount_kobo == 1_000

    def test_a_bid_equal_to_the_max_is_answered_at_the_same_amount(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        answer = core.place_bid(small, bob, 1_000, T0).answer
        assert (answer.user, answer.amount_kobo) == (alice, 1_000)
        assert (lead(core, small), exposures(core, bob)) == ((alice, 1_000, 1_000), (0,))

    def test_a_max_met_by_a_tie_answers_nothing_more(
        self, core: Any, small: int, alice: int, bob: int, carol: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.place_bid(small, bob, 1_000, T0)
        trigger = core.place_bid(small, carol, 1_050, T0)
        assert (trigger.answer, lead(core, small)) == (None, (carol, 1_050, None))

    def test_the_answered_bidder_is_a_bidder_and_each_row_counts(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.place_bid(small, bob, 500, T0)
        state = core.auction(small)
        assert (state.bidders, state.bid_count, state.seq) == ([alice, bob], 3, 3)

    def test_a_row_placed_for_a_max_holds_the_deposit_of_the_max(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        answer = core.place_bid(small, bob, 500, T0).answer
        assert (answer.deposit_kobo, exposures(core, alice, bob)) == (
            deposit(1_000, 2000),
            (deposit(1_000, 2000), 0),
        )

    def test_an_answer_reports_the_bid_it_answered_as_previous(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        answer = core.place_bid(small, bob, 500, T0).answer
        assert (answer.previous_leader, answer.previous_amount_kobo) == (bob, 500)

    def test_a_max_below_the_minimum_is_below_minimum(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.place_bid(small, alice, 500, T0)
        assert core.set_max(small, bob, 549, T0).code == "below_minimum"

    def test_a_max_equal_to_the_minimum_leads_at_it(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.place_bid(small, alice, 500, T0)
        result = core.set_max(small, bob, 550, T0)
        assert (rows(result.bids), lead(core, small)) == ([(bob, 550, True)], (bob, 550, 550))

    def test_a_max_against_a_plain_bid_leads_one_increment_up(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.place_bid(small, alice, 300, T0)
        result = core.set_max(small, bob, 2_000, T0)
        assert (rows(result.bids), exposures(core, alice, bob)) == (
            [(bob, 350, True)],
            (0, deposit(2_000, 2000)),
        )

    def test_a_higher_max_meets_the_leaders_max_in_full_then_passes_it(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 800, T0)
        result = core.set_max(small, bob, 2_000, T0)
        assert (rows(result.bids), result.leading, result.price_kobo) == (
            [(alice, 800, True), (bob, 850, True)],
            True,
            850,
        )
        assert exposures(core, alice, bob) == (0, deposit(2_000, 2000))

    def test_a_max_passing_by_less_than_an_increment_leads_at_itself(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 800, T0)
        result = core.set_max(small, bob, 820, T0)
        assert rows(result.bids) == [(alice, 800, True), (bob, 820, True)]

    def test_equal_maxes_go_to_the_one_set_earlier(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        result = core.set_max(small, bob, 1_000, T0)
        assert (result.leading, lead(core, small)) == (False, (alice, 1_000, 1_000))

    def test_the_leader_may_set_a_max_over_its_own_bid(
        self, core: Any, small: int, alice: int
    ) -> None:
        core.place_bid(small, alice, 500, T0)
        result = core.set_max(small, alice, 1_000, T0)
        assert (result.bids, result.leading, result.price_kobo) == ([], True, 500)
        assert (lead(core, small), exposures(core, alice)) == (
            (alice, 500, 1_000),
            (deposit(1_000, 2000),),
        )

    def test_the_leader_raising_its_max_places_no_bid(
        self, core: Any, small: int, alice: int
    ) -> None:
        core.set_max(small, alice, 800, T0)
        before = core.auction(small)
        result = core.set_max(small, alice, 1_500, T0)
        after = core.auction(small)
        assert (result.bids, after.seq, after.current_price_kobo) == ([], before.seq, SMALL_START)
        assert (after.leader_max_kobo, exposures(core, alice)) == (1_500, (deposit(1_500, 2000),))

    @pytest.mark.parametrize("again", [800, 700])
    def test_raising_a_max_to_the_same_or_less_is_below_minimum(
        self, core: Any, small: int, alice: int, again: int
    ) -> None:
        core.set_max(small, alice, 800, T0)
        assert core.set_max(small, alice, again, T0).code == "below_minimum"

    def test_the_leaders_raise_counts_this_auctions_deposit_once(
        self, core: Any, small: int
    ) -> None:
        user = add_user(core, CAROL_ID, balance=deposit(1_000, 2000))
        core.set_max(small, user, 800, T0)
        assert core.set_max(small, user, 1_000, T0).accepted

    def test_a_max_needs_buying_power_for_its_deposit_over_exposure_elsewhere(
        self, core: Any, small: int, auction: int
    ) -> None:
        user = add_user(core, CAROL_ID, balance=20_000 + deposit(1_000, 2000) - 1)
        core.place_bid(auction, user, START_PRICE, T0)  # 20 000 elsewhere
        assert core.set_max(small, user, 1_000, T0).code == "insufficient_buying_power"

    def test_a_max_beyond_buying_power_changes_nothing(self, core: Any, small: int) -> None:
        user = add_user(core, CAROL_ID, balance=deposit(500, 2000))
        before = state_of(core)
        outcome = core.set_max(small, user, 1_000, T0)
        assert (outcome.code, state_of(core)) == ("insufficient_buying_power", before)

    def test_a_bidder_answered_by_a_max_may_set_a_higher_max(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.place_bid(small, bob, 500, T0)
        result = core.set_max(small, bob, 1_200, T0)
        assert rows(result.bids) == [(alice, 1_000, True), (bob, 1_050, True)]

    def test_a_reserve_protection_bid_is_answered_by_a_max(
        self, core: Any, small: int, alice: int, platform: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        trigger = core.place_bid(small, platform, 150, T0, platform=True)
        assert (trigger.answer.user, trigger.answer.amount_kobo, trigger.answer.is_platform) == (
            alice,
            200,
            False,
        )
        assert lead(core, small) == (alice, 200, 1_000)

    def test_a_max_over_a_platform_lead_leads_one_increment_up(
        self, core: Any, small: int, alice: int, platform: int
    ) -> None:
        core.place_bid(small, platform, 500, T0, platform=True)
        result = core.set_max(small, alice, 1_000, T0)
        assert rows(result.bids) == [(alice, 550, True)]

    def test_a_max_from_the_holder_of_a_platform_lead_is_a_real_bid_over_it(
        self, core: Any, small: int
    ) -> None:
        holder = add_user(core, PLATFORM_ID)
        core.place_bid(small, holder, 500, T0, platform=True)
        result = core.set_max(small, holder, 1_000, T0)
        state = core.auction(small)
        assert rows(result.bids) == [(holder, 550, True)]
        assert (state.leader_is_platform, state.leader_max_kobo) == (False, 1_000)

    def test_every_row_in_the_window_extends_a_bid_and_its_answer(
        self, core: Any, alice: int, bob: int
    ) -> None:
        auction = add_live(
            core, start_price_kobo=100, bid_increment_kobo=50, anti_snipe_extension_ms=1_000
        )
        core.set_max(auction, alice, 1_000, T0)
        trigger = core.place_bid(auction, bob, 500, END - 1_000)
        answer = trigger.answer
        assert [(o.extended, o.end_time_ms) for o in (trigger, answer)] == [
            (True, END + 1_000),
            (True, END + 2_000),
        ]

    def test_every_row_a_max_places_in_the_window_extends(
        self, core: Any, alice: int, bob: int
    ) -> None:
        auction = add_live(
            core, start_price_kobo=100, bid_increment_kobo=50, anti_snipe_extension_ms=1_000
        )
        core.set_max(auction, alice, 800, T0)
        result = core.set_max(auction, bob, 2_000, END - 1)
        assert [(bid.extended, bid.end_time_ms) for bid in result.bids] == [
            (True, END + 1_000),
            (True, END + 2_000),
        ]

    def test_an_answer_outside_the_window_the_bid_extended_does_not_extend(
        self, core: Any, small: int, alice: int, bob: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        trigger = core.place_bid(small, bob, 500, END - 1_000)
        assert (trigger.extended, trigger.answer.extended, trigger.answer.end_time_ms) == (
            True,
            False,
            END + WINDOW,
        )

    def test_close_keeps_a_max_leader_exposed_for_its_max_until_removed(
        self, core: Any, small: int, alice: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.close_auction(small)
        exposed = exposures(core, alice)
        core.remove_auction(small)
        assert (exposed, exposures(core, alice)) == ((deposit(1_000, 2000),), (0,))

    def test_cancel_releases_a_max_leaders_exposure(
        self, core: Any, small: int, alice: int
    ) -> None:
        core.set_max(small, alice, 1_000, T0)
        core.cancel_auction(small)
        assert exposures(core, alice) == (0,)

    @pytest.mark.parametrize("amount", [0, -1, 10**15, 2**63, 2**64])
    def test_a_max_outside_one_to_10_15_is_invalid_amount(
        self, core: Any, small: int, alice: int, amount: int
    ) -> None:
        assert core.set_max(small, alice, amount, T0).code == "invalid_amount"

    def test_a_max_that_is_not_an_int_is_type_error(
        self, core: Any, small: int, alice: int
    ) -> None:
        with pytest.raises(TypeError):
            core.set_max(small, alice, 1_000.0, T0)

    def test_a_rejected_max_reports_the_max(self, core: Any, small: int, alice: int) -> None:
        outcome = core.set_max(small, alice, 1, T0 + 5)
        reported = (outcome.accepted, outcome.code, outcome.auction, outcome.user)
        assert (reported, outcome.amount_kobo, outcome.at_ms, outcome.is_platform) == (
            (False, "below_minimum", small, alice),
            1,
            T0 + 5,
            False,
        )

    @pytest.mark.parametrize(
        ("bidder", "setup", "at", "expected"),
        [
            ("alice", None, T0, "invalid_amount"),  # the max is 0 below
            ("alice", "remove", T0, "unknown_auction"),
            ("alice", "unknown", T0, "unknown_auction"),
            ("alice", "cancel", T0, "auction_not_live"),
            ("alice", None, T0 - 1, "auction_not_live"),
            ("alice", "close", T0, "auction_ended"),
            ("alice", None, END, "auction_ended"),
            ("seller", None, T0, "own_auction"),
            ("dave", None, T0, "not_eligible"),
            ("nobody", None, T0, "not_eligible"),
            ("alice", None, T0, "below_minimum"),  # the max is 549 below
            ("poor", None, T0, "insufficient_buying_power"),
        ],
    )
    def test_a_rejected_max_changes_nothing(
        self, core: Any, small: int, bidder: str, setup: str | None, at: int, expected: str
    ) -> None:
        users = {
            "alice": add_user(core, ALICE_ID),
            "bob": add_user(core, BOB_ID),
            "seller": add_user(core, SELLER_ID),
            "dave": add_user(core, DAVE_ID, eligible=False),
            "poor": add_user(core, 0x9008, balance=deposit(1_000, 2000) - 1),
        }
        users["nobody"] = len(users)
        core.set_max(small, users["bob"], 800, T0)
        core.place_bid(small, users["alice"], 500, T0)  # answered: bob leads at 550
        auction = small
        if setup == "remove":
            core.cancel_auction(small)
            core.remove_auction(small)
        elif setup == "unknown":
            auction = small + 1
        elif setup == "cancel":
            core.cancel_auction(small)
        elif setup == "close":
            core.close_auction(small)
        amount = {"invalid_amount": 0, "below_minimum": 549}.get(expected, 1_000)
        before = state_of(core)
        outcome = core.set_max(auction, users[bidder], amount, at)
        assert (outcome.code, state_of(core)) == (expected, before)

    def test_a_max_on_a_removed_auction_is_unknown_auction(
        self, core: Any, small: int, alice: int
    ) -> None:
        core.cancel_auction(small)
        core.remove_auction(small)
        assert core.set_max(small, alice, 1_000, T0).code == "unknown_auction"

    # --- pre-bids: maxes on a scheduled auction -----------------------------------------

    @pytest.fixture
    def scheduled(self, core: Any) -> int:
        """Scheduled from T0, from 100 in steps of 50, 20 % deposit."""
        return add_live(
            core,
            auction_id=6,
            start_price_kobo=SMALL_START,
            bid_increment_kobo=SMALL_STEP,
            sellers=[SELLER_ID],
            live=False,
        )

    def test_a_pre_bid_places_no_row_and_would_lead_at_the_start_price(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        result = core.set_max(scheduled, alice, 1_000, T0 - HOUR)
        state = core.auction(scheduled)
        assert (result.bids, result.leading, result.price_kobo) == ([], True, SMALL_START)
        assert (state.prebids, state.seq, state.leader) == ([(alice, 1_000)], 0, None)

    def test_only_the_would_be_leader_of_pre_bids_is_exposed(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        result = core.set_max(scheduled, bob, 800, T0)
        assert (result.leading, result.price_kobo) == (False, 850)
        assert exposures(core, alice, bob) == (deposit(1_000, 2000), 0)

    def test_a_higher_pre_bid_takes_the_would_be_lead_and_its_exposure(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 800, T0)
        result = core.set_max(scheduled, bob, 1_000, T0)
        assert (result.leading, result.price_kobo) == (True, 850)
        assert exposures(core, alice, bob) == (0, deposit(1_000, 2000))

    def test_a_pre_bid_below_the_start_price_is_below_minimum(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        assert core.set_max(scheduled, alice, SMALL_START - 1, T0).code == "below_minimum"

    @pytest.mark.parametrize("again", [800, 700])
    def test_raising_a_pre_bid_to_the_same_or_less_is_below_minimum(
        self, core: Any, scheduled: int, alice: int, again: int
    ) -> None:
        core.set_max(scheduled, alice, 800, T0)
        assert core.set_max(scheduled, alice, again, T0).code == "below_minimum"

    def test_a_pre_bid_needs_buying_power_for_its_deposit(self, core: Any, scheduled: int) -> None:
        user = add_user(core, CAROL_ID, balance=deposit(1_000, 2000) - 1)
        assert core.set_max(scheduled, user, 1_000, T0).code == "insufficient_buying_power"

    def test_the_would_be_leaders_raise_counts_its_pre_bid_once(
        self, core: Any, scheduled: int
    ) -> None:
        user = add_user(core, CAROL_ID, balance=deposit(1_000, 2000))
        core.set_max(scheduled, user, 800, T0)
        assert core.set_max(scheduled, user, 1_000, T0).accepted

    def test_a_pre_bid_may_come_after_the_start_until_the_auction_opens(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        assert core.set_max(scheduled, alice, 1_000, END - 1).accepted

    def test_a_pre_bid_at_the_end_time_is_auction_ended(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        assert core.set_max(scheduled, alice, 1_000, END).code == "auction_ended"

    def test_a_pre_bid_on_ones_own_auction_is_own_auction(self, core: Any, scheduled: int) -> None:
        seller = add_user(core, SELLER_ID)
        assert core.set_max(scheduled, seller, 1_000, T0).code == "own_auction"

    def test_one_pre_bid_alone_opens_at_the_start_price(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0 - HOUR)
        opened = core.open_auction(scheduled, T0)
        assert (opened.seq, rows(opened.bids)) == (1, [(alice, SMALL_START, True)])
        assert (lead(core, scheduled), opened.bids[0].seq) == ((alice, SMALL_START, 1_000), 2)

    def test_two_pre_bids_open_one_increment_above_the_second(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.set_max(scheduled, bob, 800, T0)
        opened = core.open_auction(scheduled, T0)
        assert rows(opened.bids) == [(bob, 800, True), (alice, 850, True)]
        assert (lead(core, scheduled), exposures(core, alice, bob)) == (
            (alice, 850, 1_000),
            (deposit(1_000, 2000), 0),
        )

    def test_pre_bids_are_gone_once_the_auction_opens(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.open_auction(scheduled, T0)
        assert core.auction(scheduled).prebids == []

    def test_only_the_two_highest_pre_bids_place_rows(
        self, core: Any, scheduled: int, alice: int, bob: int, carol: int
    ) -> None:
        core.set_max(scheduled, alice, 700, T0)
        core.set_max(scheduled, bob, 1_000, T0)
        core.set_max(scheduled, carol, 900, T0)
        opened = core.open_auction(scheduled, T0)
        assert rows(opened.bids) == [(carol, 900, True), (bob, 950, True)]

    def test_equal_pre_bids_go_to_the_one_set_earlier(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.set_max(scheduled, bob, 1_000, T0)
        opened = core.open_auction(scheduled, T0)
        assert rows(opened.bids) == [(bob, 1_000, True), (alice, 1_000, True)]

    def test_a_raised_pre_bid_loses_its_place_among_equals(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 800, T0)
        core.set_max(scheduled, bob, 1_000, T0)
        result = core.set_max(scheduled, alice, 1_000, T0)
        assert (result.leading, core.auction(scheduled).prebids) == (
            False,
            [(bob, 1_000), (alice, 1_000)],
        )
        opened = core.open_auction(scheduled, T0)
        assert rows(opened.bids) == [(alice, 1_000, True), (bob, 1_000, True)]
        assert exposures(core, alice, bob) == (0, deposit(1_000, 2000))

    def test_pre_bids_of_bidders_no_longer_eligible_do_not_resolve(
        self, core: Any, scheduled: int, alice: int, bob: int, carol: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.set_max(scheduled, bob, 800, T0)
        core.set_max(scheduled, carol, 700, T0)
        core.set_eligible(alice, False)
        opened = core.open_auction(scheduled, T0)
        assert rows(opened.bids) == [(carol, 700, True), (bob, 750, True)]
        assert exposures(core, alice, bob, carol) == (0, deposit(800, 2000), 0)

    def test_pre_bid_rows_in_the_window_extend(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.set_max(scheduled, bob, 800, T0)
        opened = core.open_auction(scheduled, END - 1)
        assert [(bid.extended, bid.end_time_ms) for bid in opened.bids] == [
            (True, END + WINDOW),
            (False, END + WINDOW),
        ]

    def test_cancel_releases_a_pre_bids_exposure(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.cancel_auction(scheduled)
        assert (exposures(core, alice), core.auction(scheduled).prebids) == ((0,), [])

    def test_close_of_a_scheduled_auction_releases_its_pre_bids(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.close_auction(scheduled)
        assert (exposures(core, alice), core.auction(scheduled).prebids) == ((0,), [])

    def test_a_pre_bid_on_a_cancelled_auction_is_auction_not_live(
        self, core: Any, scheduled: int, alice: int
    ) -> None:
        core.cancel_auction(scheduled)
        assert core.set_max(scheduled, alice, 1_000, T0).code == "auction_not_live"

    def test_an_auction_opened_with_pre_bids_answers_bids_by_its_leaders_max(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        core.open_auction(scheduled, T0)
        assert core.place_bid(scheduled, bob, 500, T0).answer.amount_kobo == 550

    # --- restoring maxes and pre-bids ---------------------------------------------------

    def test_restore_with_a_leader_max_exposes_the_deposit_of_the_max(
        self, core: Any, ledger_users: Any
    ) -> None:
        handle = core.restore_auction(1, **restore_arguments(leader_max_kobo=500_000))
        assert (core.auction(handle).leader_max_kobo, exposures(core, 0, 1)) == (
            500_000,
            (100_000, 0),
        )

    def test_a_restored_leader_max_answers_bids(self, core: Any, ledger_users: Any) -> None:
        handle = core.restore_auction(1, **restore_arguments(leader_max_kobo=500_000))
        answer = core.place_bid(handle, 1, 300_000, T0).answer
        assert (answer.user, answer.amount_kobo, answer.is_proxy) == (0, 305_000, True)

    def test_restore_with_pre_bids_exposes_the_would_be_leader(
        self, core: Any, ledger_users: Any
    ) -> None:
        arguments = restore_arguments(
            live=False,
            leader=None,
            leading_amount_kobo=None,
            bidders=[],
            bid_count=0,
            platform_bid_count=0,
            seq=0,
            prebids=[(1, 300_000), (0, 300_000)],
        )
        handle = core.restore_auction(1, **arguments)
        assert (core.auction(handle).prebids, exposures(core, 0, 1)) == (
            [(1, 300_000), (0, 300_000)],
            (0, 60_000),
        )
        opened = core.open_auction(handle, T0)
        assert rows(opened.bids) == [(0, 300_000, True), (1, 300_000, True)]

    @pytest.mark.parametrize(
        "changes",
        [
            {"leader_max_kobo": 199_999},
            {"leader_max_kobo": 10**15},
            {"leader_max_kobo": 300_000, "leader_is_platform": True, "bidders": [1]},
            {
                "leader_max_kobo": 300_000,
                "leader": None,
                "leading_amount_kobo": None,
                "bid_count": 0,
                "platform_bid_count": 0,
                "bidders": [],
            },
            {"prebids": [(1, 300_000)]},  # pre-bids on a live auction
        ],
    )
    def test_inconsistent_restore_of_a_max_is_invalid_argument(
        self, core: Any, ledger_users: Any, changes: dict[str, Any]
    ) -> None:
        with pytest.raises(InvalidArgument):
            core.restore_auction(1, **restore_arguments(**changes))

    @pytest.mark.parametrize(
        "prebids",
        [[(0, START_PRICE - 1)], [(0, 10**15)], [(0, 300_000), (0, 400_000)]],
    )
    def test_inconsistent_restored_pre_bids_are_invalid_argument(
        self, core: Any, ledger_users: Any, prebids: list[tuple[int, int]]
    ) -> None:
        arguments = restore_arguments(
            live=False,
            leader=None,
            leading_amount_kobo=None,
            bidders=[],
            bid_count=0,
            platform_bid_count=0,
            prebids=prebids,
        )
        with pytest.raises(InvalidArgument):
            core.restore_auction(1, **arguments)

    def test_a_restored_pre_bid_of_an_unknown_user_is_unknown_user(
        self, core: Any, ledger_users: Any
    ) -> None:
        arguments = restore_arguments(
            live=False,
            leader=None,
            leading_amount_kobo=None,
            bidders=[],
            bid_count=0,
            platform_bid_count=0,
            prebids=[(5, 300_000)],
        )
        before = state_of(core)
        with pytest.raises(UnknownUser):
            core.restore_auction(1, **arguments)
        assert state_of(core) == before

    # --- maxes and batches --------------------------------------------------------------

    def test_a_batch_answered_by_maxes_decides_like_bids_one_by_one(self) -> None:
        bids = [
            (0, 1, 300, T0, False),  # answered at 350
            (0, 1, 450, T0, False),  # answered at 500
            (0, 1, 1_000, T0, False),  # answered at 1 000: the tie to the max
            (0, 2, 1_000, T0, True),  # a platform bid, below the minimum
            (0, 2, 1_050, END - 1, True),  # a platform bid past the max: leads
            (1, 1, 150, T0, False),  # answered on the second auction
            (0, 0, 1_200, END - 1, False),  # the max's holder bids again
        ]
        one_by_one, batched = self.implementation(), self.implementation()
        for core in (one_by_one, batched):
            for user_id in (ALICE_ID, BOB_ID, PLATFORM_ID):
                add_user(core, user_id)
            for auction_id in (1, 2):
                add_live(core, auction_id, start_price_kobo=100, bid_increment_kobo=50)
                core.set_max(auction_id - 1, 0, 1_000, T0)
        expected = [outcome_fields(one_by_one.place_bid(*bid)) for bid in bids]
        batch = self.batch_class()
        for bid in bids:
            batch.append(*bid)
        outcomes = batched.place_batch(batch)
        assert [outcome_fields(outcomes[i]) for i in range(len(outcomes))] == expected
        assert state_of(batched) == state_of(one_by_one)
        assert [(o.get("answer") or {}).get("amount_kobo") for o in expected] == [
            350,
            500,
            1_000,
            None,
            None,
            200,
            None,
        ]

    def test_outcome_and_opened_fields_cover_answers_and_rows(
        self, core: Any, scheduled: int, alice: int, bob: int
    ) -> None:
        core.set_max(scheduled, alice, 1_000, T0)
        opened = opened_fields(core.open_auction(scheduled, T0))
        answered = outcome_fields(core.place_bid(scheduled, bob, 500, T0))
        assert (opened["seq"], opened["bids"][0]["is_proxy"]) == (1, True)
        assert (answered["is_proxy"], answered["answer"]["amount_kobo"]) == (False, 550)


class TestReferenceModel(RuleExamples):
    implementation = ReferenceCore
    batch_class = ReferenceBidBatch
