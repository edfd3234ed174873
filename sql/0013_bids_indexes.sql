-- Two of the seed's indexes on bids repeat what the engine's (auction_id, seq)
-- unique constraint (bids_auction_seq_key, 0001) already gives: every query of
-- an auction's bids (its history, newest first, its leader, its bidders) reads
-- them by auction in seq order, and within an auction seq grows with created_at.
-- Each index costs every inserted bid an index entry and its WAL; the ledger
-- writes bids in batches of up to a thousand, one batch at a time.
DROP INDEX idx_bids_auction;          -- (auction_id): a prefix of (auction_id, seq)
DROP INDEX idx_bids_auction_created;  -- (auction_id, created_at): the same order as seq
