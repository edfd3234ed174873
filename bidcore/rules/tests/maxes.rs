//! Maximum (proxy) bids, RULES.md's examples and their edges, through the
//! crate's public API (increment 50 as in RULES.md's examples).

use bidcore_rules::{
    deposit, Accepted, AuctionSpec, BidRequest, Core, MaxOutcome, MaxSet, Outcome, Reason,
};

mod common;
use common::{END, START};

const STEP: i64 = 50;

/// The shared terms at a start price of 100 kobo and a STEP of 50.
fn spec(id: u128) -> AuctionSpec {
    AuctionSpec {
        start_price: 100,
        increment: STEP,
        ..common::spec(id)
    }
}
const RICH: i64 = 1_000_000_000;

struct World {
    core: Core,
    auction: u32,
    a: u32,
    b: u32,
}

fn world(live: bool) -> World {
    let mut core = Core::new(2, 0).unwrap();
    let a = core.upsert_user(1, RICH, true).unwrap();
    let b = core.upsert_user(2, RICH, true).unwrap();
    let auction = core.add_auction(spec(100), live).unwrap();
    World {
        core,
        auction,
        a,
        b,
    }
}

impl World {
    fn max(&mut self, user: u32, max: i64) -> MaxSet {
        match self.core.set_max(self.auction, user, max, START) {
            MaxOutcome::Set(set) => set,
            MaxOutcome::Rejected(r) => panic!("max refused: {:?}", r.reason),
        }
    }

    fn refused_max(&mut self, user: u32, max: i64) -> Reason {
        match self.core.set_max(self.auction, user, max, START) {
            MaxOutcome::Set(set) => panic!("max accepted: {set:?}"),
            MaxOutcome::Rejected(r) => r.reason,
        }
    }

    fn bid(&mut self, user: u32, amount: i64) -> Accepted {
        match self.core.place_bid(
            &BidRequest {
                auction: self.auction,
                user,
                amount,
                at: START,
                platform: false,
            },
            &mut Vec::new(),
        ) {
            Outcome::Accepted(a) => a,
            Outcome::Rejected(r) => panic!("bid refused: {:?}", r.reason),
        }
    }

    /// (leader, price, leader's max)
    fn standing(&self) -> (u32, i64, Option<i64>) {
        let lead = self.core.auction(self.auction).unwrap().lead.unwrap();
        (lead.user, lead.amount, lead.max)
    }

    fn exposure(&self, user: u32) -> i64 {
        self.core.user(user).unwrap().exposure
    }
}

fn rows(bids: &[Accepted]) -> Vec<(u32, i64, bool)> {
    bids.iter()
        .map(|b| (b.bid.user, b.bid.amount, b.is_proxy))
        .collect()
}

#[test]
fn the_four_examples_of_the_rules() {
    let mut w = world(true);
    let (a, b) = (w.a, w.b);
    // A max 1,000 on an auction without bids: A leads at the start price.
    let set = w.max(a, 1_000);
    assert_eq!(rows(&set.bids), [(a, 100, true)]);
    assert_eq!((set.leading, set.price), (true, 100));
    // B bids 500 → A leads at 550.
    let trigger = w.bid(b, 500);
    let answer = trigger.answer.as_deref().expect("A's proxy answers");
    assert_eq!(
        (answer.bid.user, answer.bid.amount, answer.is_proxy),
        (a, 550, true)
    );
    assert_eq!(answer.seq, trigger.seq + 1);
    assert_eq!(w.standing(), (a, 550, Some(1_000)));
    // B max 800 → A leads at 850.
    let set = w.max(b, 800);
    assert_eq!(rows(&set.bids), [(b, 800, true), (a, 850, true)]);
    assert_eq!((set.leading, set.price), (false, 850));
    // B max 1,000 → A, set earlier, leads at 1,000.
    let set = w.max(b, 1_000);
    assert_eq!(rows(&set.bids), [(b, 1_000, true), (a, 1_000, true)]);
    assert_eq!(w.standing(), (a, 1_000, Some(1_000)));
    // B bids 1,100 → B leads at 1,100, A's max is exhausted.
    let trigger = w.bid(b, 1_100);
    assert!(trigger.answer.is_none());
    assert_eq!(w.standing(), (b, 1_100, None));
    assert_eq!(w.exposure(a), 0);
    assert_eq!(w.exposure(b), deposit(1_100, 2000));
}

#[test]
fn a_higher_maximum_passes_the_leaders_after_meeting_it_in_full() {
    let mut w = world(true);
    let (a, b) = (w.a, w.b);
    w.max(a, 800); // A at 100
    let set = w.max(b, 2_000);
    assert_eq!(rows(&set.bids), [(a, 800, true), (b, 850, true)]);
    assert_eq!(w.standing(), (b, 850, Some(2_000)));
    assert_eq!((w.exposure(a), w.exposure(b)), (0, deposit(2_000, 2000)));
}

