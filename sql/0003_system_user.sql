-- The platform's own user: it places the reserve-protection bids (design/RULES.md),
-- so those bids have a real user_id and are labelled, never disguised as a bidder.
-- A fixed id lets every engine node and test refer to it without a lookup.

INSERT INTO users (id, email, role, kyc_status, display_name)
VALUES ('00000000-0000-0000-0000-000000000001',
        'reserve-protection@system.dealer360.invalid',
        'system', 'approved', 'Reserve protection')
ON CONFLICT (id) DO NOTHING;
