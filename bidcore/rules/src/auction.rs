//! One auction: its fixed terms ([`AuctionSpec`]) and its live state.

use rustc_hash::FxHashMap;

use crate::bidlog::{genesis, header_state, HeaderState, LogHash};
use crate::error::{invalid, CoreError};
use crate::money::{
    is_valid_amount, Kobo, Millis, MAX_AMOUNT, MAX_BASIS_POINTS, MAX_SELLERS, MAX_SNIPE_MS,
    MAX_TIME_MS,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Scheduled,
    Live,
    Ended,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Live => "live",
            Status::Ended => "ended",
            Status::Cancelled => "cancelled",
        }
    }

    fn is_open(self) -> bool {
        matches!(self, Status::Scheduled | Status::Live)
    }
}

/// The terms an auction is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuctionSpec {
    pub id: u128,
    pub sellers: Vec<u128>,
    pub start_time: Millis,
    pub end_time: Millis,
    pub start_price: Kobo,
    pub increment: Kobo,
    /// The effective reserve: `None` for no-reserve auctions.
    pub reserve: Option<Kobo>,
    pub deposit_bp: u32,
    pub snipe_window: Millis,
    pub snipe_extension: Millis,
    /// The pool whose allowances back this auction's deposits (several nodes:
    /// its partition); None: the bidders' whole balances do.
    pub pool: Option<u32>,
}

impl AuctionSpec {
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.start_time < 0 || self.start_time >= self.end_time || self.end_time > MAX_TIME_MS {
            return Err(invalid(format!(
                "times must satisfy 0 <= start_time_ms < end_time_ms <= {MAX_TIME_MS} \
                 (got {} and {})",
                self.start_time, self.end_time
            )));
        }
        check_price("start_price_kobo", self.start_price)?;
        check_price("bid_increment_kobo", self.increment)?;
        if let Some(reserve) = self.reserve {
            check_price("reserve_price_kobo", reserve)?;
        }
        if self.deposit_bp > MAX_BASIS_POINTS {
            return Err(invalid(format!(
                "deposit_pct_bp must be 0..={MAX_BASIS_POINTS} (got {})",
                self.deposit_bp
            )));
        }
        check_snipe("anti_snipe_window_ms", self.snipe_window)?;
        check_snipe("anti_snipe_extension_ms", self.snipe_extension)?;
        if self.sellers.len() > MAX_SELLERS {
            return Err(invalid(format!(
                "an auction has at most {MAX_SELLERS} seller ids"
            )));
        }
        Ok(())
    }
}

fn check_price(name: &str, value: Kobo) -> Result<(), CoreError> {
    if is_valid_amount(value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name} must be 0 < value < {MAX_AMOUNT} kobo (got {value})"
        )))
    }
}

fn check_snipe(name: &str, value: Millis) -> Result<(), CoreError> {
    if (0..=MAX_SNIPE_MS).contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name} must be 0..={MAX_SNIPE_MS} (got {value})"
        )))
    }
}

/// The leading bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lead {
    pub user: u32,
    pub amount: Kobo,
    pub platform: bool,
    /// The leader's active maximum (never below `amount`): the engine answers
    /// any bid up to it for them. `None` for a plain bid or a platform bid.
    pub max: Option<Kobo>,
    /// What this lead adds to the leader's exposure: `deposit(max)` while a
    /// max is active, else `deposit(amount)`; 0 for a platform bid.
    pub exposed: Kobo,
}

impl Lead {
    /// The most this leader will go to without bidding again.
    #[inline]
    pub fn reach(&self) -> Kobo {
        self.max.unwrap_or(self.amount)
    }
}

/// A maximum left on a scheduled auction, resolved when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreBid {
    pub user: u32,
    pub max: Kobo,
}

/// An auction's state as the ledger has it, for recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub live: bool,
    /// Closed, its end processing not yet done: the leader is still exposed.
    pub ended: bool,
    pub end_time: Millis,
    pub original_end: Millis,
    pub leader: Option<(u32, Kobo, bool)>,
    /// The real leader's active maximum, if any (>= the leading amount).
    pub leader_max: Option<Kobo>,
    /// A scheduled auction's pre-bids, in the order their amounts were set.
    pub prebids: Vec<PreBid>,
    pub bidders: Vec<u32>,
    pub bid_count: u32,
    pub platform_bid_count: u32,
    pub seq: u64,
    /// The hash of the auction's last bid in the ledger (None: no bid yet, the
    /// chain starts at its genesis).
    pub log_head: Option<LogHash>,
}

