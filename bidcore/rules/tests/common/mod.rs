//! What the rules' integration tests share: an auction's terms.
// Each test crate uses part of this module.
#![allow(dead_code)]

use bidcore_rules::AuctionSpec;

pub const SELLER: u128 = 0xAAAA;
pub const START: i64 = 1_000_000;
pub const END: i64 = 10_000_000;
pub const PRICE: i64 = 100_000_000; // ₦1,000,000
pub const STEP: i64 = 5_000_000; // ₦50,000

/// An auction from START to END at PRICE by STEP, 20 % deposit, two minutes'
/// anti-sniping, no reserve, no pool.
pub fn spec(id: u128) -> AuctionSpec {
    AuctionSpec {
        id,
        sellers: vec![SELLER],
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
