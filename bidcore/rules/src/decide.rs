//! The rules of one bid, in RULES.md's order: the first failure is the reason.

use crate::auction::{Auction, Lead, Status};
use crate::money::{deposit, is_valid_amount, MAX_TIME_MS};
use crate::outcome::{Accepted, BidRequest, Outcome, Reason, Rejected};
use crate::user::User;

/// Decides `bid` against `auction` (None when no such auction is loaded) and,
/// if it is accepted, applies it. A rejected bid changes nothing.
pub(crate) fn decide(auction: Option<&mut Auction>, users: &[User], bid: &BidRequest) -> Outcome {
    match check(auction, users, bid) {
        Ok((auction, bidder)) => Outcome::Accepted(accept(auction, users, bidder, bid)),
        Err(reason) => Outcome::Rejected(Rejected { bid: *bid, reason }),
    }
}

fn check<'a, 'u>(
    auction: Option<&'a mut Auction>,
    users: &'u [User],
    bid: &BidRequest,
) -> Result<(&'a mut Auction, &'u User), Reason> {
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
        let needed = i128::from(bidder.exposure())
            + i128::from(deposit(bid.amount, auction.spec.deposit_bp));
        if i128::from(bidder.balance) < needed {
            return Err(Reason::InsufficientBuyingPower);
        }
    }
    Ok((auction, bidder))
}

fn accept(auction: &mut Auction, users: &[User], bidder: &User, bid: &BidRequest) -> Accepted {
    let exposed = if bid.platform {
        0
    } else {
        deposit(bid.amount, auction.spec.deposit_bp)
    };
    let previous = auction.lead.replace(Lead {
        user: bid.user,
        amount: bid.amount,
        platform: bid.platform,
        exposed,
    });
    if let Some(previous) = previous {
        release(users, &previous);
    }
    bidder.add_exposure(exposed);

    auction.bid_count += 1;
    let bidder_number = if bid.platform {
        auction.platform_bid_count += 1;
        0
    } else {
        auction.number_bidder(bid.user)
    };
    let extended = auction.end_time.saturating_sub(bid.at) < auction.spec.snipe_window;
    if extended {
        auction.end_time = auction
            .end_time
            .saturating_add(auction.spec.snipe_extension)
            .min(MAX_TIME_MS);
    }
    auction.seq += 1;
    Accepted {
        bid: *bid,
        seq: auction.seq,
        end_time: auction.end_time,
        extended,
        min_next_bid: auction.min_next_bid(),
        bid_count: auction.bid_count,
        bidder_count: auction.bidders.len() as u32,
        bidder_number,
        deposit: exposed,
        previous,
    }
}

/// Takes a lead's deposit off its holder's exposure.
pub(crate) fn release(users: &[User], lead: &Lead) {
    if lead.exposed != 0 {
        if let Some(holder) = users.get(lead.user as usize) {
            holder.add_exposure(-lead.exposed);
        }
    }
}
