-- One round trip per batch of bids: the ledger writer's hot path.
--
-- The writer used to send five statements per batch inside an explicit
-- transaction (lock, COPY, clear is_winning, update the auctions, commit), each a
-- round trip after which its coroutine waited its turn on a busy event loop. This
-- function does the same work in one statement, run in autocommit: lock the
-- touched auctions in id order (the fencing epoch and status checked under the
-- lock), find out whether a retried batch already landed, clear the outbid
-- leaders, insert the bids, update each auction once. Nothing is written before
-- every check has passed; a refusal is returned as text ('fenced: …' or
-- 'conflict: …') and the writer raises it. Batches that carry state changes (an
-- auction opened, extended, cancelled or ended, with their own statements) keep
-- the multi-statement path.
--
-- p_auctions: each touched auction once, in id order; a_* align with it.
-- b_*: the bids in core order (is_winning already set on each auction's last).
CREATE FUNCTION ledger_write_bids(
  p_epoch bigint, p_retry boolean, p_auctions uuid[],
  a_price numeric[], a_bid_count int[], a_bidder_count int[], a_platform_bids int[],
  a_end timestamptz[], a_seq bigint[],
  b_id uuid[], b_auction uuid[], b_user uuid[], b_amount numeric[], b_platform boolean[],
  b_winning boolean[], b_client text[], b_seq bigint[], b_extended boolean[],
  b_end timestamptz[], b_created timestamptz[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  locked record;
  found_count int := 0;
  written int;
BEGIN
  FOR locked IN
    SELECT id, epoch, status FROM auctions WHERE id = ANY(p_auctions) ORDER BY id FOR UPDATE
  LOOP
    found_count := found_count + 1;
    IF locked.epoch <> p_epoch THEN
      RETURN format('fenced: auction %s belongs to epoch %s, not %s',
                    locked.id, locked.epoch, p_epoch);
    END IF;
    IF locked.status NOT IN ('scheduled', 'live') THEN
      RETURN format('conflict: auction %s is %s in the ledger', locked.id, locked.status);
    END IF;
  END LOOP;
  IF found_count <> cardinality(p_auctions) THEN
    RETURN 'conflict: a bid names an auction the ledger does not hold';
  END IF;

  IF p_retry THEN  -- after a lost connection the last attempt may have committed
    SELECT count(*) INTO written FROM bids WHERE id = ANY(b_id);
    IF written = cardinality(b_id) THEN
      RETURN 'written';
    ELSIF written > 0 THEN
      RETURN format('conflict: %s of %s bids of one batch are already written',
                    written, cardinality(b_id));
    END IF;
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
