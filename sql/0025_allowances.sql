-- Buying power across nodes (CLUSTER.md "Buying power across partitions",
-- engine/allowances.py): a bidder's balance split into allowances, one per
-- partition where they bid. The partition's owner decides bids against the
-- allowance it holds, with no round trip; it asks for more under the user's row
-- lock, where `SUM(amount_kobo) <= users.wallet_balance` is checked, and gives
-- back what its auctions no longer expose. Every change is made by the
-- partition's owner under its lease (engine/leases.Fence); `epoch` is the lease
-- epoch it was last written under. A row moves with its partition: the next
-- owner loads it with the partition's auctions. A node alone (no leases) keeps
-- no rows: the whole balance backs its bids.
CREATE TABLE allowances (
  user_id      UUID NOT NULL REFERENCES users (id),
  partition    INT NOT NULL CONSTRAINT allowances_partition_nonnegative CHECK (partition >= 0),
  amount_kobo  BIGINT NOT NULL CONSTRAINT allowances_amount_nonnegative CHECK (amount_kobo >= 0),
  epoch        BIGINT NOT NULL,
  updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, partition)
);

CREATE INDEX allowances_by_partition ON allowances (partition);
