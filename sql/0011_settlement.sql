-- Settlement: who is offered the vehicle after an auction ends, at what price,
-- with what deposit, until when, and how it ended. The winner gets the first
-- offer; a winner who misses the payment deadline forfeits the deposit and
-- the next-highest distinct real bidder gets the next offer (RULES.md).

CREATE TABLE settlement_offers (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  auction_id      UUID NOT NULL REFERENCES auctions(id),
  user_id         UUID NOT NULL REFERENCES users(id),
  amount          DECIMAL(15,2) NOT NULL CHECK (amount > 0),       -- the bid being honoured
  deposit         DECIMAL(15,2) NOT NULL CHECK (deposit >= 0),
  -- held: taken from the wallet; due: the wallet could not cover it yet;
  -- applied: counted towards the price at settlement; released: returned
  -- (void); forfeited: kept as platform revenue after a missed deadline.
  deposit_status  VARCHAR(10) NOT NULL
                  CHECK (deposit_status IN ('held','due','applied','released','forfeited')),
  deadline        TIMESTAMPTZ NOT NULL,
  outcome         VARCHAR(10) NOT NULL DEFAULT 'open'
                  CHECK (outcome IN ('open','paid','defaulted','voided')),
  offered_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  closed_at       TIMESTAMPTZ,
  CONSTRAINT settlement_offers_once_per_bidder UNIQUE (auction_id, user_id)
);

-- At most one open offer per auction, whatever writes it.
CREATE UNIQUE INDEX settlement_offers_one_open ON settlement_offers(auction_id)
  WHERE outcome = 'open';
CREATE INDEX idx_settlement_offers_deadline ON settlement_offers(deadline)
  WHERE outcome = 'open';
CREATE INDEX idx_settlement_offers_user ON settlement_offers(user_id) WHERE outcome = 'open';
