-- One round trip per batch of bids: the ledger writer's hot path.
--
-- The writer used to send five statements per batch inside an explicit
-- transaction (lock, COPY, clear is_winning, update the auctions, commit), each a
-- round trip after which its coroutine waited its turn on a busy event loop. This
-- function does the same work in one statement, run in autocommit: take the
-- batch's place in the writer's order, lock the touched auctions in id order (the
-- fencing epoch and status checked under the lock), clear the outbid leaders,
-- insert the bids, update each auction once. It answers 'ok', 'written' (a retry
-- whose earlier attempt committed) or 'out of order: …' (nothing done: the batch
-- before it is not in the ledger); a refusal raises, so the statement rolls back
-- whole: SQLSTATE DLF01 fenced off by a newer epoch, DLC01 the ledger contradicts
-- the core. Batches that carry state changes
-- (an auction opened, extended, cancelled or ended, with statements of their own)
-- keep the multi-statement path.
--
-- The writer numbers its batches of bids (from 1 in each epoch: every start and
-- every rebuild claims a new one) and
-- sends the next one before the last has committed, so that PostgreSQL never
-- waits for Python between two batches. Batch n takes effect only right after
-- batch n - 1: its first statement waits on the progress row that n - 1 updated
-- and, should n - 1 roll back, finds it one short and writes nothing. So the
-- ledger always holds a prefix of the writer's batches, never a batch whose
-- decisions rest on one that was lost (a bidder's buying power freed by a bid in
-- n - 1 could have paid for a bid in n). The same row tells a retry after a lost
-- connection whether its COMMIT landed.
CREATE TABLE ledger_progress (
  epoch   BIGINT PRIMARY KEY,
  batches BIGINT NOT NULL CHECK (batches >= 0)  -- batches of bids committed under epoch
);

-- p_auctions: each touched auction once, in id order; a_* align with it.
-- b_*: the bids in core order (is_winning already set on each auction's last).
CREATE FUNCTION ledger_write_bids(
  p_epoch bigint, p_batch bigint, p_auctions uuid[],
  a_price numeric[], a_bid_count int[], a_bidder_count int[], a_platform_bids int[],
  a_end timestamptz[], a_seq bigint[],
  b_id uuid[], b_auction uuid[], b_user uuid[], b_amount numeric[], b_platform boolean[],
  b_winning boolean[], b_client text[], b_seq bigint[], b_extended boolean[],
  b_end timestamptz[], b_created timestamptz[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  locked record;
  found_count int := 0;
  done bigint;
BEGIN
  IF p_batch = 1 THEN  -- an epoch's first batch (every writer session has a new epoch)
    INSERT INTO ledger_progress (epoch, batches) VALUES (p_epoch, 1) ON CONFLICT (epoch) DO NOTHING;
  ELSE
    UPDATE ledger_progress SET batches = p_batch WHERE epoch = p_epoch AND batches = p_batch - 1;
  END IF;
  IF NOT FOUND THEN
    SELECT batches INTO done FROM ledger_progress WHERE epoch = p_epoch;
    IF done >= p_batch THEN
      RETURN 'written';  -- a retry: the COMMIT of the last attempt landed
    END IF;
    RETURN format('out of order: batch %s of epoch %s follows batch %s',
                  p_batch, p_epoch, coalesce(done::text, 'none'));
  END IF;

  FOR locked IN
    SELECT id, epoch, status FROM auctions WHERE id = ANY(p_auctions) ORDER BY id FOR UPDATE
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
  IF found_count <> cardinality(p_auctions) THEN
    RAISE EXCEPTION 'a bid names an auction the ledger does not hold' USING ERRCODE = 'DLC01';
  END IF;

  -- Every auction here has a new leader among these bids.
  UPDATE bids SET is_winning = false WHERE auction_id = ANY(p_auctions) AND is_winning;

  INSERT INTO bids (id, auction_id, user_id, amount, is_platform_bid, is_winning,
                    client_bid_id, seq, extended, end_time_after, created_at)
  SELECT * FROM unnest(b_id, b_auction, b_user, b_amount, b_platform, b_winning,
                       b_client, b_seq, b_extended, b_end, b_created);

  UPDATE auctions AS a
  SET current_price = v.price,
      bid_count = v.bid_count,
      bidder_count = v.bidder_count,
      ai_bids_placed = a.ai_bids_placed + v.platform_bids,
      end_time = v.end_time,
      last_seq = GREATEST(a.last_seq, v.seq),
      updated_at = now()
  FROM unnest(p_auctions, a_price, a_bid_count, a_bidder_count, a_platform_bids, a_end, a_seq)
       AS v(id, price, bid_count, bidder_count, platform_bids, end_time, seq)
  WHERE a.id = v.id;
  RETURN 'ok';
END
$$;
