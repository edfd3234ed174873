//! Bidders: wallet balance, eligibility and exposure.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::money::Kobo;

#[derive(Debug)]
pub(crate) struct User {
    pub id: u128,
    pub balance: Kobo,
    /// Role may bid and KYC approved.
    pub eligible: bool,
    /// Sum of the deposits of the live auctions this user leads. Atomic
    /// because a parallel batch may add to it from several shards; it only
    /// does so for users whose bids cannot be refused for buying power, so
    /// the order of those additions never changes an outcome.
    exposure: AtomicI64,
}

impl User {
    pub fn new(id: u128, balance: Kobo, eligible: bool) -> Self {
        User {
            id,
            balance,
            eligible,
            exposure: AtomicI64::new(0),
        }
    }

    #[inline]
    pub fn exposure(&self) -> Kobo {
        self.exposure.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn add_exposure(&self, delta: Kobo) {
        self.exposure.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn state(&self, handle: u32) -> UserState {
        UserState {
            handle,
            id: self.id,
            balance: self.balance,
            eligible: self.eligible,
            exposure: self.exposure(),
        }
    }
}

/// A read-only copy of one bidder's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserState {
    pub handle: u32,
    pub id: u128,
    pub balance: Kobo,
    pub eligible: bool,
    pub exposure: Kobo,
}
