//! Bidders: wallet balance, eligibility and exposure; with pools, the share
//! of their buying power each pool (a partition of auctions) may commit.

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
    /// Allowances, one per pool this user may commit deposits in (empty while
    /// the core has no pools). Short: a bidder is active in a few partitions.
    pools: Vec<PoolAccount>,
}

/// What one pool may commit of a user's balance, and what it has committed.
#[derive(Debug)]
pub(crate) struct PoolAccount {
    pool: u32,
    allowance: Kobo,
    exposure: AtomicI64,
}

impl User {
    pub fn new(id: u128, balance: Kobo, eligible: bool) -> Self {
        User {
            id,
            balance,
            eligible,
            exposure: AtomicI64::new(0),
            pools: Vec::new(),
        }
    }

    /// What the buying-power rule weighs for an auction in `pool`: the balance
    /// and exposure (no pool), or the pool's allowance and exposure (none yet: 0, 0).
    #[inline]
    pub fn room(&self, pool: Option<u32>) -> (Kobo, Kobo) {
        match pool {
            None => (self.balance, self.exposure()),
            Some(pool) => self.account(pool).map_or((0, 0), |account| {
                (account.allowance, account.exposure.load(Ordering::Relaxed))
            }),
        }
    }

    pub fn has_pools(&self) -> bool {
        !self.pools.is_empty()
    }

    fn account(&self, pool: u32) -> Option<&PoolAccount> {
        self.pools.iter().find(|account| account.pool == pool)
    }

    /// Sets a pool's allowance (made if new).
    pub fn set_allowance(&mut self, pool: u32, allowance: Kobo) {
        self.open_pool(pool).allowance = allowance;
    }

    /// Makes a pool's account if it has none (allowance 0), so exposure can be
    /// restored into it.
    pub fn open_pool(&mut self, pool: u32) -> &mut PoolAccount {
        let at = match self.pools.iter().position(|account| account.pool == pool) {
            Some(at) => at,
            None => {
                self.pools.push(PoolAccount {
                    pool,
                    allowance: 0,
                    exposure: AtomicI64::new(0),
                });
                self.pools.len() - 1
            }
        };
        &mut self.pools[at]
    }

    /// Forgets a pool (its auctions have left the core, so its exposure is 0).
    pub fn close_pool(&mut self, pool: u32) {
        self.pools.retain(|account| account.pool != pool);
    }

    #[inline]
    pub fn exposure(&self) -> Kobo {
        self.exposure.load(Ordering::Relaxed)
    }

    /// Adds to the exposure (and to its pool's). A pool's account exists
    /// whenever a non-zero delta reaches it: an accepted bid or maximum passed
    /// the pool's allowance (so the account was made), a release undoes an
    /// addition, and restores open the account first.
    #[inline]
    pub fn add_exposure(&self, pool: Option<u32>, delta: Kobo) {
        self.exposure.fetch_add(delta, Ordering::Relaxed);
        if let Some(pool) = pool {
            match self.account(pool) {
                Some(account) => {
                    account.exposure.fetch_add(delta, Ordering::Relaxed);
                }
                None => debug_assert!(delta == 0, "exposure in pool {pool} without an account"),
            }
        }
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
