//! One test per rule of RULES.md, through the crate's public API.

use bidcore_rules::{
    deposit, AuctionSpec, BidRequest, Core, CoreError, Outcome, Reason, Restore, Status,
    MAX_AMOUNT, MAX_BALANCE, MAX_TIME_MS,
};

mod common;
use common::{spec, END, PRICE, SELLER, START, STEP};

struct World {
    core: Core,
    auction: u32,
    alice: u32,
    bob: u32,
}

fn world() -> World {
    let mut core = Core::new(4, 0).unwrap();
    let alice = core.upsert_user(1, 1_000_000_000, true).unwrap();
    let bob = core.upsert_user(2, 1_000_000_000, true).unwrap();
    let auction = core.add_auction(spec(100), true).unwrap();
    World {
        core,
        auction,
        alice,
        bob,
    }
}

fn bid(auction: u32, user: u32, amount: i64, at: i64) -> BidRequest {
    BidRequest {
        auction,
        user,
        amount,
        at,
        platform: false,
    }
}

fn reason(outcome: Outcome) -> Option<Reason> {
    match outcome {
        Outcome::Accepted(_) => None,
        Outcome::Rejected(r) => Some(r.reason),
    }
}

fn accepted(outcome: Outcome) -> bidcore_rules::Accepted {
    match outcome {
        Outcome::Accepted(a) => a,
        Outcome::Rejected(r) => panic!("expected acceptance, got {:?}", r.reason),
    }
}

#[test]
fn invalid_amount_is_checked_before_anything_else() {
    let mut w = world();
    for amount in [0, -1, MAX_AMOUNT, i64::MAX, i64::MIN] {
        let outcome = w.core.place_bid(&bid(999, 999, amount, 0), &mut Vec::new());
        assert_eq!(
            reason(outcome),
            Some(Reason::InvalidAmount),
            "amount {amount}"
        );
    }
}

#[test]
fn largest_valid_amount_passes_the_amount_rule() {
    let mut w = world();
    w.core
        .set_balance(w.alice, deposit(MAX_AMOUNT - 1, 2000))
        .unwrap();
    let outcome = w.core.place_bid(
        &bid(w.auction, w.alice, MAX_AMOUNT - 1, START),
        &mut Vec::new(),
    );
    assert!(outcome.is_accepted());
}

#[test]
fn unknown_auction_is_refused() {
    let mut w = world();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(7, w.alice, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::UnknownAuction)
    );
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(u32::MAX, w.alice, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::UnknownAuction)
    );
}

#[test]
fn scheduled_auction_is_not_live() {
    let mut w = world();
    let scheduled = w.core.add_auction(spec(101), false).unwrap();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(scheduled, w.alice, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::AuctionNotLive)
    );
}

#[test]
fn bid_before_start_time_is_not_live() {
    let mut w = world();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.alice, PRICE, START - 1), &mut Vec::new())
        ),
        Some(Reason::AuctionNotLive)
    );
    assert!(w
        .core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new())
        .is_accepted());
}

#[test]
fn bid_at_end_time_is_too_late() {
    let mut w = world();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.alice, PRICE, END), &mut Vec::new())
        ),
        Some(Reason::AuctionEnded)
    );
    assert!(w
        .core
        .place_bid(&bid(w.auction, w.alice, PRICE, END - 1), &mut Vec::new())
        .is_accepted());
}

#[test]
fn seller_cannot_bid_on_own_auction() {
    let mut w = world();
    let seller = w.core.upsert_user(SELLER, 1_000_000_000, true).unwrap();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, seller, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::OwnAuction)
    );
}

#[test]
fn ineligible_or_unknown_user_is_refused() {
    let mut w = world();
    w.core.set_eligible(w.alice, false).unwrap();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::NotEligible)
    );
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, 77, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::NotEligible)
    );
}

#[test]
fn leader_cannot_outbid_itself() {
    let mut w = world();
    assert!(w
        .core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new())
        .is_accepted());
    let again = w
        .core
        .place_bid(&bid(w.auction, w.alice, PRICE * 2, START), &mut Vec::new());
    assert_eq!(reason(again), Some(Reason::AlreadyLeading));
}

