-- Less work per batch of bids (bench ledger, 200 auctions, a batch of 500 bids
-- touching every auction: PostgreSQL's time in ledger_write_bids 15.1 ms -> 8.7 ms
-- from the storage changes below, 7.9-8.4 ms with the rest; bench/README.md).
--
-- Every batch rewrites each touched auction row and clears `is_winning` on
-- each outbid leader. Both were updates that wrote a new entry into every
-- index of the table (7 on auctions, 5 on bids): the pages had no room for the
-- new row version, and `is_winning` was itself indexed (idx_bids_winning's
-- predicate), which rules out a heap-only (HOT) update. Now:
--
-- * auctions keep half of each page free: one row per auction, rewritten by
--   every batch that bids on it, so a new version fits beside the old one;
-- * bids keep 30 % free: most bids lead for a while and are updated exactly
--   once, when outbid; a batch outbids up to one leader per auction, and the
--   leaders of the last batch share its few pages;
-- * the leader of an auction is found as its latest bid (bids only ever go up,
--   so the leader is always the bid with the highest seq: the (auction_id, seq)
--   key finds it with one index descent), so idx_bids_winning goes;
-- * idx_bids_amount (auction_id, amount DESC) goes for the reason of sql/0013: an
--   accepted bid always tops the one before it, so within an auction amount
--   grows with seq and (auction_id, seq) gives the same order; one index entry
--   fewer per inserted bid.
--
-- The settings apply to pages written from now on (an existing table keeps its
-- packed pages until rewritten, e.g. by VACUUM FULL).
ALTER TABLE auctions SET (fillfactor = 50);
ALTER TABLE bids SET (fillfactor = 70);
DROP INDEX idx_bids_winning;
DROP INDEX idx_bids_amount;