#[test]
fn a_maximum_against_a_plain_bid_leads_one_increment_up() {
    let mut w = world(true);
    let (a, b) = (w.a, w.b);
    w.bid(a, 300);
    let set = w.max(b, 2_000);
    assert_eq!(rows(&set.bids), [(b, 350, true)]);
    assert_eq!((w.exposure(a), w.exposure(b)), (0, deposit(2_000, 2000)));
}

#[test]
fn a_bid_one_increment_under_the_maximum_is_answered_at_the_maximum() {
    let mut w = world(true);
    w.max(w.a, 1_000);
    let answer = w.bid(w.b, 950).answer.expect("answered");
    assert_eq!(answer.bid.amount, 1_000);
}

#[test]
fn a_bid_equal_to_the_maximum_is_answered_at_the_same_amount() {
    let mut w = world(true);
    w.max(w.a, 1_000);
    let trigger = w.bid(w.b, 1_000);
    assert_eq!(trigger.answer.expect("answered").bid.amount, 1_000);
    assert_eq!(w.standing(), (w.a, 1_000, Some(1_000)));
    assert_eq!(w.exposure(w.b), 0);
}

#[test]
fn equal_maximums_go_to_the_one_set_earlier() {
    let mut w = world(true);
    w.max(w.a, 1_000);
    let set = w.max(w.b, 1_000);
    assert!(!set.leading);
    assert_eq!(w.standing(), (w.a, 1_000, Some(1_000)));
}

#[test]
fn a_maximum_below_the_minimum_or_not_above_ones_own_is_below_minimum() {
    let mut w = world(true);
    w.bid(w.a, 500);
    assert_eq!(w.refused_max(w.b, 549), Reason::BelowMinimum);
    w.max(w.b, 900); // B leads at 550 with max 900
    assert_eq!(
        w.refused_max(w.b, 900),
        Reason::BelowMinimum,
        "the same is no raise"
    );
    assert_eq!(
        w.refused_max(w.b, 700),
        Reason::BelowMinimum,
        "never lowered"
    );
    let before = w.core.auction(w.auction).unwrap();
    let raised = w.max(w.b, 1_500);
    assert!(raised.bids.is_empty() && raised.leading);
    let after = w.core.auction(w.auction).unwrap();
    assert_eq!((after.seq, after.lead.unwrap().amount), (before.seq, 550));
    assert_eq!(w.exposure(w.b), deposit(1_500, 2000));
}

#[test]
fn a_maximum_beyond_buying_power_is_refused_and_changes_nothing() {
    let mut w = world(true);
    w.core.set_balance(w.a, deposit(500, 2000)).unwrap();
    let before = w.core.auction(w.auction).unwrap();
    assert_eq!(w.refused_max(w.a, 1_000), Reason::InsufficientBuyingPower);
    assert_eq!(w.core.auction(w.auction).unwrap(), before);
    assert_eq!(w.exposure(w.a), 0);
    w.max(w.a, 500);
}

#[test]
fn the_leaders_buying_power_for_a_raise_does_not_count_this_auction_twice() {
    let mut w = world(true);
    w.core.set_balance(w.a, deposit(1_000, 2000)).unwrap();
    w.max(w.a, 800);
    w.max(w.a, 1_000); // deposit(1000) fits: the 800's deposit is replaced, not added
    assert_eq!(w.exposure(w.a), deposit(1_000, 2000));
}

#[test]
fn invalid_amounts_and_ended_auctions_refuse_maximums() {
    let mut w = world(true);
    for bad in [0, -1, 1_000_000_000_000_000] {
        assert_eq!(w.refused_max(w.a, bad), Reason::InvalidAmount);
    }
    assert!(matches!(
        w.core.set_max(w.auction, w.a, 1_000, END),
        MaxOutcome::Rejected(r) if r.reason == Reason::AuctionEnded
    ));
    assert!(matches!(
        w.core.set_max(77, w.a, 1_000, START),
        MaxOutcome::Rejected(r) if r.reason == Reason::UnknownAuction
    ));
    w.core.close_auction(w.auction).unwrap();
    assert_eq!(w.refused_max(w.a, 1_000), Reason::AuctionEnded);
}

#[test]
fn pre_bids_resolve_when_the_auction_opens() {
    let mut w = world(false);
    let (a, b) = (w.a, w.b);
    let set = w.max(a, 1_000);
    assert!(set.bids.is_empty() && set.leading && set.price == 100);
    let set = w.max(b, 800);
    assert_eq!((set.leading, set.price), (false, 850));
    assert_eq!((w.exposure(a), w.exposure(b)), (deposit(1_000, 2000), 0));
    let opened = w.core.open_auction(w.auction, START).unwrap();
    assert_eq!(opened.seq, 1);
    assert_eq!(rows(&opened.bids), [(b, 800, true), (a, 850, true)]);
    assert_eq!(w.standing(), (a, 850, Some(1_000)));
    assert!(w.core.auction(w.auction).unwrap().prebids.is_empty());
    assert_eq!((w.exposure(a), w.exposure(b)), (deposit(1_000, 2000), 0));
}

