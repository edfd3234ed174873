-- The seed's schema (shared/seed/dealer360-architecture.md, "Complete Schema"),
-- adapted for the auction engine. Column names and DECIMAL(15,2) naira money are
-- the seed's; the engine converts to integer kobo at the boundary (engine/money.py).
-- Adaptations, everywhere:
--   * TIMESTAMPTZ instead of TIMESTAMP: the engine works in UTC milliseconds and
--     a zone-less timestamp would be read in the session's time zone.
--   * NOT NULL on columns that have a default and that the engine reads, so a
--     row can never carry an unknown status, count or flag.
--   * CHECKs on money and counts: the database refuses what the rules forbid,
--     whatever code writes the row.
-- gen_random_uuid() is built into PostgreSQL 13+, so no pgcrypto.

CREATE EXTENSION IF NOT EXISTS vector;

-- ==========================================
-- USERS & IDENTITY
-- ==========================================

CREATE TABLE users (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  email           VARCHAR(255) UNIQUE NOT NULL,
  -- Identity lives in the platform's identity service; the engine keeps no passwords.
  password_hash   VARCHAR(255),
  phone           VARCHAR(20),
  role            VARCHAR(20) NOT NULL DEFAULT 'user'
                  CONSTRAINT users_role_valid
                  CHECK (role IN ('user','verified_seller','dealer','concierge','manager','admin',
                                  'system')),
  display_name    VARCHAR(100),
  avatar_url      TEXT,
  wallet_balance  DECIMAL(15,2) NOT NULL DEFAULT 0
                  CONSTRAINT users_wallet_balance_nonnegative CHECK (wallet_balance >= 0),
  kyc_status      VARCHAR(20) NOT NULL DEFAULT 'none'
                  CONSTRAINT users_kyc_status_valid
                  CHECK (kyc_status IN ('none','pending','approved','rejected')),
  kyc_data        JSONB NOT NULL DEFAULT '{}',
  is_active       BOOLEAN NOT NULL DEFAULT true,
  last_login_at   TIMESTAMPTZ,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_role ON users(role);

-- ==========================================
-- VEHICLE CATALOG (Reference Data — "The Brain")
-- ==========================================

CREATE TABLE vehicle_catalog (
  id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  make                VARCHAR(50) NOT NULL,
  model               VARCHAR(100) NOT NULL,
  year_start          INT NOT NULL,
  year_end            INT,
  trim                VARCHAR(50),
  body_type           VARCHAR(30),
  engine_code         VARCHAR(30),
  displacement_cc     INT,
  horsepower          INT,
  torque_nm           INT,
  transmission        VARCHAR(30),
  drivetrain          VARCHAR(10),
  fuel_type           VARCHAR(20),
  specs               JSONB NOT NULL DEFAULT '{}',
  price_foreign_used  DECIMAL(15,2),      -- Tokunbo market avg
  price_nigerian_used DECIMAL(15,2),      -- Local used market avg
  price_brand_new     DECIMAL(15,2),
  clearing_cost_est   DECIMAL(15,2),      -- Estimated customs duty
  resell_rank         INT CHECK (resell_rank BETWEEN 1 AND 10),
  popularity_index    INT,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_catalog_make_model ON vehicle_catalog(make, model);
CREATE INDEX idx_catalog_year ON vehicle_catalog(year_start, year_end);

-- ==========================================
-- VEHICLES (Physical Inventory)
-- ==========================================

CREATE TABLE vehicles (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  catalog_id      UUID REFERENCES vehicle_catalog(id),
  owner_id        UUID REFERENCES users(id),
  listed_by       UUID REFERENCES users(id),         -- dealer or admin who listed
  -- 17 characters without I, O, Q (upper-cased on entry); no check digit, since
  -- most vehicles sold in Nigeria are not North-American (design/API.md).
  vin             VARCHAR(17) NOT NULL
                  CONSTRAINT vehicles_vin_key UNIQUE
                  CONSTRAINT vehicles_vin_format CHECK (vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
  year            INT NOT NULL,
  -- The internal API creates vehicles with these directly; catalog_id stays optional.
  make            VARCHAR(50),
  model           VARCHAR(100),
  body_type       VARCHAR(30),
  condition       VARCHAR(20) NOT NULL DEFAULT 'clean'
                  CHECK (condition IN ('salvage','rough','clean','excellent','upgraded')),
  mileage_km      INT CHECK (mileage_km >= 0),
  color           VARCHAR(30),
  price           DECIMAL(15,2) CHECK (price >= 0),
  status          VARCHAR(25) NOT NULL DEFAULT 'available'
                  CONSTRAINT vehicles_status_valid
                  CHECK (status IN (
                    'available','in_auction','pending_settlement','in_settlement',
                    'owned','in_service','listed','sold','archived'
                  )),
  images          JSONB NOT NULL DEFAULT '[]',        -- array of Cloudinary URLs
  features        JSONB NOT NULL DEFAULT '[]',        -- array of feature strings
  damage_report   JSONB NOT NULL DEFAULT '{}',
  trust_score     INT CHECK (trust_score BETWEEN 0 AND 100),
  history_log     JSONB NOT NULL DEFAULT '[]',        -- immutable append-only log
  location        VARCHAR(100),
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_vehicles_status ON vehicles(status);
CREATE INDEX idx_vehicles_owner ON vehicles(owner_id);
CREATE INDEX idx_vehicles_vin ON vehicles(vin);

-- ==========================================
-- AUCTIONS
-- ==========================================

CREATE TABLE auctions (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  vehicle_id      UUID REFERENCES vehicles(id) NOT NULL,
  created_by      UUID REFERENCES users(id) NOT NULL,
  winner_id       UUID REFERENCES users(id),
  auction_type    VARCHAR(20) NOT NULL DEFAULT 'timed'
                  CONSTRAINT auctions_auction_type_valid
                  CHECK (auction_type IN ('timed','reserve','no_reserve','flash')),
  status          VARCHAR(25) NOT NULL DEFAULT 'draft'
                  CONSTRAINT auctions_status_valid
                  CHECK (status IN (
                    'draft','scheduled','live','ended','pending_settlement',
                    'settled','unsold','cancelled','relisted'
                  )),
  start_price     DECIMAL(15,2) NOT NULL CONSTRAINT auctions_start_price_positive
                  CHECK (start_price > 0),
  reserve_price   DECIMAL(15,2) CHECK (reserve_price > 0),
  current_price   DECIMAL(15,2) CHECK (current_price > 0),   -- NULL until the first bid
  bid_increment   DECIMAL(15,2) NOT NULL DEFAULT 50000        -- Min ₦50K increment
                  CONSTRAINT auctions_bid_increment_positive CHECK (bid_increment > 0),
  deposit_pct     DECIMAL(5,2) NOT NULL DEFAULT 20.00         -- 20% deposit required
                  CONSTRAINT auctions_deposit_pct_range CHECK (deposit_pct BETWEEN 0 AND 100),
  start_time      TIMESTAMPTZ NOT NULL,
  end_time        TIMESTAMPTZ NOT NULL,                       -- moves with anti-sniping
  original_end    TIMESTAMPTZ,                                -- for tracking auto-extensions
  bid_count       INT NOT NULL DEFAULT 0 CHECK (bid_count >= 0),
  bidder_count    INT NOT NULL DEFAULT 0 CHECK (bidder_count >= 0),
  ai_bids_placed  INT NOT NULL DEFAULT 0 CHECK (ai_bids_placed >= 0),
  featured        BOOLEAN NOT NULL DEFAULT false,
  -- Engine additions.
  anti_snipe_window_ms    BIGINT NOT NULL DEFAULT 120000 CHECK (anti_snipe_window_ms >= 0),
  anti_snipe_extension_ms BIGINT NOT NULL DEFAULT 120000 CHECK (anti_snipe_extension_ms >= 0),
  -- Fencing epoch of the engine node that owns this auction: a batch written
  -- under an older epoch is refused, so a stale owner cannot write.
  epoch           BIGINT NOT NULL DEFAULT 0,
  -- The room's event sequence number (the `seq` of the last event sent).
  last_seq        BIGINT NOT NULL DEFAULT 0,
  cancel_reason   TEXT,
  ended_at        TIMESTAMPTZ,
  payment_deadline TIMESTAMPTZ,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT auctions_end_after_start CHECK (end_time > start_time)
);

CREATE INDEX idx_auctions_status ON auctions(status);
CREATE INDEX idx_auctions_vehicle ON auctions(vehicle_id);
CREATE INDEX idx_auctions_end ON auctions(end_time);
-- The scheduler's queries: what starts next, what ends next.
CREATE INDEX idx_auctions_status_start ON auctions(status, start_time);
CREATE INDEX idx_auctions_status_end ON auctions(status, end_time);
-- A vehicle is in at most one auction that is still open (design/RULES.md):
-- enforced here so no code path, admin tool or stale node can break it.
CREATE UNIQUE INDEX auctions_one_open_per_vehicle ON auctions(vehicle_id)
  WHERE status NOT IN ('settled','unsold','cancelled','relisted');

-- ==========================================
-- BIDS
-- ==========================================

CREATE TABLE bids (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  auction_id      UUID REFERENCES auctions(id) NOT NULL,
  user_id         UUID REFERENCES users(id) NOT NULL,
  amount          DECIMAL(15,2) NOT NULL CONSTRAINT bids_amount_positive CHECK (amount > 0),
  is_platform_bid BOOLEAN NOT NULL DEFAULT false,    -- AI reserve protection bid
  is_winning      BOOLEAN NOT NULL DEFAULT false,
  -- Engine additions. client_bid_id makes a bid idempotent per bidder (NULL for
  -- platform bids: NULLs never collide in a UNIQUE constraint).
  client_bid_id   VARCHAR(64) CHECK (char_length(client_bid_id) >= 1),
  seq             BIGINT NOT NULL,                   -- the room event seq of this bid
  extended        BOOLEAN NOT NULL DEFAULT false,    -- this bid moved end_time
  end_time_after  TIMESTAMPTZ,                       -- the auction's end_time after this bid
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT bids_client_bid_id_key UNIQUE (auction_id, user_id, client_bid_id),
  -- Every bid is its own room event, so (auction, seq) names one bid: a batch
  -- replayed after an outage cannot insert the same bid twice.
  CONSTRAINT bids_auction_seq_key UNIQUE (auction_id, seq)
);

CREATE INDEX idx_bids_auction ON bids(auction_id);
CREATE INDEX idx_bids_user ON bids(user_id);
CREATE INDEX idx_bids_amount ON bids(auction_id, amount DESC);
CREATE INDEX idx_bids_auction_created ON bids(auction_id, created_at);

-- ==========================================
-- PARTNERS (Service Providers) — before service_requests, which references it
-- ==========================================

CREATE TABLE partners (
  id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id           UUID REFERENCES users(id),        -- partner's login account
  business_name     VARCHAR(200) NOT NULL,
  specialties       JSONB NOT NULL DEFAULT '[]',
  service_area      VARCHAR(100),
  tier              VARCHAR(20) NOT NULL DEFAULT 'bronze'
                    CHECK (tier IN ('bronze','silver','gold','platinum')),
  commission_rate   DECIMAL(5,4) DEFAULT 0.1500,
  performance_score INT DEFAULT 50,
  total_jobs        INT DEFAULT 0,
  avg_rating        DECIMAL(3,2) DEFAULT 0.00,
  is_active         BOOLEAN NOT NULL DEFAULT true,
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ==========================================
-- SERVICE REQUESTS
-- ==========================================

CREATE TABLE service_requests (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  vehicle_id      UUID REFERENCES vehicles(id) NOT NULL,
  user_id         UUID REFERENCES users(id) NOT NULL,
  partner_id      UUID REFERENCES partners(id),
  service_type    VARCHAR(30) NOT NULL
                  CHECK (service_type IN (
                    'logistics','registration','maintenance',
                    'body_upgrade','performance','inspection','insurance'
                  )),
  workflow_state  VARCHAR(20) NOT NULL DEFAULT 'requested'
                  CHECK (workflow_state IN (
                    'requested','quoted','paid','in_progress',
                    'qc_pending','qc_failed','completed','closed','cancelled'
                  )),
  description     TEXT,
  quote_amount    DECIMAL(15,2),
  invoice_total   DECIMAL(15,2),
  commission_rate DECIMAL(5,4),
  platform_fee    DECIMAL(15,2),
  qc_passed       BOOLEAN,
  qc_notes        TEXT,
  state_log       JSONB NOT NULL DEFAULT '[]',        -- state transitions with timestamps
  estimated_days  INT,
  due_date        DATE,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_service_vehicle ON service_requests(vehicle_id);
CREATE INDEX idx_service_state ON service_requests(workflow_state);

-- ==========================================
-- TRANSACTIONS (Financial Ledger)
-- ==========================================

CREATE TABLE transactions (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         UUID REFERENCES users(id) NOT NULL,
  type            VARCHAR(30) NOT NULL
                  CONSTRAINT transactions_type_valid
                  CHECK (type IN (
                    'deposit','withdrawal','bid_deposit_hold','bid_deposit_release',
                    'auction_payment','service_payment','commission_earned',
                    'refund','manual_adjustment','partner_payout'
                  )),
  -- Always a magnitude: the type says which way the money moved.
  amount          DECIMAL(15,2) NOT NULL CONSTRAINT transactions_amount_nonnegative
                  CHECK (amount >= 0),
  balance_after   DECIMAL(15,2) CHECK (balance_after >= 0),
  reference_id    UUID,                                -- links to auction, service_request, etc.
  reference_type  VARCHAR(30),                         -- 'auction', 'service_request', etc.
  paystack_ref    VARCHAR(100),
  status          VARCHAR(20) NOT NULL DEFAULT 'pending'
                  CONSTRAINT transactions_status_valid
                  CHECK (status IN ('pending','completed','failed','reversed')),
  description     TEXT,
  -- Credits and payments carry the provider's reference here, so a webhook
  -- delivered twice writes one row (INSERT … ON CONFLICT (idempotency_key)).
  idempotency_key VARCHAR(200) CONSTRAINT transactions_idempotency_key_key UNIQUE,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_transactions_user ON transactions(user_id);
CREATE INDEX idx_transactions_type ON transactions(type);
CREATE INDEX idx_transactions_status ON transactions(status);
-- Settlement reads an auction's holds and payments.
CREATE INDEX idx_transactions_reference ON transactions(reference_id);

-- ==========================================
-- CONCIERGE TASKS
-- ==========================================

CREATE TABLE concierge_tasks (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         UUID REFERENCES users(id) NOT NULL,
  assigned_to     UUID REFERENCES users(id),
  source_message  TEXT,
  task_type       VARCHAR(30)
                  CHECK (task_type IN (
                    'service_inquiry','purchase_support','complaint',
                    'upgrade_request','general','escalation'
                  )),
  priority        VARCHAR(10) NOT NULL DEFAULT 'medium'
                  CHECK (priority IN ('low','medium','high','urgent')),
  status          VARCHAR(20) NOT NULL DEFAULT 'new'
                  CHECK (status IN ('new','assigned','in_progress','completed','cancelled')),
  resolution      TEXT,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  resolved_at     TIMESTAMPTZ
);

-- ==========================================
-- COMMISSION RATES (Admin-Configurable)
-- ==========================================

CREATE TABLE commission_rates (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  service_type    VARCHAR(30) UNIQUE NOT NULL,
  base_rate       DECIMAL(5,4) NOT NULL,
  min_rate        DECIMAL(5,4),
  max_rate        DECIMAL(5,4),
  rules           JSONB NOT NULL DEFAULT '[]',
  updated_by      UUID REFERENCES users(id),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ==========================================
-- ADMIN AUDIT LOG (Immutable)
-- ==========================================

CREATE TABLE admin_audit_log (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  admin_id        UUID REFERENCES users(id) NOT NULL,
  action          VARCHAR(50) NOT NULL,
  target_type     VARCHAR(30),
  target_id       UUID,
  old_value       JSONB,
  new_value       JSONB,
  reason          TEXT,
  ip_address      INET,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_audit_admin ON admin_audit_log(admin_id);
CREATE INDEX idx_audit_action ON admin_audit_log(action);
CREATE INDEX idx_audit_target ON admin_audit_log(target_type, target_id);

-- The seed calls the log immutable; a trigger makes it so for every writer.
CREATE FUNCTION admin_audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'admin_audit_log is append-only: % is not allowed', TG_OP;
END;
$$;

CREATE TRIGGER admin_audit_log_append_only
  BEFORE UPDATE OR DELETE ON admin_audit_log
  FOR EACH ROW EXECUTE FUNCTION admin_audit_log_refuse_change();

-- ==========================================
-- VECTOR EMBEDDINGS (Pgvector)
-- ==========================================
-- vector(32), not the seed's vector(1536): the engine embeds a vehicle's own
-- attributes deterministically in a small space (no model at run time).
-- HNSW, not ivfflat: ivfflat builds its lists from the rows present when the
-- index is created, and this table starts empty.

CREATE TABLE vehicle_embeddings (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  vehicle_id      UUID NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE
                  CONSTRAINT vehicle_embeddings_vehicle_id_key UNIQUE,
  embedding       vector(32) NOT NULL,
  embedded_text   TEXT,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_vehicle_embeddings_hnsw ON vehicle_embeddings
  USING hnsw (embedding vector_cosine_ops);

CREATE TABLE user_interaction_embeddings (
  id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id           UUID REFERENCES users(id),
  embedding         vector(32),
  interaction_type  VARCHAR(30),
  interaction_data  JSONB,
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_user_interaction_embeddings_hnsw ON user_interaction_embeddings
  USING hnsw (embedding vector_cosine_ops);