-- Clear `is_winning` on the current leader of each auction in p_auctions, before
-- a batch that outbids it is inserted. The caller holds these auctions' rows
-- FOR UPDATE, and only a writer holding them changes their bids, so the row
-- versions found here are the ones updated (hence ctid: no second index lookup).
CREATE FUNCTION ledger_clear_leaders(p_auctions uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  leaders tid[];
BEGIN
  SELECT array_agg(latest.ctid) INTO leaders
  FROM unnest(p_auctions) AS a(id)
  CROSS JOIN LATERAL (
    SELECT b.ctid, b.is_winning FROM bids b WHERE b.auction_id = a.id ORDER BY b.seq DESC LIMIT 1
  ) AS latest
  WHERE latest.is_winning;
  UPDATE bids SET is_winning = false WHERE ctid = ANY(leaders);
END
$$;

-- sql/0012's batch function, with four changes (each measured by bench ledger):
-- * a batch that arrives a moment before its predecessor waits for it (below);
-- * the leaders are cleared by ledger_clear_leaders;
-- * money and instants arrive as the engine holds them (integer kobo, integer
--   milliseconds since the epoch) and are converted here, exactly: kobo * 0.01
--   is numeric arithmetic, and an interval of 1 ms times a whole number of ms is
--   exact while the microseconds fit a double's 53 bits (until the year 2255).
--   A Decimal and two datetimes per bid cost the writer's event loop more than
--   the conversion costs PostgreSQL;
-- * the bids and the auctions arrive as one array of rows each, not one array
--   per column: the driver checks every element of an array it encodes, so 11
--   arrays of 500 cost more than 500 rows of 11 fields, on both sides.
CREATE TYPE ledger_bid AS (
  id uuid, auction_id uuid, user_id uuid, amount_kobo bigint, is_platform_bid boolean,
  is_winning boolean, client_bid_id text, seq bigint, extended boolean, end_time_ms bigint,
  created_ms bigint
);
CREATE TYPE ledger_auction AS (  -- an auction's state after the batch
  id uuid, price_kobo bigint, bid_count int, bidder_count int, platform_bids int,
  end_time_ms bigint, seq bigint
);
DROP FUNCTION ledger_write_bids(bigint, bigint, uuid[], numeric[], int[], int[], int[],
  timestamptz[], bigint[], uuid[], uuid[], uuid[], numeric[], boolean[], boolean[], text[],
  bigint[], boolean[], timestamptz[], timestamptz[]);

-- p_auctions: each touched auction once, in id order. p_bids: in core order
-- (is_winning already set on each auction's last).
CREATE FUNCTION ledger_write_bids(
  p_epoch bigint, p_batch bigint, p_auctions ledger_auction[], p_bids ledger_bid[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  auction_ids uuid[] := ARRAY(SELECT a.id FROM unnest(p_auctions) AS a);
  locked record;
  found_count int := 0;
  done bigint;
  ARRIVAL_TRIES CONSTANT int := 50;  -- 1 ms apart
BEGIN
  -- Take this batch's place right after batch p_batch - 1: wait for it while it
  -- runs (its update holds the progress row). It may not have reached the
  -- database yet: the writer sends the next batch while one runs, each on a
  -- connection of its own, and a connection's first statement is prepared first;
  -- look again shortly rather than turn this one away (the writer would stop
  -- taking bids while it sends it again).
  FOR attempt IN 1..ARRIVAL_TRIES LOOP
    IF p_batch = 1 THEN  -- an epoch's first batch (every writer session has a new epoch)
      INSERT INTO ledger_progress (epoch, batches) VALUES (p_epoch, 1)
      ON CONFLICT (epoch) DO NOTHING;
    ELSE
      UPDATE ledger_progress SET batches = p_batch WHERE epoch = p_epoch AND batches = p_batch - 1;
    END IF;
    EXIT WHEN FOUND;
    SELECT batches INTO done FROM ledger_progress WHERE epoch = p_epoch;
    IF done >= p_batch THEN
      RETURN 'written';  -- a retry: the COMMIT of the last attempt landed
    END IF;
    IF done IS DISTINCT FROM p_batch - 2 OR attempt = ARRIVAL_TRIES THEN
      RETURN format('out of order: batch %s of epoch %s follows batch %s',
                    p_batch, p_epoch, coalesce(done::text, 'none'));
    END IF;
    PERFORM pg_sleep(0.001);
  END LOOP;

  FOR locked IN
    SELECT id, epoch, status FROM auctions WHERE id = ANY(auction_ids) ORDER BY id FOR UPDATE
  LOOP
    found_count := found_count + 1;
    IF locked.epoch <> p_epoch THEN
      RAISE EXCEPTION 'auction % belongs to epoch %, not %', locked.id, locked.epoch, p_epoch
        USING ERRCODE = 'DLF01';
    END IF;
    IF locked.status NOT IN ('scheduled', 'live') THEN
      RAISE EXCEPTION 'auction % is % in the ledger', locked.id, locked.status
        USING ERRCODE = 'DLC01';
    END IF;
  END LOOP;
  IF found_count <> cardinality(auction_ids) THEN
    RAISE EXCEPTION 'a bid names an auction the ledger does not hold' USING ERRCODE = 'DLC01';
  END IF;

  -- Every auction here has a new leader among these bids.
  PERFORM ledger_clear_leaders(auction_ids);

  INSERT INTO bids (id, auction_id, user_id, amount, is_platform_bid, is_winning,
                    client_bid_id, seq, extended, end_time_after, created_at)
  SELECT b.id, b.auction_id, b.user_id, b.amount_kobo * 0.01, b.is_platform_bid, b.is_winning,
         b.client_bid_id, b.seq, b.extended,
         timestamptz 'epoch' + b.end_time_ms * interval '1 ms',
         timestamptz 'epoch' + b.created_ms * interval '1 ms'
  FROM unnest(p_bids) AS b;

  UPDATE auctions AS a
  SET current_price = v.price_kobo * 0.01,
      bid_count = v.bid_count,
      bidder_count = v.bidder_count,
      ai_bids_placed = a.ai_bids_placed + v.platform_bids,
      end_time = timestamptz 'epoch' + v.end_time_ms * interval '1 ms',
      last_seq = GREATEST(a.last_seq, v.seq),
      updated_at = now()
  FROM unnest(p_auctions) AS v
  WHERE a.id = v.id;
  RETURN 'ok';
END
$$;
