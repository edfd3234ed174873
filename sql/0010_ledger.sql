-- The write-behind ledger's own needs.

-- Each engine start takes a new fencing epoch and stamps it on the auctions it
-- owns; a batch from an older epoch finds a newer stamp and is refused.
CREATE SEQUENCE engine_epoch_seq;

-- The leading bid of each auction carries is_winning (the seed's column); each
-- batch clears it on the bids it outbids, found through this index.
CREATE INDEX idx_bids_winning ON bids(auction_id) WHERE is_winning;
