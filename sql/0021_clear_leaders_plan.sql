-- ledger_clear_leaders (sql/0014) finds each auction's latest bid through
-- bids_auction_seq_key. PL/pgSQL caches a generic plan after a function's first
-- calls, and one made while `bids` holds a page or two reads the table whole and
-- sorts it: cheapest then, and kept as the table grows (until an ANALYZE), so
-- every batch pays for every bid ever written. It happens whenever the ledger's
-- first batches are small (a fresh ledger whose first writes are single bids or
-- maximums; bench/README.md, "ledger"). Without sequential scans the only cheap
-- plan is the index, on a table of any size. (Planning afresh on each call, the
-- other cure, costs more than the lookups themselves.)
ALTER FUNCTION ledger_clear_leaders(uuid[]) SET enable_seqscan = off;
