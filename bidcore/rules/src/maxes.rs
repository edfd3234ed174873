//! Maximum (proxy) bids: setting or raising one, and pre-bids resolved when
//! an auction opens (RULES.md "Maximum (proxy) bids", eBay's rule).
//!
//! On a live auction only the leader's maximum can be active: any other is at
//! or below the price, so it can never bid again (exhausted). A scheduled
//! auction keeps every bidder's pre-bid until it opens.

use crate::auction::{Auction, PreBid, Status};
use crate::decide::place_row;
use crate::money::{deposit, is_valid_amount, Kobo, Millis};
use crate::outcome::{BidRequest, MaxOutcome, MaxSet, Reason, Rejected, Rows};
use crate::user::User;

/// Decides a maximum of `max` from `user` at `at` and applies it if allowed.
pub(crate) fn decide_max(
    auction: Option<&mut Auction>,
    handle: u32,
    users: &[User],
    user: u32,
    max: Kobo,
    at: Millis,
) -> MaxOutcome {
    let request = BidRequest {
        auction: handle,
        user,
        amount: max,
        at,
        platform: false,
    };
    match check(auction, users, &request) {
        Ok(auction) => MaxOutcome::Set(apply(auction, users, &request)),
        Err(reason) => MaxOutcome::Rejected(Rejected {
            bid: request,
            reason,
        }),
    }
}

fn check<'a>(
    auction: Option<&'a mut Auction>,
    users: &[User],
    request: &BidRequest,
) -> Result<&'a mut Auction, Reason> {
    let max = request.amount;
    if !is_valid_amount(max) {
        return Err(Reason::InvalidAmount);
    }
    let auction = auction.ok_or(Reason::UnknownAuction)?;
    match auction.status {
        Status::Ended => return Err(Reason::AuctionEnded),
        Status::Cancelled => return Err(Reason::AuctionNotLive),
        Status::Live if request.at < auction.spec.start_time => return Err(Reason::AuctionNotLive),
        Status::Scheduled | Status::Live => {}
    }
    if request.at >= auction.end_time {
        return Err(Reason::AuctionEnded);
    }
    let bidder = users.get(request.user as usize);
    if let Some(user) = bidder {
        if auction.spec.sellers.contains(&user.id) {
            return Err(Reason::OwnAuction);
        }
    }
    let bidder = match bidder {
        Some(user) if user.eligible => user,
        _ => return Err(Reason::NotEligible),
    };
    // A maximum binds like a bid: it is raised, never lowered (the same is no raise).
    let (floor, own) = match auction.status {
        Status::Scheduled => {
            let own = auction.prebids.iter().find(|p| p.user == request.user);
            (auction.spec.start_price, own.map(|p| p.max))
        }
        _ => {
            let own = auction
                .lead
                .filter(|lead| lead.user == request.user)
                .and_then(|lead| lead.max);
            (auction.min_next_bid(), own)
        }
    };
    if max < floor || own.is_some_and(|own| max <= own) {
        return Err(Reason::BelowMinimum);
    }
    let here = exposed_here(auction, request.user);
    let (balance, exposure) = bidder.room(auction.spec.pool);
    let needed =
        i128::from(exposure) - i128::from(here) + i128::from(deposit(max, auction.spec.deposit_bp));
    if i128::from(balance) < needed {
        return Err(Reason::InsufficientBuyingPower);
    }
    Ok(auction)
}

/// What this auction adds to `user`'s exposure now.
pub(crate) fn exposed_here(auction: &Auction, user: u32) -> Kobo {
    let led = auction
        .lead
        .filter(|lead| lead.user == user && !lead.platform)
        .map_or(0, |lead| lead.exposed);
    let prebid = auction
        .prebid_exposure
        .filter(|&(holder, _)| holder == user)
        .map_or(0, |(_, exposed)| exposed);
    led + prebid
}

