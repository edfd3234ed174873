//! The Dealer360 auction rules, in plain Rust.
//!
//! Every live auction and every bidder's exposure live in memory here; a bid
//! is decided by [`Core::place_bid`] (or [`Core::place_batch`]) from the
//! rules in `shared/design/RULES.md`, in their order. Time is always an
//! argument: nothing in this crate reads a clock. No Python types appear here;
//! the PyO3 layer in `bidcore/src` converts and dispatches.

mod auction;
mod batch;
pub mod bidlog;
mod core;
mod decide;
mod error;
mod maxes;
mod money;
mod outcome;
mod user;

pub use crate::auction::{AuctionSpec, AuctionState, Lead, PreBid, Restore, Status};
pub use crate::core::Core;
pub use crate::error::CoreError;
pub use crate::money::{
    deposit, is_valid_amount, Kobo, Millis, MAX_AMOUNT, MAX_BALANCE, MAX_BASIS_POINTS, MAX_SELLERS,
    MAX_SHARDS, MAX_SNIPE_MS, MAX_TIME_MS, RESERVE_PROTECTION_HORIZON_MS,
};
pub use crate::outcome::{
    Accepted, BidRequest, Closed, MaxOutcome, MaxSet, Opened, Outbid, Outcome, Reason, Rejected,
};
pub use crate::user::UserState;
