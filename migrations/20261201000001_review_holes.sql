-- Review holes (issue 16).
-- A request for approval keeps the downgrade that was scheduled before it,
-- so withdrawing (or a rejection) puts it back.
ALTER TABLE subscriptions ADD COLUMN held_next_plan_id uuid REFERENCES plans (id);

-- Test keys never reach a route's live upstream: they go to its test
-- upstream, or get its example answer.
ALTER TABLE routes ADD COLUMN test_upstream_url text, ADD COLUMN test_example text;

-- Email verification: one-time links (stored as SHA-256 of the token).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
-- Accounts made before verification existed, and platform admins, keep
-- what they had: they count as verified.
UPDATE users SET email_verified_at = created_at;
CREATE TABLE email_verifications (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_verifications_user_idx ON email_verifications (user_id, created_at DESC);

-- One free trial per verified address and per card, whichever organization
-- asks: `email:<sha-256 of the lowercased address>` or `card:<the
-- processor's fingerprint>`.
CREATE TABLE trial_claims (
    claim      text PRIMARY KEY,
    org_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    claimed_at timestamptz NOT NULL
);
ALTER TABLE payment_methods ADD COLUMN fingerprint text;

-- A hold's deadline is measured on the database's clock, which every
-- instance shares: the instance says how long the call may take (the
-- difference between the deadline and the time it gave), the database
-- counts it from its own now. The holds job compares with the same clock.
CREATE FUNCTION gateway_hold_deadline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.settle_after := clock_timestamp() + (NEW.settle_after - NEW.created_at);
    RETURN NEW;
END
$$;
CREATE TRIGGER gateway_holds_deadline BEFORE INSERT ON gateway_holds
    FOR EACH ROW EXECUTE FUNCTION gateway_hold_deadline();
