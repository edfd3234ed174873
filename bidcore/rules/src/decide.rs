//! The rules of one bid, in RULES.md's order: the first failure is the reason.

use crate::auction::{Auction, Lead, Status};
use crate::bidlog::{bid_hash, LogEntry, LogHash};
use crate::money::{deposit, is_valid_amount, Kobo, Millis, MAX_TIME_MS};
use crate::outcome::{Accepted, BidRequest, Outbid, Outcome, Reason, Rejected};
use crate::user::User;

/// Decides `bid` against `auction` (None when no such auction is loaded) and,
/// if it is accepted, applies it — with the leader's proxy answer when the bid
/// does not pass the leader's maximum. A rejected bid changes nothing; an
/// accepted one appends its rows' hashes to `log` (the bid's, then the answer's).
pub(crate) fn decide(
    auction: Option<&mut Auction>,
    users: &[User],
    bid: &BidRequest,
    log: &mut Vec<LogHash>,
) -> Outcome {
    match check(auction, users, bid) {
        Ok(auction) => Outcome::Accepted(accept(auction, users, bid, log)),
        Err(reason) => Outcome::Rejected(Rejected { bid: *bid, reason }),
    }
}

fn check<'a>(
    auction: Option<&'a mut Auction>,
    users: &[User],
    bid: &BidRequest,
) -> Result<&'a mut Auction, Reason> {
    if !is_valid_amount(bid.amount) {
        return Err(Reason::InvalidAmount);
    }
    let auction = auction.ok_or(Reason::UnknownAuction)?;
    if auction.status == Status::Ended {
        // Closed, whatever the clock says (a forced end comes before end_time).
        return Err(Reason::AuctionEnded);
    }
    if auction.status != Status::Live || bid.at < auction.spec.start_time {
        return Err(Reason::AuctionNotLive);
    }
    if bid.at >= auction.end_time {
        return Err(Reason::AuctionEnded);
    }
    let bidder = users.get(bid.user as usize);
    if let Some(user) = bidder {
        if auction.spec.sellers.contains(&user.id) {
            return Err(Reason::OwnAuction);
        }
    }
    let bidder = match bidder {
        Some(user) if user.eligible => user,
        _ => return Err(Reason::NotEligible),
    };
    if auction.lead.is_some_and(|lead| lead.user == bid.user) {
        return Err(Reason::AlreadyLeading);
    }
    if bid.amount < auction.min_next_bid() {
        return Err(Reason::BelowMinimum);
    }
    if !bid.platform {
        // The bidder leads nothing here (rule 6), so all of its exposure is elsewhere.
        let (balance, exposure) = bidder.room(auction.spec.pool);
        let needed =
            i128::from(exposure) + i128::from(deposit(bid.amount, auction.spec.deposit_bp));
        if i128::from(balance) < needed {
            return Err(Reason::InsufficientBuyingPower);
        }
    }
    Ok(auction)
}

fn accept(
    auction: &mut Auction,
    users: &[User],
    bid: &BidRequest,
    log: &mut Vec<LogHash>,
) -> Accepted {
    let holder_max = auction
        .lead
        .and_then(|lead| lead.max.map(|max| (lead.user, max)));
    let mut accepted = place_row(auction, users, bid, false, None);
    log.push(auction.head);
    // A maximum the bid did not pass answers it at once: min(max, bid + increment),
    // which may equal the bid (the earlier maximum wins a tie).
    if let Some((holder, max)) = holder_max {
        if bid.amount <= max {
            let amount = max.min(bid.amount.saturating_add(auction.spec.increment));
            let answer = BidRequest {
                auction: bid.auction,
                user: holder,
                amount,
                at: bid.at,
                platform: false,
            };
            accepted.answer = Some(Box::new(place_row(
                auction,
                users,
                &answer,
                true,
                Some(max),
            )));
            log.push(auction.head);
        }
    }
    accepted
}

/// Places one bid row that the rules allow (or that a maximum places): it
/// leads, the previous lead's exposure is released, the counts, the bidder's
/// number, the anti-sniping extension and `seq` move. `max` is the new
/// leader's active maximum, if any. The row's hash is the auction's `head`
/// after it.
#[inline]
pub(crate) fn place_row(
    auction: &mut Auction,
    users: &[User],
    bid: &BidRequest,
    is_proxy: bool,
    max: Option<Kobo>,
) -> Accepted {
    let exposed = if bid.platform {
        0
    } else {
        deposit(max.unwrap_or(bid.amount), auction.spec.deposit_bp)
    };
    let previous = auction.lead.replace(Lead {
        user: bid.user,
        amount: bid.amount,
        platform: bid.platform,
        max,
        exposed,
    });
    if let Some(previous) = previous {
        release(users, &previous, auction.spec.pool);
    }
    if let Some(bidder) = users.get(bid.user as usize) {
        bidder.add_exposure(auction.spec.pool, exposed);
    }

    auction.bid_count += 1;
    let bidder_number = if bid.platform {
        auction.platform_bid_count += 1;
        0
    } else {
        auction.number_bidder(bid.user)
    };
    let extended = extend_if_sniped(auction, bid.at);
    auction.seq += 1;
    let entry = LogEntry {
        seq: auction.seq,
        number: bidder_number,
        amount: bid.amount,
        at: bid.at,
        platform: bid.platform,
        proxy: is_proxy,
    };
    auction.head = bid_hash(&auction.log_header, &entry, &auction.head);
    Accepted {
        bid: *bid,
        is_proxy,
        seq: auction.seq,
        end_time: auction.end_time,
        extended,
        min_next_bid: auction.min_next_bid(),
        bid_count: auction.bid_count,
        bidder_count: auction.bidders.len() as u32,
        bidder_number,
        deposit: exposed,
        previous: previous.map(|lead| Outbid {
            user: lead.user,
            amount: lead.amount,
            platform: lead.platform,
        }),
        answer: None,
    }
}

/// Anti-sniping: a bid within the window before the end moves the end later.
fn extend_if_sniped(auction: &mut Auction, at: Millis) -> bool {
    let extended = auction.end_time.saturating_sub(at) < auction.spec.snipe_window;
    if extended {
        auction.end_time = auction
            .end_time
            .saturating_add(auction.spec.snipe_extension)
            .min(MAX_TIME_MS);
    }
    extended
}

/// Takes a lead's deposit off its holder's exposure (in the auction's `pool`).
pub(crate) fn release(users: &[User], lead: &Lead, pool: Option<u32>) {
    if lead.exposed != 0 {
        if let Some(holder) = users.get(lead.user as usize) {
            holder.add_exposure(pool, -lead.exposed);
        }
    }
}
