-- Whether an auction was ever public, kept as a fact of its own.
--
-- An auction becomes public when it is first scheduled, and stays public
-- whatever happens to it afterwards: one cancelled while scheduled or live, or
-- voided after its end, is still listed as `cancelled` (bidders saw it and may
-- have bid on it). A draft is not public, and a draft rejected or cancelled
-- before approval never was: its vehicle and terms were only ever shown to its
-- seller and to staff. Both end as `cancelled`, so the status alone cannot tell
-- them apart; `published_at` (NULL: never public) can, and every public read
-- (the list, the single auction, the room) asks it instead of the status.
--
-- A trigger sets it the first time a row enters any status other than `draft`
-- or `cancelled`, so no writer (the API, an admin tool, hand-written SQL) can
-- make an auction public and leave it unmarked; the engine never clears it.
-- It fires on status changes only: the ledger's per-bid updates set no status.
--
-- Backfill of the existing rows:
--   * every auction that is neither `draft` nor `cancelled` has been scheduled:
--     public, published_at = created_at (when it was scheduled was not kept);
--   * a `cancelled` auction becomes private again, as it was as a draft, when
--     the audit row of its cancellation says it was a draft then (action
--     `reject` or `cancel`, old_value status `draft`): the engine cancels a
--     draft only through those two admin actions, which write that row in the
--     same transaction;
--   * every other `cancelled` auction (cancelled while scheduled or live,
--     voided after its end, or cancelled outside the engine with no audit row)
--     was listed before this migration and stays public, published_at = created_at;
--   * drafts stay NULL.

ALTER TABLE auctions ADD COLUMN published_at TIMESTAMPTZ;

UPDATE auctions AS a SET published_at = a.created_at
WHERE a.status <> 'draft'
  AND NOT (
    a.status = 'cancelled'
    AND EXISTS (
      SELECT 1 FROM admin_audit_log AS l
      WHERE l.target_type = 'auction' AND l.target_id = a.id
        AND l.action IN ('reject', 'cancel') AND l.old_value ->> 'status' = 'draft'
    )
  );

CREATE FUNCTION auctions_mark_published() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.published_at := now();
  RETURN NEW;
END;
$$;

CREATE TRIGGER auctions_published
  BEFORE INSERT OR UPDATE OF status ON auctions
  FOR EACH ROW
  WHEN (NEW.published_at IS NULL AND NEW.status NOT IN ('draft', 'cancelled'))
  EXECUTE FUNCTION auctions_mark_published();
