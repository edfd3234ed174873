//! The bid log's chain as the core builds it: every accepted row hashed once,
//! where it is decided, chained on the row before it.

use bidcore_rules::bidlog::{bid_hash, genesis, header_state, LogEntry, LogHash};
use bidcore_rules::{
    Accepted, AuctionSpec, BidRequest, Core, MaxOutcome, Outcome, Restore, MAX_AMOUNT,
};

const AUCTION: u128 = 0x1234_5678_9abc_def0_1122_3344_5566_7788;
const START: i64 = 1_000_000;
const END: i64 = 10_000_000;
const PRICE: i64 = 100_000_000;
const STEP: i64 = 5_000_000;

fn spec(id: u128) -> AuctionSpec {
    AuctionSpec {
        id,
        sellers: vec![0xAAAA],
        start_time: START,
        end_time: END,
        start_price: PRICE,
        increment: STEP,
        reserve: None,
        deposit_bp: 2000,
        snipe_window: 120_000,
        snipe_extension: 120_000,
        pool: None,
    }
}

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
    let first = accepted(
        w.core
            .place_bid(&bid(w.auction, w.alice, PRICE, START, false)),
    );
    assert_eq!(first.hash, expected(&first, &genesis(AUCTION)));
    assert_eq!(w.core.auction(w.auction).unwrap().log_head, first.hash);
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
        let row = accepted(
            w.core
                .place_bid(&bid(w.auction, user, amount, START + 1, false)),
        );
        assert_eq!(row.bidder_number, number);
        assert_eq!(row.hash, expected(&row, &head), "bid {i}");
        head = row.hash;
    }
}

#[test]
fn a_rejected_bid_leaves_the_head_alone() {
    let mut w = world();
    let first = accepted(
        w.core
            .place_bid(&bid(w.auction, w.alice, PRICE, START, false)),
    );
    for refused in [
        bid(w.auction, w.bob, PRICE, START, false), // below the minimum
        bid(w.auction, w.alice, 2 * PRICE, START, false), // already leading
        bid(w.auction, w.bob, MAX_AMOUNT, START, false), // invalid amount
    ] {
        assert!(!w.core.place_bid(&refused).is_accepted());
    }
    assert_eq!(w.core.auction(w.auction).unwrap().log_head, first.hash);
}

#[test]
fn a_platform_bid_is_hashed_with_number_zero() {
    let mut w = world();
    let row = accepted(w.core.place_bid(&bid(w.auction, w.bob, PRICE, START, true)));
    assert_eq!((row.bidder_number, row.bid.platform), (0, true));
    assert_eq!(row.hash, expected(&row, &genesis(AUCTION)));
}

#[test]
fn a_proxy_answer_has_its_own_hash_chained_after_its_trigger() {
    let mut w = world();
    let MaxOutcome::Set(set) = w.core.set_max(w.auction, w.alice, PRICE + 4 * STEP, START) else {
        panic!("max refused");
    };
    let opening = &set.bids[0];
    assert_eq!(opening.hash, expected(opening, &genesis(AUCTION)));
    let trigger = accepted(
        w.core
            .place_bid(&bid(w.auction, w.bob, PRICE + STEP, START, false)),
    );
    let answer = trigger.answer.as_deref().expect("the max answers");
    assert!(answer.is_proxy);
    assert_eq!(trigger.hash, expected(&trigger, &opening.hash));
    assert_eq!(answer.hash, expected(answer, &trigger.hash));
    assert_eq!(w.core.auction(w.auction).unwrap().log_head, answer.hash);
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
        .map(|b| accepted(one.core.place_bid(b)).hash)
        .collect();
    let mut batched = world();
    let all = bids(&batched);
    let together: Vec<LogHash> = batched
        .core
        .place_batch(&all)
        .into_iter()
        .map(|o| accepted(o).hash)
        .collect();
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
    let row = accepted(
        w.core
            .place_bid(&bid(h, w.alice, PRICE + STEP, START, false)),
    );
    // Alice was restored as Bidder 1.
    let entry = LogEntry {
        seq: 6,
        number: 1,
        amount: PRICE + STEP,
        at: START,
        platform: false,
        proxy: false,
    };
    assert_eq!(
        row.hash,
        bid_hash(&header_state(AUCTION + 1), &entry, &head)
    );
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
