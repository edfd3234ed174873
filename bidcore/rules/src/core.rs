//! The core: auctions spread over shards, bidders with their exposure.

use rustc_hash::FxHashMap;

use crate::auction::{Auction, AuctionSpec, AuctionState, Lead, Restore, Status};
use crate::bidlog::LogHash;
use crate::decide::{decide, release};
use crate::error::{invalid, CoreError};
use crate::maxes::{decide_max, drop_prebids, exposed_here, resolve_prebids, restore_exposure};
use crate::money::{
    is_valid_amount, Kobo, Millis, MAX_BALANCE, MAX_SHARDS, MAX_TIME_MS,
    RESERVE_PROTECTION_HORIZON_MS,
};
use crate::outcome::{BidRequest, Closed, MaxOutcome, Opened, Outcome};
use crate::user::{User, UserState};

#[derive(Debug, Default)]
pub(crate) struct Shard {
    /// Indexed by `handle / shard_count`; `None` once removed.
    pub auctions: Vec<Option<Auction>>,
}

#[derive(Debug)]
pub struct Core {
    pub(crate) shards: Vec<Shard>,
    pub(crate) users: Vec<User>,
    pub(crate) parallel_min_batch: usize,
    next_auction: u32,
    auction_ids: FxHashMap<u128, u32>,
    user_ids: FxHashMap<u128, u32>,
}