#[test]
fn first_bid_must_reach_the_start_price() {
    let mut w = world();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.alice, PRICE - 1, START), &mut Vec::new())
        ),
        Some(Reason::BelowMinimum)
    );
}

#[test]
fn exactly_one_increment_is_enough() {
    let mut w = world();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    let short = w.core.place_bid(
        &bid(w.auction, w.bob, PRICE + STEP - 1, START),
        &mut Vec::new(),
    );
    assert_eq!(reason(short), Some(Reason::BelowMinimum));
    assert!(w
        .core
        .place_bid(&bid(w.auction, w.bob, PRICE + STEP, START), &mut Vec::new())
        .is_accepted());
}

#[test]
fn equal_amount_later_loses_to_the_earlier_bid() {
    let mut w = world();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.bob, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::BelowMinimum)
    );
    assert_eq!(
        w.core.auction(w.auction).unwrap().lead.unwrap().user,
        w.alice
    );
}

#[test]
fn buying_power_counts_exposure_elsewhere() {
    let mut w = world();
    let other = w.core.add_auction(spec(102), true).unwrap();
    let needed = deposit(PRICE, 2000);
    w.core.set_balance(w.alice, needed * 2 - 1).unwrap();
    assert!(w
        .core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new())
        .is_accepted());
    assert_eq!(w.core.user(w.alice).unwrap().exposure, needed);
    let refused = w
        .core
        .place_bid(&bid(other, w.alice, PRICE, START), &mut Vec::new());
    assert_eq!(reason(refused), Some(Reason::InsufficientBuyingPower));
}

#[test]
fn outbid_bidder_is_released_at_once() {
    let mut w = world();
    let other = w.core.add_auction(spec(102), true).unwrap();
    w.core
        .set_balance(w.alice, deposit(PRICE + STEP, 2000))
        .unwrap();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    let outbid = accepted(
        w.core
            .place_bid(&bid(w.auction, w.bob, PRICE + STEP, START), &mut Vec::new()),
    );
    assert_eq!(outbid.previous.map(|l| l.user), Some(w.alice));
    assert_eq!(w.core.user(w.alice).unwrap().exposure, 0);
    assert!(w
        .core
        .place_bid(&bid(other, w.alice, PRICE + STEP, START), &mut Vec::new())
        .is_accepted());
}

#[test]
fn bid_inside_the_window_extends_the_end() {
    let mut w = world();
    let at = END - 119_999;
    let a = accepted(
        w.core
            .place_bid(&bid(w.auction, w.alice, PRICE, at), &mut Vec::new()),
    );
    assert!(a.extended);
    assert_eq!(a.end_time, END + 120_000);
    let state = w.core.auction(w.auction).unwrap();
    assert_eq!(state.original_end, END);
}

#[test]
fn bid_exactly_a_window_before_the_end_does_not_extend() {
    let mut w = world();
    let a = accepted(w.core.place_bid(
        &bid(w.auction, w.alice, PRICE, END - 120_000),
        &mut Vec::new(),
    ));
    assert!(!a.extended);
    assert_eq!(a.end_time, END);
}

#[test]
fn extension_never_passes_the_largest_time() {
    let mut core = Core::new(1, 0).unwrap();
    let user = core.upsert_user(1, 1_000_000_000, true).unwrap();
    let mut s = spec(5);
    s.end_time = MAX_TIME_MS;
    let auction = core.add_auction(s, true).unwrap();
    let a = accepted(core.place_bid(&bid(auction, user, PRICE, MAX_TIME_MS - 1), &mut Vec::new()));
    assert_eq!(a.end_time, MAX_TIME_MS);
}

#[test]
fn platform_bid_skips_buying_power_and_adds_no_exposure() {
    let mut w = world();
    let p = w.core.upsert_user(9, 0, true).unwrap();
    let bid = BidRequest {
        auction: w.auction,
        user: p,
        amount: PRICE,
        at: START,
        platform: true,
    };
    let a = accepted(w.core.place_bid(&bid, &mut Vec::new()));
    assert_eq!(a.deposit, 0);
    assert_eq!(a.bidder_number, 0);
    assert_eq!(w.core.user(p).unwrap().exposure, 0);
    let state = w.core.auction(w.auction).unwrap();
    assert_eq!((state.platform_bid_count, state.bidders.len()), (1, 0));
}

