//! The bid log's chain as the core builds it: every accepted row hashed once,
//! where it is decided, chained on the row before it.

use bidcore_rules::bidlog::{bid_hash, genesis, header_state, LogEntry, LogHash};
use bidcore_rules::{Accepted, BidRequest, Core, MaxOutcome, Outcome, Restore, MAX_AMOUNT};

mod common;
use common::{spec, END, PRICE, START, STEP};

const AUCTION: u128 = 0x1234_5678_9abc_def0_1122_3344_5566_7788;

struct World {
    core: Core,
    auction: u32,
    alice: u32,
    bob: u32,
}

fn world() -> World {
    let mut core = Core::new(2, 0).unwrap();
    let alice = core.upsert_user(1, 1 << 40, true).unwrap();
    let bob = core.upsert_user(2, 1 << 40, true).unwrap();
    let auction = core.add_auction(spec(AUCTION), true).unwrap();
    World {
        core,
        auction,
        alice,
        bob,
    }
}

fn bid(auction: u32, user: u32, amount: i64, at: i64, platform: bool) -> BidRequest {
    BidRequest {
        auction,
        user,
        amount,
        at,
        platform,
    }
}

fn accepted(outcome: Outcome) -> Accepted {
    match outcome {
        Outcome::Accepted(a) => a,
        Outcome::Rejected(r) => panic!("expected acceptance, got {:?}", r.reason),
    }
}

/// An accepted bid and its rows' hashes (the bid's, then its answer's, if any).
fn place(core: &mut Core, request: &BidRequest) -> (Accepted, Vec<LogHash>) {
    let mut log = Vec::new();
    let row = accepted(core.place_bid(request, &mut log));
    assert_eq!(log.len(), 1 + usize::from(row.answer.is_some()));
    (row, log)
}

/// The hash a row must have, recomputed from its fields alone.
fn expected(row: &Accepted, previous: &LogHash) -> LogHash {
    let entry = LogEntry {
        seq: row.seq,
        number: row.bidder_number,
        amount: row.bid.amount,
        at: row.bid.at,
        platform: row.bid.platform,
        proxy: row.is_proxy,
    };
    bid_hash(&header_state(AUCTION), &entry, previous)
}

#[test]
fn the_first_bid_chains_on_the_auctions_genesis() {
    let mut w = world();
    assert_eq!(
        w.core.auction(w.auction).unwrap().log_head,
        genesis(AUCTION)
    );
    let (first, log) = place(&mut w.core, &bid(w.auction, w.alice, PRICE, START, false));
    assert_eq!(log[0], expected(&first, &genesis(AUCTION)));
    assert_eq!(w.core.auction(w.auction).unwrap().log_head, log[0]);
}

#[test]
fn each_bid_chains_on_the_one_before_with_its_bidders_number() {
    let mut w = world();
    let mut head = genesis(AUCTION);
    for (i, (user, number)) in [(w.alice, 1), (w.bob, 2), (w.alice, 1)]
        .into_iter()
        .enumerate()
    {
        let amount = PRICE + i as i64 * STEP;
        let (row, log) = place(&mut w.core, &bid(w.auction, user, amount, START + 1, false));
        assert_eq!(row.bidder_number, number);
        assert_eq!(log[0], expected(&row, &head), "bid {i}");
        head = log[0];
    }
}

#[test]
fn a_rejected_bid_leaves_the_head_alone() {
    let mut w = world();
    let (_, first) = place(&mut w.core, &bid(w.auction, w.alice, PRICE, START, false));
    for refused in [
        bid(w.auction, w.bob, PRICE, START, false), // below the minimum
        bid(w.auction, w.alice, 2 * PRICE, START, false), // already leading
        bid(w.auction, w.bob, MAX_AMOUNT, START, false), // invalid amount
    ] {
        let mut log = Vec::new();
        assert!(!w.core.place_bid(&refused, &mut log).is_accepted());
        assert!(log.is_empty(), "a refused bid logs no row");
    }
    assert_eq!(w.core.auction(w.auction).unwrap().log_head, first[0]);
}

#[test]
fn a_platform_bid_is_hashed_with_number_zero() {
    let mut w = world();
    let (row, log) = place(&mut w.core, &bid(w.auction, w.bob, PRICE, START, true));
    assert_eq!((row.bidder_number, row.bid.platform), (0, true));
    assert_eq!(log[0], expected(&row, &genesis(AUCTION)));
}

