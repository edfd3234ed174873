-- The public auction list (GET /api/auctions, engine/auctions.py) in the order of
-- an index, so that a page is read off the index and the walk stops at the page's
-- LIMIT: anyone may ask for it, as often as the rate limit allows, and sorting
-- every auction of a status for each page costs more as the table grows.
--
-- Its two orders: open auctions (scheduled, live) soonest end first, finished
-- ones latest end first, the id breaking ties upwards in both.
--
-- * (status, end_time, id) gives the first, read forwards. It takes the place of
--   (status, end_time), whose leading columns the scheduler's queries keep using:
--   still one index to keep up, not two.
-- * The second mixes directions (end_time DESC, id ASC), which no walk of the
--   first gives; it has its own index. Partial: only finished auctions that were
--   public (sql/0016) are in it, which is all the list reads, and not the live
--   ones, whose rows the ledger rewrites as bids move their end time (each such
--   update would write an entry here too). The list's query repeats this
--   condition word for word, so the planner may use the index in any plan.

DROP INDEX idx_auctions_status_end;
CREATE INDEX idx_auctions_status_end_id ON auctions (status, end_time, id);

CREATE INDEX idx_auctions_finished_list ON auctions (status, end_time DESC, id)
  WHERE status NOT IN ('draft', 'scheduled', 'live') AND published_at IS NOT NULL;