#[test]
fn platform_does_not_bid_against_itself() {
    let mut w = world();
    let p = w.core.upsert_user(9, 0, true).unwrap();
    let platform_bid = |amount| BidRequest {
        auction: w.auction,
        user: p,
        amount,
        at: START,
        platform: true,
    };
    assert!(w
        .core
        .place_bid(&platform_bid(PRICE), &mut Vec::new())
        .is_accepted());
    assert_eq!(
        reason(
            w.core
                .place_bid(&platform_bid(PRICE + STEP), &mut Vec::new())
        ),
        Some(Reason::AlreadyLeading)
    );
}

#[test]
fn rejected_bid_changes_nothing() {
    let mut w = world();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    let before = (
        w.core.auction(w.auction).unwrap(),
        w.core.user(w.alice).unwrap(),
        w.core.user(w.bob).unwrap(),
    );
    w.core
        .place_bid(&bid(w.auction, w.bob, PRICE, END - 1), &mut Vec::new());
    let after = (
        w.core.auction(w.auction).unwrap(),
        w.core.user(w.alice).unwrap(),
        w.core.user(w.bob).unwrap(),
    );
    assert_eq!(before, after);
}

#[test]
fn bidder_numbers_are_stable_and_counted_once() {
    let mut w = world();
    let a1 = accepted(
        w.core
            .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new()),
    );
    let b1 = accepted(
        w.core
            .place_bid(&bid(w.auction, w.bob, PRICE + STEP, START), &mut Vec::new()),
    );
    let a2 = accepted(w.core.place_bid(
        &bid(w.auction, w.alice, PRICE + 2 * STEP, START),
        &mut Vec::new(),
    ));
    assert_eq!(
        (a1.bidder_number, b1.bidder_number, a2.bidder_number),
        (1, 2, 1)
    );
    assert_eq!((a2.bid_count, a2.bidder_count, a2.seq), (3, 2, 3));
}

#[test]
fn close_keeps_the_leader_exposed_until_removal_and_reports_the_leader() {
    let mut w = world();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    let closed = w.core.close_auction(w.auction).unwrap();
    assert_eq!(
        closed.lead.map(|l| (l.user, l.amount)),
        Some((w.alice, PRICE))
    );
    assert_eq!(
        w.core.user(w.alice).unwrap().exposure,
        deposit(PRICE, 2000),
        "end processing has not taken the deposit yet"
    );
    assert_eq!(w.core.auction(w.auction).unwrap().status, Status::Ended);
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.bob, PRICE * 2, START), &mut Vec::new())
        ),
        Some(Reason::AuctionEnded),
        "closed before its end time, and still ended"
    );
    w.core.remove_auction(w.auction).unwrap();
    assert_eq!(w.core.user(w.alice).unwrap().exposure, 0);
}

#[test]
fn removing_a_cancelled_auction_releases_nothing_twice() {
    let mut w = world();
    let other = w.core.add_auction(spec(200), true).unwrap();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    w.core
        .place_bid(&bid(other, w.alice, PRICE, START), &mut Vec::new());
    w.core.cancel_auction(w.auction).unwrap();
    w.core.remove_auction(w.auction).unwrap();
    assert_eq!(w.core.user(w.alice).unwrap().exposure, deposit(PRICE, 2000));
}

#[test]
fn cancel_releases_exposure_and_cannot_repeat() {
    let mut w = world();
    w.core
        .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new());
    w.core.cancel_auction(w.auction).unwrap();
    assert_eq!(w.core.user(w.alice).unwrap().exposure, 0);
    assert!(matches!(
        w.core.cancel_auction(w.auction),
        Err(CoreError::InvalidTransition { .. })
    ));
}

#[test]
fn extend_moves_the_end_later_only() {
    let mut w = world();
    assert!(matches!(
        w.core.extend_auction(w.auction, END),
        Err(CoreError::InvalidArgument(_))
    ));
    w.core.extend_auction(w.auction, END + 5).unwrap();
    assert_eq!(w.core.auction(w.auction).unwrap().end_time, END + 5);
}

