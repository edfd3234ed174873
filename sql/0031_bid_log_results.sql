-- The bid log's signed results, the keys that sign them, and the secret each
-- auction's handle commitments are made from (RULES.md "The public bid log";
-- engine/bidlog.py gives the encoding, engine/signing.py the keys).
--
-- * auctions.log_secret: 32 random bytes per auction, never published: bidder
--   n's nonce is a hash of it and n, so handing one bidder their nonce reveals
--   neither the secret nor another bidder's. Made by the database for every new
--   auction (two version-4 UUIDs: 244 random bits), and here for those that exist.
-- * log_keys: every Ed25519 public key a node signs with, by key id (the first 8
--   bytes of SHA-256 over the key, hex). Each node publishes its own at start,
--   before it signs anything, and keys are never removed: GET /api/log-keys on any
--   node lists every key any node ever signed with, so a result stays verifiable
--   after its key is rotated out. Nodes need not share a key.
-- * bid_log_results: an auction's signed result, one per auction, written by end
--   processing in the transaction that takes the auction out of `ended`; its key
--   must be published (the foreign key) before a result signed with it is stored.
ALTER TABLE auctions ADD COLUMN log_secret BYTEA NOT NULL
  DEFAULT (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
  CONSTRAINT auctions_log_secret_length CHECK (octet_length(log_secret) = 32);

CREATE TABLE log_keys (
  key_id      TEXT PRIMARY KEY CONSTRAINT log_keys_key_id_hex CHECK (key_id ~ '^[0-9a-f]{16}$'),
  public_key  BYTEA NOT NULL UNIQUE
              CONSTRAINT log_keys_public_key_length CHECK (octet_length(public_key) = 32),
  node_id     TEXT,  -- the node that published it first (informative)
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bid_log_results (
  auction_id        UUID PRIMARY KEY REFERENCES auctions(id),
  final_seq         BIGINT NOT NULL CHECK (final_seq >= 0),
  head              BYTEA NOT NULL CHECK (octet_length(head) = 32),
  winner_number     INT CHECK (winner_number > 0),     -- NULL: no winner
  final_price_kobo  BIGINT CHECK (final_price_kobo > 0),  -- NULL: no bid
  handles           BYTEA NOT NULL CHECK (octet_length(handles) = 32),
  signature         BYTEA NOT NULL CHECK (octet_length(signature) = 64),
  key_id            TEXT NOT NULL REFERENCES log_keys(key_id),
  signed_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
