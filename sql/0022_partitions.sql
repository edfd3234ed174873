-- Several nodes, one engine (ARCHITECTURE.md "Scale", CLUSTER.md): partitions,
-- their leases, and the nodes that hold them.
--
-- * cluster_settings: one row, written by the first node to start on this
--   database (engine/partitions.py): how many partitions the auctions are spread
--   over. Never changed afterwards: every auction's partition follows from it,
--   and a node started with another PARTITIONS refuses to start.
-- * partition_leases: a row per partition, made by that first node. `owner` is
--   the node deciding its bids (NULL: nobody); `epoch` grows by one at every take
--   and is the fencing token of that owner's writes; `lease_until` is when the
--   lease lapses by PostgreSQL's clock unless renewed (engine/leases.py).
-- * nodes: each node's row, renewed with its leases; a node is live while
--   `alive_until` is ahead of now(). `url` is where the others reach it.
-- * auction_partition(id, partitions): the auction's partition, as
--   engine/partitions.partition_of computes it: the first 8 bytes of the UUID as
--   an unsigned 64-bit number, modulo the count.
CREATE TABLE cluster_settings (
  singleton   BOOLEAN PRIMARY KEY DEFAULT true CONSTRAINT cluster_settings_one_row CHECK (singleton),
  partitions  INT NOT NULL CONSTRAINT cluster_settings_partitions_range
                CHECK (partitions BETWEEN 1 AND 4096),
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE partition_leases (
  id           INT PRIMARY KEY CONSTRAINT partition_leases_id_nonnegative CHECK (id >= 0),
  owner        TEXT,
  epoch        BIGINT NOT NULL DEFAULT 0 CONSTRAINT partition_leases_epoch_nonnegative
                 CHECK (epoch >= 0),
  lease_until  TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
  taken_at     TIMESTAMPTZ
);

CREATE TABLE nodes (
  id           TEXT PRIMARY KEY CONSTRAINT nodes_id_length CHECK (char_length(id) BETWEEN 1 AND 200),
  url          TEXT NOT NULL,
  alive_until  TIMESTAMPTZ NOT NULL,
  started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_seen    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION auction_partition(p_id uuid, p_partitions int) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT ((CASE WHEN s < 0 THEN s::numeric + 18446744073709551616 ELSE s::numeric END)
          % p_partitions)::int
  FROM (SELECT ('x' || left(replace(p_id::text, '-', ''), 16))::bit(64)::bigint AS s) AS first8
$$;
