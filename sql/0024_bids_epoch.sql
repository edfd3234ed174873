-- Each bid row records the fencing epoch it was written under: the writer's,
-- equal to its auction's at that moment (checked under the auction's row lock).
-- Who wrote which of an auction's bids is then readable from the ledger: claims
-- take ever larger epochs (engine_epoch_seq), so along an auction's seqs the
-- epochs never go back unless two owners took turns (tests/test_cluster.py
-- checks they never do). Rows written before this migration, and the per-bid
-- measurement ledger's (LEDGER_MODE=baseline), carry NULL.
ALTER TABLE bids ADD COLUMN epoch BIGINT;

-- sql/0019's batch of bids alone, writing the epoch too.
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
                    client_bid_id, seq, extended, end_time_after, created_at, is_proxy, epoch)
  SELECT b.id, b.auction_id, b.user_id, b.amount_kobo * 0.01, b.is_platform_bid, b.is_winning,
         b.client_bid_id, b.seq, b.extended,
         timestamptz 'epoch' + b.end_time_ms * interval '1 ms',
         timestamptz 'epoch' + b.created_ms * interval '1 ms',
         coalesce(b.is_proxy, false), p_epoch
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