impl Core {
    pub fn new(shards: usize, parallel_min_batch: usize) -> Result<Self, CoreError> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(invalid(format!(
                "shards must be 1..={MAX_SHARDS} (got {shards})"
            )));
        }
        Ok(Core {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            users: Vec::new(),
            parallel_min_batch,
            next_auction: 0,
            auction_ids: FxHashMap::default(),
            user_ids: FxHashMap::default(),
        })
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn auction_count(&self) -> usize {
        self.auction_ids.len()
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    // ---- users -------------------------------------------------------------

    pub fn upsert_user(
        &mut self,
        id: u128,
        balance: Kobo,
        eligible: bool,
    ) -> Result<u32, CoreError> {
        check_balance(balance)?;
        if let Some(&handle) = self.user_ids.get(&id) {
            let user = &mut self.users[handle as usize];
            user.balance = balance;
            user.eligible = eligible;
            return Ok(handle);
        }
        // u32::MAX stays free: batches use it for "no such user".
        let handle = u32::try_from(self.users.len())
            .ok()
            .filter(|&h| h < u32::MAX)
            .ok_or_else(|| invalid("too many users for one core"))?;
        self.users.push(User::new(id, balance, eligible));
        self.user_ids.insert(id, handle);
        Ok(handle)
    }

    pub fn user_handle(&self, id: u128) -> Option<u32> {
        self.user_ids.get(&id).copied()
    }

    pub fn set_balance(&mut self, user: u32, balance: Kobo) -> Result<(), CoreError> {
        check_balance(balance)?;
        self.user_mut(user)?.balance = balance;
        Ok(())
    }

    pub fn set_eligible(&mut self, user: u32, eligible: bool) -> Result<(), CoreError> {
        self.user_mut(user)?.eligible = eligible;
        Ok(())
    }

    pub fn user(&self, user: u32) -> Result<UserState, CoreError> {
        self.users
            .get(user as usize)
            .map(|u| u.state(user))
            .ok_or(CoreError::UnknownUser(user))
    }

    /// Sets what `pool` may commit of the user's balance (several nodes: the
    /// allowance the ledger granted to the partition).
    pub fn set_allowance(
        &mut self,
        user: u32,
        pool: u32,
        allowance: Kobo,
    ) -> Result<(), CoreError> {
        check_balance(allowance)?;
        self.user_mut(user)?.set_allowance(pool, allowance);
        Ok(())
    }

    /// A pool's allowance and the exposure it backs, for `user` (0, 0: none).
    pub fn allowance(&self, user: u32, pool: u32) -> Result<(Kobo, Kobo), CoreError> {
        self.users
            .get(user as usize)
            .map(|u| u.room(Some(pool)))
            .ok_or(CoreError::UnknownUser(user))
    }

    /// Forgets every user's account in `pool` (its partition left this core,
    /// after its auctions did).
    pub fn close_pool(&mut self, pool: u32) {
        for user in &mut self.users {
            user.close_pool(pool);
        }
    }

    /// What this auction adds to `user`'s exposure now (their lead's deposit,
    /// or their leading pre-bid's).
    pub fn exposed_here(&self, handle: u32, user: u32) -> Result<Kobo, CoreError> {
        self.get(handle)
            .map(|auction| exposed_here(auction, user))
            .ok_or(CoreError::UnknownAuction(handle))
    }

    fn user_mut(&mut self, user: u32) -> Result<&mut User, CoreError> {
        self.users
            .get_mut(user as usize)
            .ok_or(CoreError::UnknownUser(user))
    }

    // ---- auctions ----------------------------------------------------------

    pub fn add_auction(&mut self, spec: AuctionSpec, live: bool) -> Result<u32, CoreError> {
        spec.validate()?;
        self.insert(Auction::new(spec, live))
    }

    /// Loads an auction with the state the ledger holds for it (recovery).
    pub fn restore_auction(
        &mut self,
        spec: AuctionSpec,
        restore: Restore,
    ) -> Result<u32, CoreError> {
        spec.validate()?;
        self.check_restore(&spec, &restore)?;
        // Refuse a duplicate before touching anyone's exposure.
        if self.auction_ids.contains_key(&spec.id) {
            return Err(CoreError::DuplicateAuction(spec.id));
        }
        let mut auction = Auction::new(spec, restore.live);
        if restore.ended {
            auction.status = Status::Ended;
        }
        auction.end_time = restore.end_time;
        auction.original_end = restore.original_end;
        auction.bid_count = restore.bid_count;
        auction.platform_bid_count = restore.platform_bid_count;
        auction.seq = restore.seq;
        for &user in &restore.bidders {
            auction.number_bidder(user);
        }
        if let Some(head) = restore.log_head {
            auction.head = head;
        }
        auction.lead = restore.leader.map(|(user, amount, platform)| Lead {
            user,
            amount,
            platform,
            max: restore.leader_max,
            exposed: 0, // set by restore_exposure
        });
        auction.prebids = restore.prebids;
        if let Some(pool) = auction.spec.pool {
            // What the ledger says they committed lands in the pool's account.
            let holders = auction.lead.iter().map(|lead| lead.user);
            for user in holders.chain(auction.prebids.iter().map(|p| p.user)) {
                if let Some(user) = self.users.get_mut(user as usize) {
                    user.open_pool(pool);
                }
            }
        }
        restore_exposure(&mut auction, &self.users);
        self.insert(auction)
    }

    fn check_restore(&self, spec: &AuctionSpec, restore: &Restore) -> Result<(), CoreError> {
        if !(spec.start_time < restore.original_end && restore.original_end <= restore.end_time)
            || restore.end_time > MAX_TIME_MS
        {
            return Err(invalid(format!(
                "restore needs start_time_ms < original_end_ms <= end_time_ms <= {MAX_TIME_MS}"
            )));
        }
        if restore.ended && !restore.live {
            return Err(invalid(
                "restore: an ended auction was live (live and ended go together)",
            ));
        }
        for &user in &restore.bidders {
            self.user(user)?;
        }
        let mut seen = restore.bidders.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != restore.bidders.len() {
            return Err(invalid("restore: bidders must be distinct"));
        }
        let least_bids = restore.bidders.len() as u64 + u64::from(restore.platform_bid_count);
        if u64::from(restore.bid_count) < least_bids {
            return Err(invalid(
                "restore: bid_count is below bidders + platform bids",
            ));
        }
        self.check_restored_maxes(spec, restore)?;
        if restore.log_head.is_some() && restore.bid_count == 0 {
            return Err(invalid("restore: a bid log head needs bids"));
        }
        match restore.leader {
            None if restore.bid_count > 0 => Err(invalid("restore: bids without a leader")),
            None => Ok(()),
            Some(_) if !restore.live => Err(invalid("restore: only a live auction has a leader")),
            Some((user, amount, platform)) => {
                self.user(user)?;
                if !is_valid_amount(amount) || amount < spec.start_price {
                    return Err(invalid(
                        "restore: leading amount must be valid and >= start price",
                    ));
                }
                if !platform && !restore.bidders.contains(&user) {
                    return Err(invalid("restore: a real leader must be among the bidders"));
                }
                Ok(())
            }
        }
    }

    fn check_restored_maxes(&self, spec: &AuctionSpec, restore: &Restore) -> Result<(), CoreError> {
        if let Some(max) = restore.leader_max {
            match restore.leader {
                Some((_, amount, false)) if is_valid_amount(max) && max >= amount => {}
                _ => {
                    return Err(invalid(
                        "restore: leader_max needs a real leader and amount <= max < 10^15",
                    ))
                }
            }
        }
        if !restore.prebids.is_empty() && restore.live {
            return Err(invalid("restore: pre-bids belong to a scheduled auction"));
        }
        let mut seen: Vec<u32> = Vec::with_capacity(restore.prebids.len());
        for prebid in &restore.prebids {
            self.user(prebid.user)?;
            if !is_valid_amount(prebid.max) || prebid.max < spec.start_price {
                return Err(invalid(
                    "restore: a pre-bid's max must be valid and >= start_price",
                ));
            }
            if seen.contains(&prebid.user) {
                return Err(invalid("restore: one pre-bid per bidder"));
            }
            seen.push(prebid.user);
        }
        Ok(())
    }

    fn insert(&mut self, auction: Auction) -> Result<u32, CoreError> {
        let id = auction.spec.id;
        if self.auction_ids.contains_key(&id) {
            return Err(CoreError::DuplicateAuction(id));
        }
        let handle = self.next_auction;
        if handle == u32::MAX {
            return Err(invalid("too many auctions for one core"));
        }
        let (shard, slot) = self.locate(handle);
        let auctions = &mut self.shards[shard].auctions;
        debug_assert_eq!(auctions.len(), slot);
        auctions.push(Some(auction));
        self.next_auction += 1;
        self.auction_ids.insert(id, handle);
        Ok(handle)
    }

    /// How many loaded auctions are in each status (scheduled, live, ended, cancelled).
    pub fn status_counts(&self) -> [(Status, usize); 4] {
        let mut counts = [
            (Status::Scheduled, 0),
            (Status::Live, 0),
            (Status::Ended, 0),
            (Status::Cancelled, 0),
        ];
        for auction in self.shards.iter().flat_map(|s| s.auctions.iter().flatten()) {
            if let Some(entry) = counts
                .iter_mut()
                .find(|(status, _)| *status == auction.status)
            {
                entry.1 += 1;
            }
        }
        counts
    }

    pub fn auction_handle(&self, id: u128) -> Option<u32> {
        self.auction_ids.get(&id).copied()
    }

    pub fn auction_handles(&self) -> Vec<u32> {
        let mut handles: Vec<u32> = self.auction_ids.values().copied().collect();
        handles.sort_unstable();
        handles
    }

    pub fn auction(&self, handle: u32) -> Result<AuctionState, CoreError> {
        self.get(handle)
            .map(|a| a.state(handle))
            .ok_or(CoreError::UnknownAuction(handle))
    }

    #[inline]
    pub(crate) fn locate(&self, handle: u32) -> (usize, usize) {
        let n = self.shards.len();
        (handle as usize % n, handle as usize / n)
    }

    #[inline]
    pub(crate) fn get(&self, handle: u32) -> Option<&Auction> {
        let (shard, slot) = self.locate(handle);
        self.shards[shard].auctions.get(slot)?.as_ref()
    }

    fn get_mut(&mut self, handle: u32) -> Result<&mut Auction, CoreError> {
        let (shard, slot) = self.locate(handle);
        self.shards[shard]
            .auctions
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(CoreError::UnknownAuction(handle))
    }

    /// Opens a scheduled auction at `now`; its pre-bids resolve into bid rows
    /// placed right after the state change.
    pub fn open_auction(&mut self, handle: u32, now: Millis) -> Result<Opened, CoreError> {
        let (shard, slot) = self.locate(handle);
        let auction = self.shards[shard]
            .auctions
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(CoreError::UnknownAuction(handle))?;
        if auction.status != Status::Scheduled {
            return Err(CoreError::InvalidTransition {
                auction: handle,
                status: auction.status.as_str(),
                operation: "open",
            });
        }
        auction.status = Status::Live;
        auction.seq += 1;
        let seq = auction.seq;
        let rows = resolve_prebids(auction, handle, &self.users, now);
        Ok(Opened {
            seq,
            bids: rows.bids,
            hashes: rows.hashes,
        })
    }

    /// Ends an auction. Its leader stays exposed until `remove_auction`: end
    /// processing takes the winner's deposit later, and until it has, that
    /// money must back no other bid and leave no wallet. Pre-bids (a
    /// scheduled auction's) are released.
    pub fn close_auction(&mut self, handle: u32) -> Result<Closed, CoreError> {
        let lead = self.finish(handle, Status::Ended, "close")?;
        let (shard, slot) = self.locate(handle);
        let auction = self.shards[shard].auctions[slot]
            .as_mut()
            .expect("just closed");
        // A scheduled auction closed before it opened: its pre-bids never
        // resolve, so nothing of theirs is left for end processing to take.
        drop_prebids(auction, &self.users);
        Ok(Closed {
            auction: handle,
            seq: auction.seq,
            lead,
            bid_count: auction.bid_count,
            bidder_count: auction.bidders.len() as u32,
            platform_bid_count: auction.platform_bid_count,
            end_time: auction.end_time,
        })
    }

    /// Cancels an auction and releases its leader's exposure (or its pre-bids').
    pub fn cancel_auction(&mut self, handle: u32) -> Result<u64, CoreError> {
        let lead = self.finish(handle, Status::Cancelled, "cancel")?;
        let (shard, slot) = self.locate(handle);
        let auction = self.shards[shard].auctions[slot]
            .as_mut()
            .expect("just cancelled");
        if let Some(lead) = lead {
            release(&self.users, &lead, auction.spec.pool);
        }
        drop_prebids(auction, &self.users);
        Ok(auction.seq)
    }

    /// Moves an open auction to `status`; its lead stays for the record.
    fn finish(
        &mut self,
        handle: u32,
        status: Status,
        operation: &'static str,
    ) -> Result<Option<Lead>, CoreError> {
        let auction = self.get_mut(handle)?;
        auction.require_open(handle, operation)?;
        auction.status = status;
        auction.seq += 1;
        Ok(auction.lead)
    }

    pub fn extend_auction(&mut self, handle: u32, end_time: Millis) -> Result<u64, CoreError> {
        let auction = self.get_mut(handle)?;
        auction.require_open(handle, "extend")?;
        if end_time <= auction.end_time || end_time > MAX_TIME_MS {
            return Err(invalid(format!(
                "a new end must be later than the current end {} and <= {MAX_TIME_MS} (got {end_time})",
                auction.end_time
            )));
        }
        auction.end_time = end_time;
        auction.seq += 1;
        Ok(auction.seq)
    }

    /// Forgets an ended or cancelled auction; an ended one's leader is no
    /// longer exposed (its end processing has taken the deposit, or found it unsold).
    pub fn remove_auction(&mut self, handle: u32) -> Result<(), CoreError> {
        let auction = self.get_mut(handle)?;
        if !matches!(auction.status, Status::Ended | Status::Cancelled) {
            return Err(CoreError::InvalidTransition {
                auction: handle,
                status: auction.status.as_str(),
                operation: "remove",
            });
        }
        let (id, pool) = (auction.spec.id, auction.spec.pool);
        if let (Status::Ended, Some(lead)) = (auction.status, auction.lead) {
            release(&self.users, &lead, pool);
        }
        let (shard, slot) = self.locate(handle);
        self.shards[shard].auctions[slot] = None;
        self.auction_ids.remove(&id);
        Ok(())
    }

    /// Lets an auction go whatever its status: its partition moved to another
    /// node, which rebuilds it from the ledger. What it exposed here is
    /// released (a live or ended auction's lead, a scheduled one's pre-bids);
    /// a cancelled one released that when it was cancelled.
    pub fn evict_auction(&mut self, handle: u32) -> Result<(), CoreError> {
        let (shard, slot) = self.locate(handle);
        let mut auction = self.shards[shard]
            .auctions
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or(CoreError::UnknownAuction(handle))?;
        if let (Status::Live | Status::Ended, Some(lead)) = (auction.status, auction.lead) {
            release(&self.users, &lead, auction.spec.pool);
        }
        drop_prebids(&mut auction, &self.users);
        self.auction_ids.remove(&auction.spec.id);
        Ok(())
    }

    // ---- bids --------------------------------------------------------------

    /// Sets or raises `user`'s maximum on an auction (a pre-bid while scheduled).
    pub fn set_max(&mut self, auction: u32, user: u32, max: Kobo, at: Millis) -> MaxOutcome {
        let (shard, slot) = self.locate(auction);
        let found = self.shards[shard]
            .auctions
            .get_mut(slot)
            .and_then(Option::as_mut);
        decide_max(found, auction, &self.users, user, max, at)
    }

    /// Decides one bid; an accepted one appends its rows' hashes to `log`
    /// (the bid's, then its answer's).
    pub fn place_bid(&mut self, bid: &BidRequest, log: &mut Vec<LogHash>) -> Outcome {
        let (shard, slot) = self.locate(bid.auction);
        let auction = self.shards[shard]
            .auctions
            .get_mut(slot)
            .and_then(Option::as_mut);
        decide(auction, &self.users, bid, log)
    }

    /// What the clock makes due at `now`, in handle order: scheduled auctions
    /// whose start has come (to open) and live ones whose end has come (to close).
    pub fn due(&self, now: Millis) -> (Vec<u32>, Vec<u32>) {
        let mut to_open = Vec::new();
        let mut to_close = Vec::new();
        for (&_, &handle) in &self.auction_ids {
            match self.get(handle) {
                Some(a) if a.status == Status::Scheduled && a.spec.start_time <= now => {
                    to_open.push(handle)
                }
                Some(a) if a.status == Status::Live && a.end_time <= now => to_close.push(handle),
                _ => {}
            }
        }
        to_open.sort_unstable();
        to_close.sort_unstable();
        (to_open, to_close)
    }

    /// The platform bids due at `now`: `(auction handle, amount)` in handle order.
    pub fn reserve_protection(&self, now: Millis) -> Vec<(u32, Kobo)> {
        let mut due: Vec<(u32, Kobo)> = self
            .auction_ids
            .values()
            .filter_map(|&handle| {
                let auction = self.get(handle)?;
                reserve_bid(auction, now).map(|amount| (handle, amount))
            })
            .collect();
        due.sort_unstable();
        due
    }
}

fn reserve_bid(auction: &Auction, now: Millis) -> Option<Kobo> {
    let reserve = i128::from(auction.spec.reserve?);
    if auction.status != Status::Live || now < auction.spec.start_time || now >= auction.end_time {
        return None;
    }
    if auction.end_time.saturating_sub(now) >= RESERVE_PROTECTION_HORIZON_MS {
        return None;
    }
    if auction.lead.is_some_and(|lead| lead.platform) {
        return None; // the platform never bids against itself
    }
    let current = i128::from(auction.lead.map_or(0, |lead| lead.amount));
    let amount = auction.min_next_bid();
    let below_trigger = current * 10 < reserve * 9;
    let within_hard_stop = i128::from(amount) * 100 <= reserve * 95;
    (below_trigger && within_hard_stop).then_some(amount)
}

fn check_balance(balance: Kobo) -> Result<(), CoreError> {
    if (0..MAX_BALANCE).contains(&balance) {
        Ok(())
    } else {
        Err(invalid(format!(
            "balance_kobo must be 0 <= balance < {MAX_BALANCE} (got {balance})"
        )))
    }
}
