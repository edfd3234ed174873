-- Maximum (proxy) bids (RULES.md "Maximum (proxy) bids").
--
-- * max_bids: every maximum a bidder set or raised, in the order the core
--   decided them (`position`): the latest row of a bidder is their maximum.
--   Recovery rebuilds from it the leader's active maximum (the leader's latest
--   maximum, where it is not below the leading amount) and a scheduled
--   auction's pre-bids (each bidder's latest, in the order they were set).
--   client_bid_id makes a maximum idempotent per bidder; bids and maxima share
--   one namespace, which the engine keeps (a bid's id found here, or the
--   reverse, answers with the first outcome).
-- * bids.is_proxy: a row the engine placed for a maximum.
-- * The batch function takes is_proxy with each bid (sql/0015's body otherwise).
CREATE TABLE max_bids (
  id              UUID PRIMARY KEY,
  auction_id      UUID NOT NULL REFERENCES auctions(id),
  user_id         UUID NOT NULL REFERENCES users(id),
  max_amount      DECIMAL(15,2) NOT NULL CONSTRAINT max_bids_amount_positive CHECK (max_amount > 0),
  client_bid_id   VARCHAR(64) CHECK (char_length(client_bid_id) >= 1),
  position        BIGINT GENERATED ALWAYS AS IDENTITY,
  created_at      TIMESTAMPTZ NOT NULL,
  CONSTRAINT max_bids_client_bid_id_key UNIQUE (auction_id, user_id, client_bid_id)
);
CREATE INDEX idx_max_bids_auction ON max_bids(auction_id, position);

ALTER TABLE bids ADD COLUMN is_proxy BOOLEAN NOT NULL DEFAULT false;

ALTER TYPE ledger_bid ADD ATTRIBUTE is_proxy boolean;

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
                    client_bid_id, seq, extended, end_time_after, created_at, is_proxy)
  SELECT b.id, b.auction_id, b.user_id, b.amount_kobo * 0.01, b.is_platform_bid, b.is_winning,
         b.client_bid_id, b.seq, b.extended,
         timestamptz 'epoch' + b.end_time_ms * interval '1 ms',
         timestamptz 'epoch' + b.created_ms * interval '1 ms',
         coalesce(b.is_proxy, false)
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
