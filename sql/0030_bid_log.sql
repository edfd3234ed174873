-- The public bid log (RULES.md "The public bid log"): each accepted bid's hash,
-- chained on the one before it in its auction.
--
-- The core computes a bid's hash where it decides the bid (bidcore/rules/src/
-- bidlog.rs; engine/bidlog.py gives the encoding) and the writer stores it with
-- the bid: ledger_write_bids for a batch of bids alone, COPY with state changes.
-- Recovery recomputes every loaded auction's chain from its rows and compares:
-- a row changed by hand no longer matches the hash it was written with.
--
-- Bids written before this migration get their hashes here, by the same
-- encoding, so that their auctions go on from a chain that verifies. NULL is left
-- only for a row no engine path wrote, which recovery reports as the break.
ALTER TABLE bids ADD COLUMN hash BYTEA
  CONSTRAINT bids_hash_length CHECK (octet_length(hash) = 32);

ALTER TYPE ledger_bid ADD ATTRIBUTE hash bytea;

-- sql/0024's batch of bids alone, writing each bid's hash too.
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
                    client_bid_id, seq, extended, end_time_after, created_at, is_proxy, epoch,
                    hash)
  SELECT b.id, b.auction_id, b.user_id, b.amount_kobo * 0.01, b.is_platform_bid, b.is_winning,
         b.client_bid_id, b.seq, b.extended,
         timestamptz 'epoch' + b.end_time_ms * interval '1 ms',
         timestamptz 'epoch' + b.created_ms * interval '1 ms',
         coalesce(b.is_proxy, false), p_epoch, b.hash
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

-- The bids already written, each auction's chain from its genesis in seq order:
-- SHA-256('D360gen' 0x01 ‖ auction id), then SHA-256('D360bid' 0x01 ‖ auction id
-- ‖ 40 zero bytes ‖ seq (5 bytes) ‖ bidder number (4) ‖ amount kobo (7) ‖ time
-- ms (6) ‖ flags (1) ‖ previous), unsigned big-endian; the number is the order of
-- the bidder's first bid, 0 for the platform's; flags 1 platform, 2 proxy. One
-- pass, for this migration only.
DO $$
DECLARE
  b record;
  auction uuid;
  head bytea;
BEGIN
  FOR b IN
    WITH numbers AS (
      SELECT auction_id, user_id, row_number() OVER (PARTITION BY auction_id ORDER BY min(seq))
               AS number
      FROM bids WHERE NOT is_platform_bid GROUP BY auction_id, user_id
    )
    SELECT x.id, x.auction_id, x.seq, coalesce(n.number, 0) AS number,
           (x.amount * 100)::bigint AS amount_kobo,
           floor(extract(epoch FROM x.created_at) * 1000)::bigint AS at_ms,
           (CASE WHEN x.is_platform_bid THEN 1 ELSE 0 END)
             + (CASE WHEN x.is_proxy THEN 2 ELSE 0 END) AS flags
    FROM bids x
    LEFT JOIN numbers n ON n.auction_id = x.auction_id AND n.user_id = x.user_id
                       AND NOT x.is_platform_bid
    ORDER BY x.auction_id, x.seq
  LOOP
    IF auction IS DISTINCT FROM b.auction_id THEN
      auction := b.auction_id;
      head := sha256('\x4433363067656e01'::bytea || uuid_send(auction));
    END IF;
    head := sha256('\x4433363062696401'::bytea || uuid_send(b.auction_id)
                   || decode(repeat('00', 40), 'hex') || substring(int8send(b.seq) FROM 4)
                   || int4send(b.number::int) || substring(int8send(b.amount_kobo) FROM 2)
                   || substring(int8send(b.at_ms) FROM 3) || set_byte('\x00'::bytea, 0, b.flags)
                   || head);
    UPDATE bids SET hash = head WHERE id = b.id;
  END LOOP;
END
$$;
