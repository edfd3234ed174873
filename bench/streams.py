"""A seeded, realistic bid stream for the benchmarks, fixed before any timing.

The generator simulates a market of live auctions and bidders just far enough to
place realistic amounts: it tracks every auction's lead and every bidder's
exposure by the rules in bidcore/README.md, so each bid is aimed at (or a bit
above, or stale below) the minimum that holds when it arrives. It records the
reason it expects for every bid too (``BidStream.expected``), a third opinion
the bench compares with the core and the reference model.

With ``max_share`` above 0, that share of bidders use maximum (proxy) bids: when
one of them would bid on an auction, it may instead ask for a max there. Maxes
are set between ticks of ``MAX_TICK_BIDS`` bids (the bids of a tick go to the
core as one batch; ``BidStream.maxes`` says where each max comes), so the
leaders' maxes answer later bids inside the batches. The market follows
RULES.md's maximum bids too.

Everything is drawn from one ``random.Random(seed)`` (who uses maxes from a second,
seeded apart): the same parameters give the same stream, byte for byte, and a
stream without maxes is the one the parameters gave before maxes existed.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

#: Outcome names as bidcore/README.md orders the checks (the first failure wins).
REASONS: tuple[str, ...] = (
    "accepted",
    "invalid_amount",
    "unknown_auction",
    "auction_not_live",
    "auction_ended",
    "own_auction",
    "not_eligible",
    "already_leading",
    "below_minimum",
    "insufficient_buying_power",
)
ACCEPTED = 0
(
    INVALID_AMOUNT,
    UNKNOWN_AUCTION,
    AUCTION_NOT_LIVE,
    AUCTION_ENDED,
    OWN_AUCTION,
    NOT_ELIGIBLE,
    ALREADY_LEADING,
    BELOW_MINIMUM,
    INSUFFICIENT_BUYING_POWER,
) = range(1, len(REASONS))

NAIRA = 100  # kobo
MAX_AMOUNT_KOBO = 10**15
#: The stream's clock starts here (a Monday morning) and runs SPAN_MS.
T0_MS = int(datetime(2025, 6, 2, 9, 0, tzinfo=UTC).timestamp() * 1000)
SPAN_MS = 6 * 3_600_000
ANTI_SNIPE_WINDOW_MS = 120_000
ANTI_SNIPE_EXTENSION_MS = 120_000
DEPOSIT_PCT_BP = 2000

# The market's shape. Tuned so that about a third of the bids are refused, spread
# over every reason the core can give; see bench/README.md for the mix it yields.
AUCTION_ZIPF_S = 0.85  # popularity of auctions by rank
BIDDER_ZIPF_S = 0.6  # activity of bidders by rank
SCHEDULED_SHARE = 0.01  # auctions announced but not open yet
SCHEDULED_WEIGHT = 0.2  # ... and how much interest they draw relative to their rank
SELLER_SHARE = 0.02  # users who are dealers listing vehicles (and bidding elsewhere)
INELIGIBLE_SHARE = 0.04  # users whose KYC is not approved
INELIGIBLE_ACTIVITY = 0.5
BALANCE_MEDIAN_KOBO = 15_000_000 * NAIRA
BALANCE_SIGMA = 1.6  # natural log: wide, a few very rich dealers
SMALL_WALLET_SHARE = 0.15  # new users who funded a little, log-uniform in this range:
SMALL_WALLET_KOBO = (10_000 * NAIRA, 500_000 * NAIRA)
P_INVALID = 0.0005  # a buggy client sends amount 0
P_UNKNOWN_AUCTION = 0.004  # stale links to auctions this engine does not hold
P_UNKNOWN_USER = 0.001  # a user the engine has not loaded yet
P_SNIPE = 0.06  # aim at an auction in its last two minutes
P_OWN = 0.003  # a seller bidding on their own vehicle
P_RELEAD = 0.02  # the leader clicks again
P_STALE = 0.15  # a bid priced from a page that is a few bids old
P_RACE = 0.08  # another bidder sends the same amount at the same moment
P_LATE = 0.01  # a bid on an auction that ended moments ago
P_OVERREACH = 0.08  # a bidder who ignores the buying power the page shows
P_UNAFFORDABLE = 0.3  # no one who can afford it came along, and someone bids anyway
PICK_TRIES = 8
RESCAN_MS = 5_000  # stream time between rescans for auctions closing or just ended
MAX_TICK_BIDS = 4_096  # bids decided between two rounds of maxes (one batch)
P_MAX_FIRST = 0.5  # a max bidder's first move on an auction is a max
P_MAX_AGAIN = 0.1  # ... and a later one, once outbid there (else a plain bid)
MAX_STEPS = 8  # a max is -1 to MAX_STEPS - 2 increments above the minimum when set


@dataclass(frozen=True, slots=True)
class StreamParams:
    bids: int = 1_000_000
    auctions: int = 1_000
    bidders: int = 10_000
    seed: int = 360
    #: The share of bidders who use maximum bids (0: none, the plain stream).
    max_share: float = 0.0


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A bidder to load; its handle is its index in ``BidStream.users``."""

    user_id: int
    balance_kobo: int
    eligible: bool