fn apply(auction: &mut Auction, users: &[User], request: &BidRequest) -> MaxSet {
    let (user, max, at) = (request.user, request.amount, request.at);
    if auction.status == Status::Scheduled {
        auction.prebids.retain(|p| p.user != user);
        auction.prebids.push(PreBid { user, max });
        expose_prebid_leader(auction, users);
        let (leader, price) = auction.prebid_outlook().expect("a pre-bid was just placed");
        return MaxSet {
            auction: request.auction,
            user,
            max,
            leading: leader == user,
            price,
            bids: Vec::new(),
            hashes: Vec::new(),
        };
    }
    let increment = auction.spec.increment;
    let mut rows = Rows::default();
    match auction.lead {
        Some(lead) if lead.user == user && !lead.platform => {
            // The leader raises its own maximum: no bid, more exposure. (A
            // platform lead's holder setting a maximum is any bidder to it.)
            let exposed = deposit(max, auction.spec.deposit_bp);
            users[user as usize].add_exposure(auction.spec.pool, exposed - lead.exposed);
            auction.lead = Some(crate::auction::Lead {
                max: Some(max),
                exposed,
                ..lead
            });
        }
        None => row(
            &mut rows,
            auction,
            users,
            request.auction,
            user,
            auction.spec.start_price,
            at,
            max,
        ),
        Some(lead) if max > lead.reach() => {
            if lead.max.is_some_and(|reach| reach > lead.amount) {
                // The leader's maximum is met in full first, then passed.
                let met = BidRequest {
                    auction: request.auction,
                    user: lead.user,
                    amount: lead.reach(),
                    at,
                    platform: false,
                };
                let placed = place_row(auction, users, &met, true, lead.max);
                rows.push(placed, auction.head);
            }
            let price = max.min(lead.reach().saturating_add(increment));
            row(
                &mut rows,
                auction,
                users,
                request.auction,
                user,
                price,
                at,
                max,
            );
        }
        Some(lead) => {
            // Not past the leader's maximum: this one places its all and is
            // answered at once (a tie goes to the maximum set earlier).
            let reach = lead.reach();
            row(
                &mut rows,
                auction,
                users,
                request.auction,
                user,
                max,
                at,
                max,
            );
            let answer = BidRequest {
                auction: request.auction,
                user: lead.user,
                amount: reach.min(max.saturating_add(increment)),
                at,
                platform: false,
            };
            let placed = place_row(auction, users, &answer, true, lead.max);
            rows.push(placed, auction.head);
        }
    }
    let lead = auction
        .lead
        .expect("a live auction with a maximum has a leader");
    MaxSet {
        auction: request.auction,
        user,
        max,
        leading: lead.user == user,
        price: lead.amount,
        bids: rows.bids,
        hashes: rows.hashes,
    }
}

/// Places a row for a maximum (at `amount`, backed by `max`) into `rows`.
#[allow(clippy::too_many_arguments)]
fn row(
    rows: &mut Rows,
    auction: &mut Auction,
    users: &[User],
    handle: u32,
    user: u32,
    amount: Kobo,
    at: Millis,
    max: Kobo,
) {
    let bid = BidRequest {
        auction: handle,
        user,
        amount,
        at,
        platform: false,
    };
    let placed = place_row(auction, users, &bid, true, Some(max));
    rows.push(placed, auction.head);
}

/// The would-be leader of a scheduled auction's pre-bids is exposed
/// `deposit(its max)`; nobody else is.
fn expose_prebid_leader(auction: &mut Auction, users: &[User]) {
    if let Some((holder, exposed)) = auction.prebid_exposure.take() {
        users[holder as usize].add_exposure(auction.spec.pool, -exposed);
    }
    if let Some(&top) = auction.ranked_prebids().first() {
        let top = auction.prebids[top];
        let exposed = deposit(top.max, auction.spec.deposit_bp);
        users[top.user as usize].add_exposure(auction.spec.pool, exposed);
        auction.prebid_exposure = Some((top.user, exposed));
    }
}

/// Releases what a scheduled auction's pre-bids add to exposure and forgets them.
pub(crate) fn drop_prebids(auction: &mut Auction, users: &[User]) {
    if let Some((holder, exposed)) = auction.prebid_exposure.take() {
        users[holder as usize].add_exposure(auction.spec.pool, -exposed);
    }
    auction.prebids.clear();
}

/// An auction just opened: its pre-bids (of bidders still eligible) resolve
/// by the same rule. One alone leads at the start price; otherwise the second
/// places its maximum and the first answers at min(its max, second + increment).
pub(crate) fn resolve_prebids(
    auction: &mut Auction,
    handle: u32,
    users: &[User],
    at: Millis,
) -> Rows {
    let ranked: Vec<PreBid> = auction
        .ranked_prebids()
        .into_iter()
        .map(|i| auction.prebids[i])
        .filter(|p| users.get(p.user as usize).is_some_and(|u| u.eligible))
        .collect();
    drop_prebids(auction, users);
    let mut rows = Rows::default();
    match ranked.as_slice() {
        [] => {}
        [only] => row(
            &mut rows,
            auction,
            users,
            handle,
            only.user,
            auction.spec.start_price,
            at,
            only.max,
        ),
        [first, second, ..] => {
            row(
                &mut rows,
                auction,
                users,
                handle,
                second.user,
                second.max,
                at,
                second.max,
            );
            let price = first
                .max
                .min(second.max.saturating_add(auction.spec.increment));
            row(
                &mut rows, auction, users, handle, first.user, price, at, first.max,
            );
        }
    }
    rows
}

/// What a restored lead adds to its leader's exposure and what pre-bids add.
pub(crate) fn restore_exposure(auction: &mut Auction, users: &[User]) {
    if let Some(lead) = auction.lead.as_mut() {
        if !lead.platform {
            lead.exposed = deposit(lead.reach(), auction.spec.deposit_bp);
            users[lead.user as usize].add_exposure(auction.spec.pool, lead.exposed);
        }
    }
    expose_prebid_leader(auction, users);
}