#[test]
fn removed_auction_is_unknown_and_its_id_reusable() {
    let mut w = world();
    assert!(w.core.remove_auction(w.auction).is_err());
    w.core.close_auction(w.auction).unwrap();
    w.core.remove_auction(w.auction).unwrap();
    assert_eq!(
        reason(
            w.core
                .place_bid(&bid(w.auction, w.alice, PRICE, START), &mut Vec::new())
        ),
        Some(Reason::UnknownAuction)
    );
    let again = w.core.add_auction(spec(100), true).unwrap();
    assert_ne!(again, w.auction);
}

#[test]
fn restore_rebuilds_the_leaders_exposure() {
    let mut w = world();
    let restore = Restore {
        live: true,
        ended: false,
        end_time: END + 120_000,
        original_end: END,
        leader: Some((w.bob, PRICE + STEP, false)),
        leader_max: None,
        prebids: vec![],
        bidders: vec![w.alice, w.bob],
        bid_count: 2,
        platform_bid_count: 0,
        seq: 2,
        log_head: None,
    };
    let h = w.core.restore_auction(spec(300), restore).unwrap();
    assert_eq!(
        w.core.user(w.bob).unwrap().exposure,
        deposit(PRICE + STEP, 2000)
    );
    let state = w.core.auction(h).unwrap();
    assert_eq!(
        (state.seq, state.min_next_bid, state.end_time),
        (2, PRICE + 2 * STEP, END + 120_000)
    );
}

#[test]
fn restore_of_an_ended_auction_keeps_its_leader_exposed() {
    let mut w = world();
    let ended = |live| Restore {
        live,
        ended: true,
        end_time: END,
        original_end: END,
        leader: Some((w.bob, PRICE, false)),
        leader_max: None,
        prebids: vec![],
        bidders: vec![w.bob],
        bid_count: 1,
        platform_bid_count: 0,
        seq: 2,
        log_head: None,
    };
    assert!(w.core.restore_auction(spec(302), ended(false)).is_err());
    let h = w.core.restore_auction(spec(303), ended(true)).unwrap();
    assert_eq!(w.core.auction(h).unwrap().status, Status::Ended);
    assert_eq!(w.core.user(w.bob).unwrap().exposure, deposit(PRICE, 2000));
    w.core.remove_auction(h).unwrap();
    assert_eq!(w.core.user(w.bob).unwrap().exposure, 0);
}

#[test]
fn restore_refuses_a_leader_outside_the_bidders() {
    let mut w = world();
    let restore = Restore {
        live: true,
        ended: false,
        end_time: END,
        original_end: END,
        leader: Some((w.bob, PRICE, false)),
        leader_max: None,
        prebids: vec![],
        bidders: vec![w.alice],
        bid_count: 1,
        platform_bid_count: 0,
        seq: 1,
        log_head: None,
    };
    assert!(w.core.restore_auction(spec(301), restore).is_err());
    assert_eq!(w.core.user(w.bob).unwrap().exposure, 0);
}

#[test]
fn reserve_protection_bids_the_minimum_below_ninety_percent_in_the_last_hour() {
    let mut core = Core::new(2, 0).unwrap();
    let mut s = spec(1);
    s.reserve = Some(PRICE * 2);
    let a = core.add_auction(s, true).unwrap();
    assert!(
        core.reserve_protection(END - 3_600_000).is_empty(),
        "an hour out is too early"
    );
    assert_eq!(core.reserve_protection(END - 3_599_999), vec![(a, PRICE)]);
}

#[test]
fn reserve_protection_never_passes_ninety_five_percent_of_reserve() {
    let mut core = Core::new(1, 0).unwrap();
    let user = core.upsert_user(1, MAX_BALANCE - 1, true).unwrap();
    let mut s = spec(1);
    s.reserve = Some(2_000_000);
    s.start_price = 1_000_000;
    s.increment = 900_000;
    let a = core.add_auction(s, true).unwrap();
    core.place_bid(&bid(a, user, 1_000_000, END - 100), &mut Vec::new());
    // next minimum 1.9M = exactly 95 % of 2M: allowed; one kobo more is not.
    assert_eq!(core.reserve_protection(END - 50), vec![(a, 1_900_000)]);
    let mut s2 = spec(2);
    s2.reserve = Some(1_999_999);
    s2.start_price = 1_000_000;
    s2.increment = 900_000;
    let b = core.add_auction(s2, true).unwrap();
    core.place_bid(&bid(b, user, 1_000_000, END - 100), &mut Vec::new());
    assert!(!core
        .reserve_protection(END - 50)
        .iter()
        .any(|&(h, _)| h == b));
}