/// A read-only copy of one auction's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuctionState {
    pub handle: u32,
    pub spec: AuctionSpec,
    pub status: Status,
    pub end_time: Millis,
    pub original_end: Millis,
    pub lead: Option<Lead>,
    pub min_next_bid: Kobo,
    pub bid_count: u32,
    pub platform_bid_count: u32,
    pub bidders: Vec<u32>,
    pub seq: u64,
    /// Pre-bids of a scheduled auction, in the order their amounts were set.
    pub prebids: Vec<PreBid>,
    /// The bid log's head: the last bid's hash (its genesis before any bid).
    pub log_head: LogHash,
}

#[derive(Debug, Clone)]
pub(crate) struct Auction {
    pub spec: AuctionSpec,
    pub status: Status,
    pub end_time: Millis,
    pub original_end: Millis,
    pub lead: Option<Lead>,
    pub bid_count: u32,
    pub platform_bid_count: u32,
    /// Real bidders in the order of their first bid; the position is the
    /// bidder's stable number ("Bidder 3") in this auction.
    pub bidders: Vec<u32>,
    pub bidder_numbers: FxHashMap<u32, u32>,
    pub seq: u64,
    /// The bid log's head: the last bid's hash, its genesis before any bid.
    pub head: LogHash,
    /// SHA-256's state after the header every bid's hash starts with.
    pub log_header: HeaderState,
    /// A scheduled auction's pre-bids, one per bidder, in the order their
    /// amounts were set (a raise moves a pre-bid to the end: equal maxes go
    /// to the one set first).
    pub prebids: Vec<PreBid>,
    /// The would-be leader of the pre-bids and what that adds to its exposure.
    pub prebid_exposure: Option<(u32, Kobo)>,
}

impl Auction {
    pub fn new(spec: AuctionSpec, live: bool) -> Self {
        let end = spec.end_time;
        let (head, log_header) = (genesis(spec.id), header_state(spec.id));
        Auction {
            spec,
            status: if live {
                Status::Live
            } else {
                Status::Scheduled
            },
            end_time: end,
            original_end: end,
            lead: None,
            bid_count: 0,
            platform_bid_count: 0,
            bidders: Vec::new(),
            bidder_numbers: FxHashMap::default(),
            seq: 0,
            head,
            log_header,
            prebids: Vec::new(),
            prebid_exposure: None,
        }
    }

    /// The pre-bids ranked: highest max first, the one set earlier first among
    /// equals (indices into `prebids`).
    pub fn ranked_prebids(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.prebids.len()).collect();
        order.sort_by(|&a, &b| {
            self.prebids[b]
                .max
                .cmp(&self.prebids[a].max)
                .then(a.cmp(&b))
        });
        order
    }

    /// Where the pre-bids would open the auction: (would-be leader, price).
    pub fn prebid_outlook(&self) -> Option<(u32, Kobo)> {
        let ranked = self.ranked_prebids();
        let top = self.prebids[*ranked.first()?];
        let price = match ranked.get(1) {
            Some(&second) => top
                .max
                .min(self.prebids[second].max.saturating_add(self.spec.increment)),
            None => self.spec.start_price,
        };
        Some((top.user, price))
    }

    #[inline]
    pub fn min_next_bid(&self) -> Kobo {
        match self.lead {
            Some(lead) => lead.amount + self.spec.increment,
            None => self.spec.start_price,
        }
    }

    /// The bidder's number in this auction, registering a first bid.
    pub fn number_bidder(&mut self, user: u32) -> u32 {
        let next = self.bidders.len() as u32 + 1;
        let number = *self.bidder_numbers.entry(user).or_insert(next);
        if number == next {
            self.bidders.push(user);
        }
        number
    }

    pub fn require_open(&self, handle: u32, operation: &'static str) -> Result<(), CoreError> {
        if self.status.is_open() {
            Ok(())
        } else {
            Err(CoreError::InvalidTransition {
                auction: handle,
                status: self.status.as_str(),
                operation,
            })
        }
    }

    pub fn state(&self, handle: u32) -> AuctionState {
        AuctionState {
            handle,
            spec: self.spec.clone(),
            status: self.status,
            end_time: self.end_time,
            original_end: self.original_end,
            lead: self.lead,
            min_next_bid: self.min_next_bid(),
            bid_count: self.bid_count,
            platform_bid_count: self.platform_bid_count,
            bidders: self.bidders.clone(),
            seq: self.seq,
            prebids: self.prebids.clone(),
            log_head: self.head,
        }
    }
}