#[test]
fn one_pre_bid_alone_leads_at_the_start_price() {
    let mut w = world(false);
    w.max(w.a, 1_000);
    let opened = w.core.open_auction(w.auction, START).unwrap();
    assert_eq!(rows(&opened.bids), [(w.a, 100, true)]);
}

#[test]
fn a_raised_pre_bid_is_set_when_raised() {
    let mut w = world(false);
    let (a, b) = (w.a, w.b);
    w.max(a, 800);
    w.max(b, 1_000);
    let set = w.max(a, 1_000); // B reached 1,000 first
    assert!(!set.leading);
    let opened = w.core.open_auction(w.auction, START).unwrap();
    assert_eq!(rows(&opened.bids), [(a, 1_000, true), (b, 1_000, true)]);
    assert_eq!(w.exposure(a), 0);
}

#[test]
fn cancelling_a_scheduled_auction_releases_its_pre_bid() {
    let mut w = world(false);
    w.max(w.a, 1_000);
    w.core.cancel_auction(w.auction).unwrap();
    assert_eq!(w.exposure(w.a), 0);
}

#[test]
fn a_reserve_protection_bid_meets_a_maximum_like_any_bid() {
    let mut w = world(true);
    let platform = w.core.upsert_user(9, 0, true).unwrap();
    w.max(w.a, 1_000);
    let outcome = w.core.place_bid(
        &BidRequest {
            auction: w.auction,
            user: platform,
            amount: 150,
            at: START,
            platform: true,
        },
        &mut Vec::new(),
    );
    let Outcome::Accepted(trigger) = outcome else {
        panic!("the platform bid is a bid")
    };
    assert_eq!(trigger.answer.expect("answered").bid.amount, 200);
    assert_eq!(w.standing(), (w.a, 200, Some(1_000)));
}

#[test]
fn every_proxy_answer_in_the_window_extends_the_end() {
    let mut w = world(true);
    w.max(w.a, 1_000);
    let late = END - 1_000;
    let Outcome::Accepted(trigger) = w.core.place_bid(
        &BidRequest {
            auction: w.auction,
            user: w.b,
            amount: 500,
            at: late,
            platform: false,
        },
        &mut Vec::new(),
    ) else {
        panic!("accepted")
    };
    assert!(trigger.extended);
    let answer = trigger.answer.expect("answered");
    // The trigger moved the end 2 minutes on, which takes the answer out of the window.
    assert_eq!((answer.extended, answer.end_time), (false, END + 120_000));
}

#[test]
fn a_batch_with_maximums_equals_placing_its_bids_one_by_one() {
    let mut one = world(true);
    let mut all = world(true);
    for w in [&mut one, &mut all] {
        w.max(w.a, 1_000);
    }
    let bids: Vec<BidRequest> = [300, 450, 1_000, 1_200, 1_250]
        .iter()
        .enumerate()
        .map(|(i, &amount)| BidRequest {
            auction: one.auction,
            user: if i % 2 == 0 { one.b } else { one.a },
            amount,
            at: START + i as i64,
            platform: false,
        })
        .collect();
    let sequential: Vec<Outcome> = bids
        .iter()
        .map(|b| one.core.place_bid(b, &mut Vec::new()))
        .collect();
    assert_eq!(all.core.place_batch(&bids, &mut Vec::new()), sequential);
    assert_eq!(
        one.core.auction(one.auction).unwrap(),
        all.core.auction(all.auction).unwrap()
    );
}

#[test]
fn closing_a_scheduled_auction_releases_its_pre_bids() {
    let mut w = world(false);
    w.max(w.a, 1_000);
    w.core.close_auction(w.auction).unwrap();
    assert_eq!(
        w.exposure(w.a),
        0,
        "a closed auction never opens: no pre-bid resolves"
    );
    assert!(w.core.auction(w.auction).unwrap().prebids.is_empty());
    w.core.remove_auction(w.auction).unwrap();
    assert_eq!(w.exposure(w.a), 0);
}

#[test]
fn a_maximum_from_the_holder_of_a_platform_lead_is_a_real_bid_over_it() {
    let mut w = world(true);
    let platform = w.core.upsert_user(9, RICH, true).unwrap();
    let outcome = w.core.place_bid(
        &BidRequest {
            auction: w.auction,
            user: platform,
            amount: 100,
            at: START,
            platform: true,
        },
        &mut Vec::new(),
    );
    assert!(outcome.is_accepted());
    let set = w.max(platform, 1_000);
    assert_eq!(rows(&set.bids), [(platform, 150, true)]);
    let lead = w.core.auction(w.auction).unwrap().lead.unwrap();
    assert_eq!((lead.platform, lead.max), (false, Some(1_000)));
    assert_eq!(w.exposure(platform), deposit(1_000, 2000));
}
