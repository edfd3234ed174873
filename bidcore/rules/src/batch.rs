//! Batches: the same outcomes as one bid at a time, several shards at once
//! where that cannot change any outcome.
//!
//! A bid reads its auction (one shard) and its bidder's exposure (every
//! shard). Shards are worked in groups; two shards share a group when a user
//! who takes part in both — bidding there, or leading an auction there when
//! the batch starts — could be refused for buying power. A user who cannot
//! be refused (balance at least exposure plus every deposit the user asks for
//! in this batch) only adds and subtracts exposure, which commutes, so groups
//! may run in any order and still give the sequential outcome.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::bidlog::LogHash;
use crate::core::{Core, Shard};
use crate::decide::decide;
use crate::money::{deposit, is_valid_amount};
use crate::outcome::{BidRequest, Outcome};
use crate::user::User;

/// A group's outcomes with their bids' indices, and the rows it logged.
type GroupDecided = (Vec<(u32, Outcome)>, Vec<LogHash>);

impl Core {
    /// The outcomes of `bids` in order; the accepted ones' rows' hashes are
    /// appended to `log` in the same order (a bid's, then its answer's).
    pub fn place_batch(&mut self, bids: &[BidRequest], log: &mut Vec<LogHash>) -> Vec<Outcome> {
        let groups = if self.shards.len() > 1 && bids.len() >= self.parallel_min_batch.max(1) {
            self.shard_groups(bids)
        } else {
            Vec::new()
        };
        if groups.len() <= 1 {
            return bids.iter().map(|bid| self.place_bid(bid, log)).collect();
        }
        self.place_grouped(bids, &groups, log)
    }

    /// Disjoint shard masks; shards in one mask must be worked together.
    fn shard_groups(&self, bids: &[BidRequest]) -> Vec<u64> {
        #[derive(Default)]
        struct Involvement {
            shards: u64,
            asked: i128,
        }
        let n = self.shards.len();
        let mut involved: FxHashMap<u32, Involvement> = FxHashMap::default();
        let mut touched: u64 = 0;
        for bid in bids {
            let (shard, _) = self.locate(bid.auction);
            let Some(auction) = self.get(bid.auction) else {
                continue;
            };
            let bit = 1u64 << shard;
            touched |= bit;
            if let Some(lead) = auction.lead {
                involved.entry(lead.user).or_default().shards |= bit;
            }
            if !bid.platform {
                let entry = involved.entry(bid.user).or_default();
                entry.shards |= bit;
                if is_valid_amount(bid.amount) {
                    entry.asked += i128::from(deposit(bid.amount, auction.spec.deposit_bp));
                }
            }
        }
        let mut groups: Vec<u64> = (0..n)
            .map(|s| 1u64 << s)
            .filter(|bit| touched & bit != 0)
            .collect();
        for (&user, entry) in &involved {
            if entry.shards.count_ones() > 1 && !self.cannot_be_refused(user, entry.asked) {
                merge(&mut groups, entry.shards);
            }
        }
        groups
    }

    fn cannot_be_refused(&self, user: u32, asked: i128) -> bool {
        self.users
            .get(user as usize)
            // A pooled user's asks may fall in several pools: decided in order.
            .is_none_or(|u| {
                !u.has_pools() && i128::from(u.balance) >= i128::from(u.exposure()) + asked
            })
    }

    fn place_grouped(
        &mut self,
        bids: &[BidRequest],
        groups: &[u64],
        log: &mut Vec<LogHash>,
    ) -> Vec<Outcome> {
        let n = self.shards.len();
        let mut group_of_shard = vec![usize::MAX; n];
        for (g, mask) in groups.iter().enumerate() {
            for (s, slot) in group_of_shard.iter_mut().enumerate() {
                if mask & (1u64 << s) != 0 {
                    *slot = g;
                }
            }
        }
        // Bids on no loaded auction are refused without touching any shard:
        // they go to group 0, where `decide` sees no auction.
        let mut work: Vec<Vec<u32>> = vec![Vec::new(); groups.len()];
        for (i, bid) in bids.iter().enumerate() {
            let (shard, _) = self.locate(bid.auction);
            let group = group_of_shard[shard];
            work[if group == usize::MAX { 0 } else { group }].push(i as u32);
        }
        let mut shard_sets: Vec<Vec<Option<&mut Shard>>> = (0..groups.len())
            .map(|_| (0..n).map(|_| None).collect())
            .collect();
        for (s, shard) in self.shards.iter_mut().enumerate() {
            if let Some(set) = shard_sets.get_mut(group_of_shard[s]) {
                set[s] = Some(shard);
            }
        }
        let users: &[User] = &self.users;
        let decided: Vec<GroupDecided> = shard_sets
            .into_par_iter()
            .zip(work.into_par_iter())
            .map(|(mut shards, indices)| {
                let mut group_log = Vec::new();
                let outcomes = indices
                    .into_iter()
                    .map(|i| {
                        let bid = &bids[i as usize];
                        let (shard, slot) = (bid.auction as usize % n, bid.auction as usize / n);
                        let auction = shards[shard]
                            .as_deref_mut()
                            .and_then(|s| s.auctions.get_mut(slot))
                            .and_then(Option::as_mut);
                        (i, decide(auction, users, bid, &mut group_log))
                    })
                    .collect();
                (outcomes, group_log)
            })
            .collect();
        // A group's rows are in its bids' order, so the batch's log is each
        // outcome's rows taken from its group's log in bid order.
        let mut outcomes: Vec<Option<Outcome>> = vec![None; bids.len()];
        let mut row_source: Vec<(u32, u32)> = vec![(0, 0); bids.len()];
        let mut group_logs = Vec::with_capacity(decided.len());
        for (g, (group_outcomes, group_log)) in decided.into_iter().enumerate() {
            let mut at = 0u32;
            for (i, outcome) in group_outcomes {
                row_source[i as usize] = (g as u32, at);
                at += rows_of(&outcome);
                outcomes[i as usize] = Some(outcome);
            }
            group_logs.push(group_log);
        }
        for (outcome, &(g, at)) in outcomes.iter().zip(&row_source) {
            if let Some(outcome) = outcome {
                let at = at as usize;
                log.extend_from_slice(&group_logs[g as usize][at..at + rows_of(outcome) as usize]);
            }
        }
        // Every bid went to exactly one group: a gap would be a bug in the
        // grouping above, and must be loud rather than a shorter result.
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every bid of a batch is decided by one group"))
            .collect()
    }
}

/// Bid rows an outcome placed: none, the bid's, or the bid's and its answer's.
fn rows_of(outcome: &Outcome) -> u32 {
    match outcome {
        Outcome::Accepted(a) => 1 + u32::from(a.answer.is_some()),
        Outcome::Rejected(_) => 0,
    }
}

/// Folds every group that shares a shard with `mask` into one.
fn merge(groups: &mut Vec<u64>, mask: u64) {
    let mut merged = mask;
    groups.retain(|&g| {
        if g & mask != 0 {
            merged |= g;
            false
        } else {
            true
        }
    });
    groups.push(merged);
}
