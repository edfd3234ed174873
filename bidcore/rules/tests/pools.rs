//! Pools: a bidder's buying power split into allowances, one per pool (a
//! partition of auctions, several nodes), each weighed on its own.

use bidcore_rules::{deposit, AuctionSpec, BidRequest, Core, MaxOutcome, Outcome, Reason, Restore};

mod common;
use common::{END, PRICE, START, STEP};

/// The shared terms in pool `pool`.
fn spec(id: u128, pool: Option<u32>) -> AuctionSpec {
    AuctionSpec {
        pool,
        ..common::spec(id)
    }
}

const DEPOSIT: i64 = 20_000_000; // deposit(PRICE) at 20 %

fn bid(auction: u32, user: u32, amount: i64) -> BidRequest {
    BidRequest {
        auction,
        user,
        amount,
        at: START + 10,
        platform: false,
    }
}

fn reason(outcome: &Outcome) -> Option<Reason> {
    match outcome {
        Outcome::Accepted(_) => None,
        Outcome::Rejected(rejected) => Some(rejected.reason),
    }
}

#[test]
fn a_pooled_auction_weighs_the_pools_allowance_not_the_balance() {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 10 * DEPOSIT, true).unwrap();
    let a = core.add_auction(spec(100, Some(1)), true).unwrap();
    // A rich wallet but no allowance in pool 1: refused.
    let first = core.place_bid(&bid(a, alice, PRICE), &mut Vec::new());
    assert_eq!(reason(&first), Some(Reason::InsufficientBuyingPower));
    core.set_allowance(alice, 1, DEPOSIT).unwrap();
    assert_eq!(
        reason(&core.place_bid(&bid(a, alice, PRICE), &mut Vec::new())),
        None
    );
    assert_eq!(core.allowance(alice, 1).unwrap(), (DEPOSIT, DEPOSIT));
    assert_eq!(core.user(alice).unwrap().exposure, DEPOSIT);
}

#[test]
fn each_pool_backs_only_its_own_auctions() {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 100 * DEPOSIT, true).unwrap();
    let a = core.add_auction(spec(100, Some(1)), true).unwrap();
    let b = core.add_auction(spec(101, Some(1)), true).unwrap();
    let c = core.add_auction(spec(102, Some(2)), true).unwrap();
    core.set_allowance(alice, 1, DEPOSIT + DEPOSIT / 2).unwrap();
    core.set_allowance(alice, 2, DEPOSIT).unwrap();
    assert_eq!(
        reason(&core.place_bid(&bid(a, alice, PRICE), &mut Vec::new())),
        None
    );
    // Pool 1 has half a deposit left: its second auction is refused...
    let refused = core.place_bid(&bid(b, alice, PRICE), &mut Vec::new());
    assert_eq!(reason(&refused), Some(Reason::InsufficientBuyingPower));
    // ...while pool 2's allowance takes its own.
    assert_eq!(
        reason(&core.place_bid(&bid(c, alice, PRICE), &mut Vec::new())),
        None
    );
    assert_eq!(core.allowance(alice, 1).unwrap().1, DEPOSIT);
    assert_eq!(core.allowance(alice, 2).unwrap().1, DEPOSIT);
}

#[test]
fn an_outbid_leader_gets_the_pools_exposure_back() {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 0, true).unwrap();
    let bob = core.upsert_user(2, 0, true).unwrap();
    let a = core.add_auction(spec(100, Some(3)), true).unwrap();
    core.set_allowance(alice, 3, DEPOSIT).unwrap();
    core.set_allowance(bob, 3, 2 * DEPOSIT).unwrap();
    assert_eq!(
        reason(&core.place_bid(&bid(a, alice, PRICE), &mut Vec::new())),
        None
    );
    assert_eq!(
        reason(&core.place_bid(&bid(a, bob, PRICE + STEP), &mut Vec::new())),
        None
    );
    assert_eq!(core.allowance(alice, 3).unwrap(), (DEPOSIT, 0));
    assert_eq!(
        core.allowance(bob, 3).unwrap().1,
        deposit(PRICE + STEP, 2000)
    );
}