#[test]
fn a_proxy_answer_has_its_own_hash_chained_after_its_trigger() {
    let mut w = world();
    let MaxOutcome::Set(set) = w.core.set_max(w.auction, w.alice, PRICE + 4 * STEP, START) else {
        panic!("max refused");
    };
    assert_eq!(set.hashes.len(), set.bids.len());
    let opening = set.hashes[0];
    assert_eq!(opening, expected(&set.bids[0], &genesis(AUCTION)));
    let (trigger, log) = place(
        &mut w.core,
        &bid(w.auction, w.bob, PRICE + STEP, START, false),
    );
    let answer = trigger.answer.as_deref().expect("the max answers");
    assert!(answer.is_proxy);
    assert_eq!(log[0], expected(&trigger, &opening));
    assert_eq!(log[1], expected(answer, &log[0]));
    assert_eq!(w.core.auction(w.auction).unwrap().log_head, log[1]);
}

#[test]
fn a_batch_gives_the_hashes_of_one_bid_at_a_time() {
    let bids = |w: &World| {
        (0..6)
            .map(|i| {
                let user = if i % 2 == 0 { w.alice } else { w.bob };
                bid(w.auction, user, PRICE + i * STEP, START + i, false)
            })
            .collect::<Vec<_>>()
    };
    let mut one = world();
    let singly: Vec<LogHash> = bids(&one)
        .iter()
        .flat_map(|b| place(&mut one.core, b).1)
        .collect();
    let mut batched = world();
    let all = bids(&batched);
    let mut together = Vec::new();
    let outcomes = batched.core.place_batch(&all, &mut together);
    assert!(outcomes.iter().all(Outcome::is_accepted));
    assert_eq!(singly, together);
}

#[test]
fn a_restored_auction_chains_on_the_head_it_was_given() {
    let mut w = world();
    let head = [4u8; 32];
    let restore = Restore {
        live: true,
        ended: false,
        end_time: END,
        original_end: END,
        leader: Some((w.bob, PRICE, false)),
        leader_max: None,
        prebids: vec![],
        bidders: vec![w.alice, w.bob],
        bid_count: 2,
        platform_bid_count: 0,
        seq: 5,
        log_head: Some(head),
    };
    let h = w.core.restore_auction(spec(AUCTION + 1), restore).unwrap();
    let (_, log) = place(&mut w.core, &bid(h, w.alice, PRICE + STEP, START, false));
    // Alice was restored as Bidder 1.
    let entry = LogEntry {
        seq: 6,
        number: 1,
        amount: PRICE + STEP,
        at: START,
        platform: false,
        proxy: false,
    };
    assert_eq!(log[0], bid_hash(&header_state(AUCTION + 1), &entry, &head));
}

#[test]
fn a_restore_with_a_head_but_no_bids_is_refused() {
    let mut w = world();
    let restore = Restore {
        live: true,
        ended: false,
        end_time: END,
        original_end: END,
        leader: None,
        leader_max: None,
        prebids: vec![],
        bidders: vec![],
        bid_count: 0,
        platform_bid_count: 0,
        seq: 1,
        log_head: Some([4u8; 32]),
    };
    assert!(w.core.restore_auction(spec(AUCTION + 2), restore).is_err());
}

#[test]
fn a_batch_worked_in_shard_groups_logs_its_rows_in_bid_order() {
    // Eight auctions over four shards, bidders whose balances cannot be
    // exhausted (so every shard is a group of its own), maxima that answer.
    let build = || {
        let mut core = Core::new(4, 1).unwrap();
        let users: Vec<u32> = (1..=6)
            .map(|id| core.upsert_user(id, 1 << 50, true).unwrap())
            .collect();
        let auctions: Vec<u32> = (0..8)
            .map(|i| core.add_auction(spec(AUCTION + 10 + i), true).unwrap())
            .collect();
        for (i, &auction) in auctions.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let holder = users[i % users.len()];
            let set = core.set_max(auction, holder, PRICE + 6 * STEP, START);
            assert!(matches!(set, MaxOutcome::Set(_)));
        }
        (core, users, auctions)
    };
    let (mut one, users, auctions) = build();
    let bids: Vec<BidRequest> = (0..120)
        .map(|i: i64| {
            let auction = auctions[(i * 5 % 8) as usize];
            let user = users[(i * 7 % 6) as usize];
            bid(auction, user, PRICE + (i / 8 + 1) * STEP, START + i, false)
        })
        .collect();
    let mut singly = Vec::new();
    let expected_outcomes: Vec<Outcome> =
        bids.iter().map(|b| one.place_bid(b, &mut singly)).collect();
    let (mut batched, _, _) = build();
    let mut together = Vec::new();
    let outcomes = batched.place_batch(&bids, &mut together);
    assert_eq!(outcomes, expected_outcomes);
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Accepted(a) if a.answer.is_some())));
    assert!(outcomes.iter().any(|o| !o.is_accepted()));
    assert_eq!(together, singly);
}
