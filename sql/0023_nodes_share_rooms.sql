-- Whether a node fans room events out through Redis (REDIS_URL set). Several
-- nodes need every one of them to: a node without Redis serves only the events
-- of the auctions it decides, so a watcher on it would miss the others'. A node
-- refuses to start beside a live node when either of them lacks Redis
-- (engine/membership.py).
ALTER TABLE nodes ADD COLUMN shares_rooms BOOLEAN NOT NULL DEFAULT false;