@dataclass(frozen=True, slots=True)
class AuctionSpec:
    """An auction to load; its handle is its index in ``BidStream.auctions``."""

    auction_id: int
    start_time_ms: int
    end_time_ms: int
    start_price_kobo: int
    bid_increment_kobo: int
    deposit_pct_bp: int
    sellers: tuple[int, ...]
    live: bool


@dataclass(frozen=True, slots=True)
class MaxEvent:
    """A max asked for before bid ``before`` of the stream (``len(stream)``: after
    the last), with the generator's verdict (an index into REASONS)."""

    before: int
    auction: int
    user: int
    max_kobo: int
    at_ms: int
    expected: int


@dataclass(frozen=True, slots=True)
class BidStream:
    """The initial state and the bids, as plain columns of ints."""

    params: StreamParams
    users: tuple[UserSpec, ...]
    auctions: tuple[AuctionSpec, ...]
    auction: list[int]
    user: list[int]
    amount_kobo: list[int]
    at_ms: list[int]
    #: The generator's own verdict per bid, an index into REASONS.
    expected: bytes
    #: How many accepted bids it expects to extend their auction (anti-sniping).
    extensions: int
    #: The maxes, in order (none without ``max_share``).
    maxes: tuple[MaxEvent, ...] = ()

    def __len__(self) -> int:
        return len(self.auction)

    @property
    def decisions(self) -> int:
        """Bids and maxes: what the core decides."""
        return len(self.auction) + len(self.maxes)

    def mix(self) -> dict[str, int]:
        """Expected bids per outcome name, every name present."""
        return mix_of(self.expected)


def mix_of(codes: bytes) -> dict[str, int]:
    """Counts per outcome name for codes indexed into REASONS."""
    counts = Counter(codes)
    return {name: counts.get(i, 0) for i, name in enumerate(REASONS)}