#[test]
fn reserve_protection_stops_at_ninety_percent() {
    let mut core = Core::new(1, 0).unwrap();
    let user = core.upsert_user(1, MAX_BALANCE - 1, true).unwrap();
    let mut s = spec(1);
    s.reserve = Some(1_000_000_000);
    let a = core.add_auction(s, true).unwrap();
    core.place_bid(&bid(a, user, 900_000_000, END - 100), &mut Vec::new());
    assert!(core.reserve_protection(END - 50).is_empty());
}

#[test]
fn invalid_specs_are_refused() {
    let mut core = Core::new(1, 0).unwrap();
    type Mutation = Box<dyn Fn(&mut AuctionSpec)>;
    let cases: Vec<Mutation> = vec![
        Box::new(|s| s.end_time = s.start_time),
        Box::new(|s| s.start_time = -1),
        Box::new(|s| s.end_time = MAX_TIME_MS + 1),
        Box::new(|s| s.start_price = 0),
        Box::new(|s| s.increment = 0),
        Box::new(|s| s.increment = MAX_AMOUNT),
        Box::new(|s| s.reserve = Some(0)),
        Box::new(|s| s.deposit_bp = 10_001),
        Box::new(|s| s.snipe_window = -1),
        Box::new(|s| s.sellers = vec![1; 9]),
    ];
    for (i, mutate) in cases.iter().enumerate() {
        let mut s = spec(i as u128);
        mutate(&mut s);
        assert!(
            matches!(
                core.add_auction(s, true),
                Err(CoreError::InvalidArgument(_))
            ),
            "case {i}"
        );
    }
    assert_eq!(core.auction_count(), 0);
}

#[test]
fn duplicate_auction_id_is_refused() {
    let mut w = world();
    assert_eq!(
        w.core.add_auction(spec(100), true),
        Err(CoreError::DuplicateAuction(100))
    );
}

#[test]
fn parallel_batch_equals_sequential_placement() {
    // Users with little money bid across every shard, so groups must merge;
    // rich users bid everywhere too and must not block parallelism.
    let build = |shards| {
        let mut core = Core::new(shards, 0).unwrap();
        for u in 0..40u128 {
            let balance = if u % 3 == 0 {
                30_000_000
            } else {
                10_000_000_000
            };
            core.upsert_user(u + 10, balance, u % 7 != 0).unwrap();
        }
        for a in 0..32u128 {
            core.add_auction(spec(1000 + a), true).unwrap();
        }
        core
    };
    let mut bids = Vec::new();
    let mut x: u64 = 42;
    for i in 0..20_000i64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let auction = (x >> 33) as u32 % 33; // 32 = unknown
        let user = (x >> 13) as u32 % 41; // 40 = unknown
        let amount = PRICE + ((x >> 40) as i64 % 400) * STEP / 4;
        bids.push(BidRequest {
            auction,
            user,
            amount,
            at: START + i * 400,
            platform: i % 97 == 0,
        });
    }
    let mut sequential = build(1);
    let expected: Vec<Outcome> = bids
        .iter()
        .map(|b| sequential.place_bid(b, &mut Vec::new()))
        .collect();
    for shards in [2, 8, 64] {
        let mut core = build(shards);
        let got = core.place_batch(&bids, &mut Vec::new());
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.code_byte(), e.code_byte());
        }
        for u in 0..41 {
            assert_eq!(core.user(u).ok(), sequential.user(u).ok());
        }
    }
}

#[test]
fn due_lists_auctions_to_open_and_to_close() {
    let mut core = Core::new(3, 0).unwrap();
    let scheduled = core.add_auction(spec(1), false).unwrap();
    let live = core.add_auction(spec(2), true).unwrap();
    assert_eq!(core.due(START - 1), (vec![], vec![]));
    assert_eq!(core.due(START), (vec![scheduled], vec![]));
    assert_eq!(core.due(END), (vec![scheduled], vec![live]));
    core.close_auction(live).unwrap();
    assert_eq!(core.due(END), (vec![scheduled], vec![]));
}
