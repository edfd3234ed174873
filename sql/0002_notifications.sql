-- The notifications outbox: the engine writes a row in the same transaction as
-- the fact it announces (auction won, outbid, payment due), and the remaining
-- platform delivers it by email, SMS or in-app and sets delivered_at. Writing
-- in the same transaction means a notification exists exactly when its fact does.

CREATE TABLE notifications (
  id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         UUID NOT NULL REFERENCES users(id),
  channel         VARCHAR(10) NOT NULL
                  CONSTRAINT notifications_channel_valid
                  CHECK (channel IN ('email','sms','in_app')),
  kind            VARCHAR(50) NOT NULL,                -- 'auction_won', 'outbid', ...
  payload         JSONB NOT NULL DEFAULT '{}',
  -- End processing may run again after a crash; the same key (say
  -- 'auction_won:<auction>:<user>:email') makes the second write a no-op.
  dedupe_key      VARCHAR(200) CONSTRAINT notifications_dedupe_key_key UNIQUE,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  delivered_at    TIMESTAMPTZ
);

-- The deliverer's query: the oldest undelivered rows.
CREATE INDEX idx_notifications_pending ON notifications(created_at)
  WHERE delivered_at IS NULL;
CREATE INDEX idx_notifications_user ON notifications(user_id, created_at);
