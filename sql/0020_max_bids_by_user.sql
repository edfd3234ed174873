-- A bidder's own auctions (GET /api/me/bids, engine/standing.py) are found from
-- their bids (idx_bids_user, 0001) and their maximums: a pre-bid places no bid
-- row until its auction opens. max_bids is otherwise read by auction (0019), so
-- without this a caller's list would read every maximum of every bidder.
CREATE INDEX idx_max_bids_user ON max_bids (user_id, auction_id);
