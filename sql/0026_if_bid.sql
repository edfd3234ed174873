-- The if-bid (RULES.md "If-bid: the seller's decision below the reserve"): an
-- auction with a reserve whose top real bid at the end is below it goes to
-- `seller_decision` on that bid instead of `unsold`. The seller accepts,
-- declines or counters; the high bidder answers a counter; at most 3 counters;
-- no answer in time is `unsold` (jobs/ifbid.py). engine/ifbid.py writes these
-- rows, each step under the auction's row lock, with its audit row and notices.

ALTER TABLE auctions
  DROP CONSTRAINT auctions_status_valid,
  ADD CONSTRAINT auctions_status_valid CHECK (status IN (
    'draft','scheduled','live','ended','seller_decision','pending_settlement',
    'settled','unsold','cancelled','relisted'
  ));

-- Per-auction windows (API.md "Creating an auction"): 24 h for the seller's
-- decision, 4 h for each answer to a counter.
ALTER TABLE auctions
  ADD COLUMN if_bid_window_ms BIGINT NOT NULL DEFAULT 86400000
    CONSTRAINT auctions_if_bid_window_positive CHECK (if_bid_window_ms > 0),
  ADD COLUMN counter_window_ms BIGINT NOT NULL DEFAULT 14400000
    CONSTRAINT auctions_counter_window_positive CHECK (counter_window_ms > 0);

CREATE TABLE if_bids (
  auction_id     UUID PRIMARY KEY REFERENCES auctions (id),
  bidder_id      UUID NOT NULL REFERENCES users (id),   -- the top real bidder at the end
  high_bid       DECIMAL(15,2) NOT NULL,                -- their top bid at the end
  reserve_price  DECIMAL(15,2) NOT NULL,
  -- What the bidder is bound to: the high bid, or their own latest counter. Their
  -- buying power stays exposed deposit(bidder_amount) while the decision is open.
  bidder_amount  DECIMAL(15,2) NOT NULL,
  seller_amount  DECIMAL(15,2),                         -- the seller's latest counter
  state          VARCHAR(10) NOT NULL DEFAULT 'open'
                 CONSTRAINT if_bids_state_valid
                 CHECK (state IN ('open','accepted','declined','expired')),
  turn           VARCHAR(6) CONSTRAINT if_bids_turn_valid CHECK (turn IN ('seller','bidder')),
  deadline       TIMESTAMPTZ NOT NULL,                  -- of the turn (the last one once decided)
  counters       INT NOT NULL DEFAULT 0
                 CONSTRAINT if_bids_counters_range CHECK (counters BETWEEN 0 AND 3),
  final_amount   DECIMAL(15,2),                         -- the price, once accepted
  opened_at      TIMESTAMPTZ NOT NULL,
  decided_at     TIMESTAMPTZ,
  CONSTRAINT if_bids_below_reserve CHECK (0 < high_bid AND high_bid < reserve_price),
  CONSTRAINT if_bids_bidder_amount_range
    CHECK (high_bid <= bidder_amount AND bidder_amount < reserve_price),
  CONSTRAINT if_bids_seller_amount_range
    CHECK (seller_amount IS NULL OR (high_bid < seller_amount AND seller_amount < reserve_price)),
  -- Someone's turn exactly while it is open; a price exactly once accepted.
  CONSTRAINT if_bids_turn_while_open CHECK ((state = 'open') = (turn IS NOT NULL)),
  CONSTRAINT if_bids_price_once_accepted
    CHECK ((state = 'accepted') = (final_amount IS NOT NULL))
);

-- The expiry sweep's query, and a bidder's open decisions (their exposure).
CREATE INDEX if_bids_open_deadline ON if_bids (deadline) WHERE state = 'open';
CREATE INDEX if_bids_open_bidder ON if_bids (bidder_id) WHERE state = 'open';

-- Every counter, in order: who made it, for how much, when (the engine's clock).
CREATE TABLE if_bid_offers (
  auction_id  UUID NOT NULL REFERENCES if_bids (auction_id),
  position    INT NOT NULL CONSTRAINT if_bid_offers_position_range CHECK (position BETWEEN 1 AND 3),
  by_party    VARCHAR(6) NOT NULL CONSTRAINT if_bid_offers_by_valid
              CHECK (by_party IN ('seller','bidder')),
  amount      DECIMAL(15,2) NOT NULL CONSTRAINT if_bid_offers_amount_positive CHECK (amount > 0),
  actor_id    UUID NOT NULL REFERENCES users (id),     -- the seller, a manager for them, or the bidder
  made_at     TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (auction_id, position)
);

-- A seller's auctions (GET /api/me/auctions): the ones they created, and those of
-- vehicles they listed or own.
CREATE INDEX idx_auctions_created_by ON auctions (created_by);
CREATE INDEX idx_vehicles_listed_by ON vehicles (listed_by);
