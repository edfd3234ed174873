-- Relisting (RULES.md "Relisting", engine/relisting.py): an unsold auction put up
-- again becomes `relisted` and names the auction that took its place.
ALTER TABLE auctions ADD COLUMN relisted_as UUID REFERENCES auctions (id);