#[test]
fn a_maximum_is_weighed_against_its_pool() {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 100 * DEPOSIT, true).unwrap();
    let a = core.add_auction(spec(100, Some(1)), true).unwrap();
    core.set_allowance(alice, 1, DEPOSIT).unwrap();
    let too_high = core.set_max(a, alice, 2 * PRICE, START + 10);
    assert!(
        matches!(too_high, MaxOutcome::Rejected(r) if r.reason == Reason::InsufficientBuyingPower)
    );
    core.set_allowance(alice, 1, 2 * DEPOSIT).unwrap();
    assert!(matches!(
        core.set_max(a, alice, 2 * PRICE, START + 10),
        MaxOutcome::Set(_)
    ));
    assert_eq!(
        core.allowance(alice, 1).unwrap(),
        (2 * DEPOSIT, 2 * DEPOSIT)
    );
    assert_eq!(core.exposed_here(a, alice).unwrap(), 2 * DEPOSIT);
}

#[test]
fn a_restored_lead_lands_in_its_pool_even_without_an_allowance() {
    let mut core = Core::new(2, 0).unwrap();
    let bob = core.upsert_user(2, 0, true).unwrap();
    let restore = Restore {
        live: true,
        ended: false,
        end_time: END,
        original_end: END,
        leader: Some((bob, PRICE, false)),
        leader_max: None,
        prebids: vec![],
        bidders: vec![bob],
        bid_count: 1,
        platform_bid_count: 0,
        seq: 1,
        log_head: None,
    };
    let a = core.restore_auction(spec(100, Some(4)), restore).unwrap();
    assert_eq!(core.allowance(bob, 4).unwrap(), (0, DEPOSIT));
    core.evict_auction(a).unwrap();
    assert_eq!(core.allowance(bob, 4).unwrap(), (0, 0));
    core.close_pool(4);
    assert_eq!(core.allowance(bob, 4).unwrap(), (0, 0));
    assert_eq!(core.user(bob).unwrap().exposure, 0);
}

#[test]
fn closing_a_pool_forgets_its_allowances() {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 0, true).unwrap();
    core.set_allowance(alice, 5, DEPOSIT).unwrap();
    core.set_allowance(alice, 6, DEPOSIT).unwrap();
    core.close_pool(5);
    assert_eq!(core.allowance(alice, 5).unwrap(), (0, 0));
    assert_eq!(core.allowance(alice, 6).unwrap(), (DEPOSIT, 0));
}

#[test]
fn a_batch_decides_a_pooled_bidder_as_one_bid_at_a_time() {
    // Two shards, a pooled bidder in both: the batch must equal the sequence.
    let build = || {
        let mut core = Core::new(2, 0).unwrap();
        let alice = core.upsert_user(1, 100 * DEPOSIT, true).unwrap();
        let a = core.add_auction(spec(100, Some(1)), true).unwrap();
        let b = core.add_auction(spec(101, Some(1)), true).unwrap();
        core.set_allowance(alice, 1, DEPOSIT).unwrap();
        (core, alice, a, b)
    };
    let (mut batched, alice, a, b) = build();
    let bids = [bid(a, alice, PRICE), bid(b, alice, PRICE)];
    let together: Vec<_> = batched
        .place_batch(&bids, &mut Vec::new())
        .iter()
        .map(reason)
        .collect();
    let (mut single, _, _, _) = build();
    let apart: Vec<_> = bids
        .iter()
        .map(|b| reason(&single.place_bid(b, &mut Vec::new())))
        .collect();
    assert_eq!(together, apart);
    assert_eq!(apart, vec![None, Some(Reason::InsufficientBuyingPower)]);
}

#[test]
fn an_allowance_must_be_a_valid_balance() {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 0, true).unwrap();
    assert!(core.set_allowance(alice, 1, -1).is_err());
    assert!(core.set_allowance(99, 1, 0).is_err());
}
