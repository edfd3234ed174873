-- Batch n + 1 waits for batch n on its lock instead of looking again every
-- millisecond, so the writer can send it while n runs and PostgreSQL starts it
-- the moment n commits.
--
-- sql/0014's ledger_write_bids took its place with
--   UPDATE ledger_progress SET batches = n + 1 WHERE epoch = e AND batches = n
-- but an UPDATE waits only on a row that matches in its snapshot, and while n
-- runs the committed row still says n - 1: the successor slept and looked again
-- (pg_sleep(0.001) wakes every ~2 ms here), starting up to 2 ms after n's COMMIT.
-- And if n committed between that UPDATE and the second look, the successor read
-- "n" there and turned itself away as out of order (the writer stalled and
-- retried it).
--
-- Now the successor locks the progress row (FOR NO KEY UPDATE: batch n's update
-- holds it until n commits) and reads it under the lock: it is its turn if the
-- row says n. If it says n - 1, n has not reached the database yet (each batch
-- goes on its own connection); the subtransaction that took the lock is undone,
-- so that n can take the row, and the successor looks again shortly.

-- NULL: batch p_batch of epoch p_epoch holds its place, right after p_batch - 1
-- (the progress row is updated, and locked until this transaction ends).
-- Otherwise the batch's answer: 'written' (a retry whose COMMIT landed) or why it
-- is out of order.
CREATE FUNCTION ledger_take_turn(p_epoch bigint, p_batch bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  done bigint;
  ARRIVAL_TRIES CONSTANT int := 50;  -- 1 ms apart (2 ms: the sleep's granularity)
BEGIN
  FOR attempt IN 1..ARRIVAL_TRIES LOOP
    IF p_batch = 1 THEN  -- an epoch's first batch (every writer session has a new epoch)
      INSERT INTO ledger_progress (epoch, batches) VALUES (p_epoch, 1)
      ON CONFLICT (epoch) DO NOTHING;
      IF FOUND THEN
        RETURN NULL;
      END IF;
      SELECT batches INTO done FROM ledger_progress WHERE epoch = p_epoch;
    ELSE
      BEGIN
        -- Waits here while the batch ahead runs: its update holds this row.
        SELECT batches INTO done FROM ledger_progress WHERE epoch = p_epoch FOR NO KEY UPDATE;
        IF done = p_batch - 1 THEN
          UPDATE ledger_progress SET batches = p_batch WHERE epoch = p_epoch;
          RETURN NULL;
        END IF;
        RAISE SQLSTATE 'DLT01';  -- not this batch's turn: let go of the row
      EXCEPTION WHEN SQLSTATE 'DLT01' THEN
        NULL;
      END;
    END IF;
    IF done >= p_batch THEN
      RETURN 'written';  -- a retry: the COMMIT of the last attempt landed
    END IF;
    IF done IS DISTINCT FROM p_batch - 2 OR attempt = ARRIVAL_TRIES THEN
      RETURN format('out of order: batch %s of epoch %s follows batch %s',
                    p_batch, p_epoch, coalesce(done::text, 'none'));
    END IF;
    PERFORM pg_sleep(0.001);  -- the batch ahead is on its way
  END LOOP;
END
$$;

-- sql/0014's function, taking its turn by ledger_take_turn.
CREATE OR REPLACE FUNCTION ledger_write_bids(
  p_epoch bigint, p_batch bigint, p_auctions ledger_auction[], p_bids ledger_bid[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  auction_ids uuid[] := ARRAY(SELECT a.id FROM unnest(p_auctions) AS a);
  locked record;
  found_count int := 0;
  verdict text;
BEGIN
  verdict := ledger_take_turn(p_epoch, p_batch);
  IF verdict IS NOT NULL THEN
    RETURN verdict;
  END IF;

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