def deposit(amount_kobo: int, deposit_pct_bp: int) -> int:
    return -(-amount_kobo * deposit_pct_bp // 10_000)


def increment_for(start_price_kobo: int) -> int:
    """Dealer-style increment tiers: ₦50k under ₦5M ... ₦250k from ₦25M."""
    naira = start_price_kobo // NAIRA
    for bound, step in ((5_000_000, 50_000), (10_000_000, 100_000), (18_000_000, 150_000)):
        if naira < bound:
            return step * NAIRA
    return (200_000 if naira < 25_000_000 else 250_000) * NAIRA


def _zipf_ranking(
    damping: list[float], s: float, rng: random.Random
) -> tuple[list[int], list[float]]:
    """A random ranking of the items and cumulative Zipf weights over it, each
    item's weight multiplied by its ``damping``."""
    order = list(range(len(damping)))
    rng.shuffle(order)  # popularity must not follow the handle (shards go by handle)
    weights = (damping[item] / (rank + 1) ** s for rank, item in enumerate(order))
    return order, list(accumulate(weights))


def _users(params: StreamParams, rng: random.Random) -> tuple[UserSpec, ...]:
    users = []
    for _ in range(params.bidders):
        if rng.random() < SMALL_WALLET_SHARE:
            low, high = SMALL_WALLET_KOBO
            balance = int(low * (high / low) ** rng.random())
        else:
            balance = int(rng.lognormvariate(0.0, BALANCE_SIGMA) * BALANCE_MEDIAN_KOBO)
        balance -= balance % NAIRA
        users.append(
            UserSpec(
                user_id=rng.getrandbits(128),
                balance_kobo=balance,
                eligible=rng.random() >= INELIGIBLE_SHARE,
            )
        )
    return tuple(users)


def _auctions(
    params: StreamParams, users: tuple[UserSpec, ...], rng: random.Random
) -> tuple[AuctionSpec, ...]:
    sellers = rng.sample(range(len(users)), max(1, int(len(users) * SELLER_SHARE)))
    seller_cw = list(accumulate(1.0 / (rank + 1) for rank in range(len(sellers))))
    auctions = []
    for _ in range(params.auctions):
        # Start prices ₦1M-₦40M, log-uniform, on ₦50k steps.
        price = int(1_000_000 * 40 ** rng.random()) // 50_000 * 50_000 * NAIRA
        seller = sellers[bisect(seller_cw, rng.random() * seller_cw[-1])]
        # created_by is the dealer; listed_by is sometimes a staff account the
        # engine never loads as a bidder.
        listed: tuple[int, ...] = (users[seller].user_id,)
        if rng.random() < 0.3:
            listed += (rng.getrandbits(128),)
        live = rng.random() >= SCHEDULED_SHARE
        start = T0_MS - rng.randrange(3_600_000) if live else T0_MS + SPAN_MS + 3_600_000
        end = T0_MS + int(SPAN_MS * rng.uniform(0.25, 1.1)) if live else start + SPAN_MS
        auctions.append(
            AuctionSpec(
                auction_id=rng.getrandbits(128),
                start_time_ms=start,
                end_time_ms=end,
                start_price_kobo=price,
                bid_increment_kobo=increment_for(price),
                deposit_pct_bp=DEPOSIT_PCT_BP,
                sellers=listed,
                live=live,
            )
        )
    return tuple(auctions)


class _Market:
    """The rules of bidcore/README.md over plain lists, enough to steer the stream.

    Only real bids (no platform bids), only what ``place_bid`` reads, and maxes on
    live auctions (no pre-bids).
    """

    def __init__(self, users: tuple[UserSpec, ...], auctions: tuple[AuctionSpec, ...]) -> None:
        self.balance = [u.balance_kobo for u in users]
        self.eligible = [u.eligible for u in users]
        self.exposure = [0] * len(users)
        self.live = [a.live for a in auctions]
        self.start = [a.start_time_ms for a in auctions]
        self.end = [a.end_time_ms for a in auctions]
        self.start_price = [a.start_price_kobo for a in auctions]
        self.increment = [a.bid_increment_kobo for a in auctions]
        self.bp = [a.deposit_pct_bp for a in auctions]
        handle_of = {u.user_id: h for h, u in enumerate(users)}
        self.sellers = [
            frozenset(handle_of[s] for s in a.sellers if s in handle_of) for a in auctions
        ]
        self.leader = [-1] * len(auctions)
        self.lead_amount = [0] * len(auctions)
        self.lead_max = [0] * len(auctions)  # 0: the lead has no max
        self.extensions = 0

    def min_next(self, a: int) -> int:
        if self.leader[a] < 0:
            return self.start_price[a]
        return self.lead_amount[a] + self.increment[a]

    def headroom(self, u: int) -> int:
        return self.balance[u] - self.exposure[u]

    def place(self, a: int, u: int, amount: int, now: int) -> int:
        """Decide one bid and apply it if accepted; returns its REASONS index."""
        if not 0 < amount < MAX_AMOUNT_KOBO:
            return INVALID_AMOUNT
        if not 0 <= a < len(self.live):
            return UNKNOWN_AUCTION
        if not self.live[a] or now < self.start[a]:
            return AUCTION_NOT_LIVE
        if now >= self.end[a]:
            return AUCTION_ENDED
        if u in self.sellers[a]:
            return OWN_AUCTION
        if not (0 <= u < len(self.eligible) and self.eligible[u]):
            return NOT_ELIGIBLE
        leader = self.leader[a]
        if u == leader:
            return ALREADY_LEADING
        if amount < self.min_next(a):
            return BELOW_MINIMUM
        if self.balance[u] < self.exposure[u] + deposit(amount, self.bp[a]):
            return INSUFFICIENT_BUYING_POWER
        holder_max = self.lead_max[a]
        self.row(a, u, amount, now, 0)
        if holder_max and amount <= holder_max:
            # Not past the leader's max: its proxy answers at once.
            self.row(a, leader, min(holder_max, amount + self.increment[a]), now, holder_max)
        return ACCEPTED

    def reach(self, a: int) -> int:
        return self.lead_max[a] or self.lead_amount[a]

    def row(self, a: int, u: int, amount: int, now: int, max_kobo: int) -> None:
        """Place one bid row (a bid, or one a max places) that the rules allow."""
        bp, leader = self.bp[a], self.leader[a]
        if leader >= 0:
            self.exposure[leader] -= deposit(self.reach(a), bp)
        self.exposure[u] += deposit(max_kobo or amount, bp)
        self.leader[a] = u
        self.lead_amount[a] = amount
        self.lead_max[a] = max_kobo
        if self.end[a] - now < ANTI_SNIPE_WINDOW_MS:
            self.end[a] += ANTI_SNIPE_EXTENSION_MS
            self.extensions += 1

    def set_max(self, a: int, u: int, max_kobo: int, now: int) -> int:
        """Decide one max on a live auction and apply it; returns its REASONS index."""
        if not 0 < max_kobo < MAX_AMOUNT_KOBO:
            return INVALID_AMOUNT
        if not self.live[a] or now < self.start[a]:
            return AUCTION_NOT_LIVE
        if now >= self.end[a]:
            return AUCTION_ENDED
        if u in self.sellers[a]:
            return OWN_AUCTION
        if not self.eligible[u]:
            return NOT_ELIGIBLE
        leader, bp = self.leader[a], self.bp[a]
        own = self.lead_max[a] if leader == u else 0
        if max_kobo < self.min_next(a) or (own and max_kobo <= own):
            return BELOW_MINIMUM
        here = deposit(self.reach(a), bp) if leader == u else 0
        if self.balance[u] < self.exposure[u] - here + deposit(max_kobo, bp):
            return INSUFFICIENT_BUYING_POWER
        step = self.increment[a]
        if leader == u:
            self.exposure[u] += deposit(max_kobo, bp) - here
            self.lead_max[a] = max_kobo
        elif leader < 0:
            self.row(a, u, self.start_price[a], now, max_kobo)
        elif max_kobo > self.reach(a):
            reach, holder_max = self.reach(a), self.lead_max[a]
            if holder_max > self.lead_amount[a]:
                self.row(a, leader, holder_max, now, holder_max)  # met in full
            self.row(a, u, min(max_kobo, reach + step), now, max_kobo)
        else:
            holder_max = self.lead_max[a]
            self.row(a, u, max_kobo, now, max_kobo)
            self.row(a, leader, min(holder_max, max_kobo + step), now, holder_max)
        return ACCEPTED


class _Crowd:
    """Bidders choosing where, who and how much, steered by the market's state."""

    def __init__(
        self,
        users: tuple[UserSpec, ...],
        auctions: tuple[AuctionSpec, ...],
        rng: random.Random,
        max_users: list[bool],
    ) -> None:
        self.market = _Market(users, auctions)
        self.random = rng.random
        self.max_users = max_users
        #: Maxes asked for this tick, set at its end: (auction, user, increments
        #: above the minimum then, one less than drawn: a max too low is refused).
        self.pending: list[tuple[int, int, int]] = []
        self.asked: set[tuple[int, int]] = set()  # this tick's (auction, user)
        self.tried: set[tuple[int, int]] = set()  # every (auction, user) that asked
        self.maxes: list[MaxEvent] = []
        self.auction_order, self.auction_cw = _zipf_ranking(
            [1.0 if a.live else SCHEDULED_WEIGHT for a in auctions], AUCTION_ZIPF_S, rng
        )
        self.user_order, self.user_cw = _zipf_ranking(
            [1.0 if u.eligible else INELIGIBLE_ACTIVITY for u in users], BIDDER_ZIPF_S, rng
        )
        self.closing: list[int] = []
        self.just_ended: list[int] = []
        self.auction: list[int] = []
        self.user: list[int] = []
        self.amounts: list[int] = []
        self.at: list[int] = []
        self.expected = bytearray()

    def add(self, a: int, u: int, amount: int, now: int) -> None:
        code = self.market.place(a, u, amount, now)
        self.auction.append(a)
        self.user.append(u)
        self.amounts.append(amount)
        self.at.append(now)
        self.expected.append(code)

    def rescan(self, now: int) -> None:
        """Which live auctions are in their closing minutes, or ended just now."""
        end = self.market.end
        live = [a for a, is_live in enumerate(self.market.live) if is_live]
        self.closing = [a for a in live if 0 < end[a] - now <= ANTI_SNIPE_WINDOW_MS]
        self.just_ended = [a for a in live if 0 <= now - end[a] < ANTI_SNIPE_WINDOW_MS]

    def popular_auction(self) -> int:
        cw = self.auction_cw
        return self.auction_order[bisect(cw, self.random() * cw[-1])]

    def open_auction(self, now: int) -> int:
        """A popular auction still open, or now and then one in its closing minutes."""
        if self.closing and self.random() < P_SNIPE:
            return self.closing[int(self.random() * len(self.closing))]
        for _ in range(PICK_TRIES):
            a = self.popular_auction()
            if now < self.market.end[a]:
                break
        return a

    def active_user(self, a: int) -> int:
        """An active bidder who is neither the leader nor a seller of auction a."""
        market, cw = self.market, self.user_cw
        while True:
            u = self.user_order[bisect(cw, self.random() * cw[-1])]
            if u != market.leader[a] and u not in market.sellers[a]:
                return u

    def solvent_user(self, a: int, amount: int) -> int:
        """An active bidder who can afford this bid, or -1 if none came along."""
        need = deposit(amount, DEPOSIT_PCT_BP)
        for _ in range(PICK_TRIES):
            u = self.active_user(a)
            if self.market.headroom(u) >= need:
                return u
        return -1

    def amount(self, a: int) -> int:
        """Mostly the minimum or a step above; sometimes priced from a stale page."""
        minimum, step = self.market.min_next(a), self.market.increment[a]
        if self.random() < P_STALE:
            return max(NAIRA, minimum - step * (1 + int(self.random() * 3)))
        r = self.random()
        if r < 0.6:
            return minimum
        if r < 0.9:
            return minimum + step
        if r < 0.98:
            return minimum + step * (2 + int(self.random() * 2))
        return minimum + step * (5 + int(self.random() * 6))

    def ordinary_bid(self, now: int) -> tuple[int, int, int]:
        market, r = self.market, self.random()
        if r < P_LATE:
            if self.just_ended:
                a = self.just_ended[int(self.random() * len(self.just_ended))]
                return a, self.active_user(a), self.amount(a)
            r = 1.0  # nothing has just ended: an ordinary bid instead
        for _ in range(PICK_TRIES):
            a = self.open_auction(now)
            amount = self.amount(a)
            if r < P_LATE + P_OWN and market.sellers[a]:
                return a, min(market.sellers[a]), amount
            if r < P_LATE + P_OWN + P_RELEAD and market.leader[a] >= 0:
                return a, market.leader[a], amount
            if r < P_LATE + P_OWN + P_RELEAD + P_OVERREACH:
                return a, self.active_user(a), amount
            u = self.solvent_user(a, amount)
            if u >= 0:
                return a, u, amount
            if self.random() < P_UNAFFORDABLE:
                break  # too dear for those who came along, and one of them bids anyway
        return a, self.active_user(a), amount

    def bid(self, now: int, room: int) -> int:
        """Add one bid at ``now`` (two if a race, when room allows); returns how many."""
        n_auctions, n_users = len(self.market.live), len(self.market.balance)
        r = self.random()
        if r < P_INVALID:
            a = self.open_auction(now)
            self.add(a, self.active_user(a), 0, now)
        elif r < P_INVALID + P_UNKNOWN_AUCTION:
            amount = self.amount(self.popular_auction())
            a = n_auctions + int(self.random() * max(1, n_auctions // 10))
            self.add(a, int(self.random() * n_users), amount, now)
        elif r < P_INVALID + P_UNKNOWN_AUCTION + P_UNKNOWN_USER:
            a = self.open_auction(now)
            self.add(a, n_users + int(self.random() * n_users), self.amount(a), now)
        else:
            a, u, amount = self.ordinary_bid(now)
            if self.max_users[u] and self.wants_max(a, u):
                self.pending.append((a, u, int(self.random() * MAX_STEPS) - 1))
                self.asked.add((a, u))
                self.tried.add((a, u))
                return 0
            self.add(a, u, amount, now)
            if room > 1 and self.random() < P_RACE:
                # Someone else saw the same page and sent the same amount.
                self.add(a, self.active_user(a), amount, now)
                return 2
        return 1

    def wants_max(self, a: int, u: int) -> bool:
        """A max bidder asks for a max (once a tick per auction) rather than bid."""
        if not self.market.live[a] or (a, u) in self.asked:
            return False  # no pre-bids in the stream
        return self.random() < (P_MAX_AGAIN if (a, u) in self.tried else P_MAX_FIRST)

    def set_maxes(self, before: int, now: int) -> None:
        """The tick is over: the maxes asked for in it are set, in order."""
        market = self.market
        for a, u, steps in self.pending:
            max_kobo = market.min_next(a) + steps * market.increment[a]
            code = market.set_max(a, u, max_kobo, now)
            self.maxes.append(MaxEvent(before, a, u, max_kobo, now, code))
        self.pending.clear()
        self.asked.clear()


def _max_users(params: StreamParams) -> list[bool]:
    """Who uses maxes: drawn apart from the market, so that the rest of the stream
    starts out as the plain one does."""
    if params.max_share <= 0:
        return [False] * params.bidders
    rng = random.Random(f"{params.seed}/maxes")
    return [rng.random() < params.max_share for _ in range(params.bidders)]


def generate(params: StreamParams) -> BidStream:
    """The stream for these parameters: the same every time."""
    if params.bids < 1 or params.auctions < 1 or params.bidders < 2:
        raise ValueError("a stream needs at least 1 bid, 1 auction and 2 bidders")
    rng = random.Random(params.seed)
    users = _users(params, rng)
    auctions = _auctions(params, users, rng)
    crowd = _Crowd(users, auctions, rng, _max_users(params))
    i, rescan_at, tick_at = 0, T0_MS, MAX_TICK_BIDS
    while i < params.bids:
        now = T0_MS + i * SPAN_MS // params.bids
        if i >= tick_at:
            crowd.set_maxes(i, now)
            tick_at += MAX_TICK_BIDS
        if now >= rescan_at:
            crowd.rescan(now)
            rescan_at = now + RESCAN_MS
        i += crowd.bid(now, params.bids - i)
    crowd.set_maxes(params.bids, T0_MS + params.bids * SPAN_MS // params.bids)
    return BidStream(
        params=params,
        users=users,
        auctions=auctions,
        auction=crowd.auction,
        user=crowd.user,
        amount_kobo=crowd.amounts,
        at_ms=crowd.at,
        expected=bytes(crowd.expected),
        extensions=crowd.market.extensions,
        maxes=tuple(crowd.maxes),
    )
