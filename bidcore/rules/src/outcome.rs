//! What a bid asks and what the core answers.

use crate::bidlog::LogHash;
use crate::money::{Kobo, Millis};

/// One bid as the core sees it: handles and machine integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidRequest {
    pub auction: u32,
    pub user: u32,
    /// Any value; amounts outside `0 < a < 10^15` are refused as `invalid_amount`.
    pub amount: Kobo,
    pub at: Millis,
    pub platform: bool,
}

/// Why a bid was refused, in the order the rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    InvalidAmount = 1,
    UnknownAuction = 2,
    AuctionNotLive = 3,
    AuctionEnded = 4,
    OwnAuction = 5,
    NotEligible = 6,
    AlreadyLeading = 7,
    BelowMinimum = 8,
    InsufficientBuyingPower = 9,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::InvalidAmount,
        Reason::UnknownAuction,
        Reason::AuctionNotLive,
        Reason::AuctionEnded,
        Reason::OwnAuction,
        Reason::NotEligible,
        Reason::AlreadyLeading,
        Reason::BelowMinimum,
        Reason::InsufficientBuyingPower,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidAmount => "invalid_amount",
            Reason::UnknownAuction => "unknown_auction",
            Reason::AuctionNotLive => "auction_not_live",
            Reason::AuctionEnded => "auction_ended",
            Reason::OwnAuction => "own_auction",
            Reason::NotEligible => "not_eligible",
            Reason::AlreadyLeading => "already_leading",
            Reason::BelowMinimum => "below_minimum",
            Reason::InsufficientBuyingPower => "insufficient_buying_power",
        }
    }
}

/// An accepted bid (one bid row) and the auction's state right after it.
/// Its hash in the bid log is not here but beside it (`place_bid`'s and
/// `place_batch`'s `log`, `MaxSet::hashes`, `Opened::hashes`): an outcome
/// small enough to move without a call to memcpy is most of a batch's speed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub bid: BidRequest,
    /// Placed by the engine for a maximum (RULES.md "Maximum (proxy) bids").
    pub is_proxy: bool,
    pub seq: u64,
    pub end_time: Millis,
    pub extended: bool,
    pub min_next_bid: Kobo,
    pub bid_count: u32,
    pub bidder_count: u32,
    /// 1-based number of a real bidder in this auction; 0 for platform bids.
    pub bidder_number: u32,
    pub deposit: Kobo,
    /// The lead this row took, if any.
    pub previous: Option<Outbid>,
    /// The leader's proxy answering this bid in the same decision (this bid
    /// did not pass the leader's maximum), placed right after it.
    pub answer: Option<Box<Accepted>>,
}

/// The lead a row took, as its outcome reports it: no more than that, since
/// a batch holds one outcome per bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbid {
    pub user: u32,
    pub amount: Kobo,
    pub platform: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub bid: BidRequest,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    Rejected(Rejected),
}

impl Outcome {
    /// 0 for accepted, else the reason's number.
    #[inline]
    pub fn code_byte(&self) -> u8 {
        match self {
            Outcome::Accepted(_) => 0,
            Outcome::Rejected(r) => r.reason as u8,
        }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted(_))
    }
}

/// What closing an auction leaves, for end processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub auction: u32,
    pub seq: u64,
    pub lead: Option<crate::auction::Lead>,
    pub bid_count: u32,
    pub bidder_count: u32,
    pub platform_bid_count: u32,
    pub end_time: Millis,
}

/// A maximum set or raised: where it stands and the bid rows it placed (none,
/// one, or a row for the maximum it met and the answer to it), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxSet {
    pub auction: u32,
    pub user: u32,
    pub max: Kobo,
    /// This maximum leads (on a scheduled auction: would lead when it opens).
    pub leading: bool,
    /// The price after resolution (scheduled: the price it would open at).
    pub price: Kobo,
    pub bids: Vec<Accepted>,
    /// Each row's hash in the bid log (crate::bidlog), one per `bids`.
    pub hashes: Vec<LogHash>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaxOutcome {
    Set(MaxSet),
    Rejected(Rejected),
}

/// An auction opened: the state change's seq, then the bid rows its pre-bids placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub seq: u64,
    pub bids: Vec<Accepted>,
    /// Each row's hash in the bid log (crate::bidlog), one per `bids`.
    pub hashes: Vec<LogHash>,
}

/// Bid rows placed in order, each with its hash: the auction's head right
/// after the row.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub bids: Vec<Accepted>,
    pub hashes: Vec<LogHash>,
}

impl Rows {
    pub fn push(&mut self, row: Accepted, head: LogHash) {
        self.bids.push(row);
        self.hashes.push(head);
    }
}
