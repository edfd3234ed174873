-- The platform's commission on a sale, and what the revenue report reads
-- (engine/commission.py, engine/revenue.py).
--
-- The rate: the seed's `commission_rates` row for service_type 'auction_sale' —
-- `base_rate`, overridden by the most specific of its `rules` matching the
-- seller's role and the vehicle's body type (and, when a rule says so, the
-- moment), kept within `min_rate`..`max_rate` — fixed on the auction when it
-- ends (end processing), so a later change of the table applies to auctions
-- that end after it, as the seed says ("affects all future transactions").
-- NULL: the auction ended before this column existed (the rate is then read
-- at settlement, for its end time).
ALTER TABLE auctions ADD COLUMN commission_rate DECIMAL(5,4)
  CONSTRAINT auctions_commission_rate_range CHECK (commission_rate BETWEEN 0 AND 1);

-- When an auction became unsold (end processing, the last default, an if-bid
-- declined or expired): the report counts it on that day. Earlier ones: at their end.
ALTER TABLE auctions ADD COLUMN unsold_at TIMESTAMPTZ;
UPDATE auctions SET unsold_at = COALESCE(ended_at, end_time)
WHERE status IN ('unsold', 'relisted');

-- The commission taken when an offer is paid (whole kobo, as naira).
ALTER TABLE settlement_offers ADD COLUMN commission DECIMAL(15,2)
  CONSTRAINT settlement_offers_commission_nonnegative CHECK (commission >= 0);

-- Rates are fractions (0.0350 = 3.5 %).
ALTER TABLE commission_rates
  ADD CONSTRAINT commission_rates_base_rate_range CHECK (base_rate BETWEEN 0 AND 1),
  ADD CONSTRAINT commission_rates_min_rate_range CHECK (min_rate BETWEEN 0 AND 1),
  ADD CONSTRAINT commission_rates_max_rate_range CHECK (max_rate BETWEEN 0 AND 1),
  ADD CONSTRAINT commission_rates_min_below_max CHECK (min_rate <= max_rate);

-- The report's reads, by day: offers closed paid or forfeited, auctions unsold.
CREATE INDEX idx_settlement_offers_revenue ON settlement_offers (closed_at)
  WHERE outcome = 'paid' OR deposit_status = 'forfeited';
CREATE INDEX idx_auctions_unsold_at ON auctions (unsold_at) WHERE unsold_at IS NOT NULL;
