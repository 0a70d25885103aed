-- The operator's console: the audit log gains the request and the state
-- before and after and refuses changes; operators can suspend an
-- organization's keys (a 403 of its own, checked by gateway_check); plans
-- carry their roles (the sign-up plan, trial days, archived) instead of codes
-- in the code; a user's organization choice survives sign-in; a visit to a
-- fix page is attributed to the 402 whose resolution link led there.

ALTER TABLE audit_log
    ADD COLUMN request_id text,
    ADD COLUMN before jsonb,
    ADD COLUMN after jsonb;
DROP INDEX audit_log_org_idx;
CREATE INDEX audit_log_org_idx ON audit_log (org_id, at DESC, id DESC);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_user_id, at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, at DESC, id DESC);

-- Append-only: an entry is never changed or removed. The one update allowed
-- is the foreign keys' ON DELETE SET NULL once the user or organization is
-- gone (the entry stays); while it exists, its id cannot be cleared.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action
       AND NEW.details = OLD.details
       AND NEW.request_id IS NOT DISTINCT FROM OLD.request_id
       AND NEW.before IS NOT DISTINCT FROM OLD.before
       AND NEW.after IS NOT DISTINCT FROM OLD.after
       AND (NEW.actor_user_id IS NOT DISTINCT FROM OLD.actor_user_id
            OR (NEW.actor_user_id IS NULL AND NOT EXISTS (SELECT 1 FROM users WHERE id = OLD.actor_user_id)))
       AND (NEW.org_id IS NOT DISTINCT FROM OLD.org_id
            OR (NEW.org_id IS NULL AND NOT EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id))) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Suspension of every key of an organization at once (and its restoration).
ALTER TABLE organizations
    ADD COLUMN keys_suspended_at timestamptz,
    ADD COLUMN keys_suspended_reason text;

-- The organization a user last chose, where their next sign-in lands.
ALTER TABLE users ADD COLUMN last_org_id uuid REFERENCES organizations (id) ON DELETE SET NULL;

-- Plans carry their roles. `active` is "offered to new subscribers";
-- an archived plan is offered to nobody and keeps its subscribers.
ALTER TABLE plans
    ADD COLUMN signup boolean NOT NULL DEFAULT false,
    ADD COLUMN trial_days integer NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 90),
    ADD COLUMN archived_at timestamptz,
    ADD COLUMN updated_at timestamptz;
UPDATE plans SET signup = true WHERE code = 'free';
UPDATE plans SET trial_days = 14 WHERE code = 'pro';
ALTER TABLE plans
    ADD CONSTRAINT plans_archived_not_offered CHECK (archived_at IS NULL OR NOT active),
    ADD CONSTRAINT plans_signup_is_free CHECK (NOT signup OR (price_minor = 0 AND NOT requires_approval AND active));
CREATE UNIQUE INDEX plans_one_signup ON plans ((true)) WHERE signup;

-- The terms a subscription's current period was opened (and paid) on: an
-- admin's later change of the plan's price or included credits reaches it
-- at its next period, and proration and a late renewal payment use these.
ALTER TABLE subscriptions
    ADD COLUMN period_price_minor bigint CHECK (period_price_minor >= 0),
    ADD COLUMN period_included_credits bigint CHECK (period_included_credits >= 0);
UPDATE subscriptions s SET period_price_minor = p.price_minor, period_included_credits = p.included_credits
  FROM plans p WHERE p.id = coalesce(s.fallback_plan_id, s.plan_id);

-- The first visit of a fix page from a 402's resolution link (`ref` names
-- the refused request), for a live 402 of the visitor's own organization
-- (src/portal/visits.rs). Keyed by the refusal and the organization, so no
-- other organization's row can stand in the way of its own.
CREATE TABLE fix_visits (
    request_id text NOT NULL CHECK (length(request_id) BETWEEN 5 AND 64),
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    page       text NOT NULL,
    user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    visited_at timestamptz NOT NULL,
    PRIMARY KEY (request_id, org_id)
);
CREATE INDEX fix_visits_org_idx ON fix_visits (org_id, visited_at);

-- The sandbox processor hands out a token for a card, as a processor's
-- browser library does, and attaches it once: what the card shows is kept
-- with the token, never the number.
ALTER TABLE sandbox_cards
    ADD COLUMN brand text,
    ADD COLUMN last4 text,
    ADD COLUMN exp_month smallint,
    ADD COLUMN exp_year smallint,
    ADD COLUMN fingerprint text,
    ADD COLUMN attached_at timestamptz;

CREATE INDEX invoices_paid_idx ON invoices (org_id, paid_at) WHERE status = 'paid';

-- gateway_check as before, with the suspension after the key's own checks.
CREATE OR REPLACE FUNCTION gateway_check(
    p_token_hash bytea, p_endpoint text, p_scope text, p_now timestamptz, p_route_plans text[] DEFAULT NULL
) RETURNS gateway_decision LANGUAGE plpgsql STABLE AS $$
DECLARE
    d gateway_decision;
    k record;
    s record;
    v_included_ok boolean;
    v_fallback_ok boolean;
BEGIN
    d.charged := 0;
    SELECT a.id, a.org_id, a.mode, a.scopes, a.expires_at, a.revoked_at, o.keys_suspended_at INTO k
      FROM api_keys a JOIN organizations o ON o.id = a.org_id WHERE a.token_hash = p_token_hash;
    IF NOT FOUND THEN
        d.outcome := 'invalid_api_key';
        RETURN d;
    END IF;
    d.key_id := k.id; d.org_id := k.org_id; d.mode := k.mode;
    IF k.revoked_at IS NOT NULL AND k.revoked_at <= p_now THEN
        d.outcome := 'api_key_revoked'; RETURN d;
    END IF;
    IF k.expires_at IS NOT NULL AND k.expires_at <= p_now THEN
        d.outcome := 'api_key_expired'; RETURN d;
    END IF;
    -- An operator suspended every key of the organization: a 403 of its own,
    -- never a money refusal (no payment lifts it).
    IF k.keys_suspended_at IS NOT NULL AND k.keys_suspended_at <= p_now THEN
        d.outcome := 'api_key_suspended'; RETURN d;
    END IF;
    IF NOT ('*' = ANY (k.scopes) OR p_scope = ANY (k.scopes)) THEN
        d.outcome := 'scope_forbidden'; RETURN d;
    END IF;

    SELECT sub.status, sub.current_period_end, sub.grace_until, sub.trial_end,
           p.code, p.rate_limit_per_sec, p.endpoints,
           fp.code AS fb_code, fp.rate_limit_per_sec AS fb_rate, fp.endpoints AS fb_endpoints
      INTO s
      FROM subscriptions sub JOIN plans p ON p.id = sub.plan_id
      LEFT JOIN plans fp ON fp.id = sub.fallback_plan_id
     WHERE sub.org_id = k.org_id;
    IF NOT FOUND THEN
        d.outcome := 'subscription_expired'; RETURN d;
    END IF;
    d.plan_code := s.code; d.rate_per_sec := s.rate_limit_per_sec;

    IF p_route_plans IS NOT NULL THEN
        v_included_ok := cardinality(p_route_plans) = 0 OR s.code = ANY (p_route_plans);
        v_fallback_ok := s.fb_code IS NOT NULL AND (cardinality(p_route_plans) = 0 OR s.fb_code = ANY (p_route_plans));
    ELSE
        v_included_ok := '*' = ANY (s.endpoints) OR p_endpoint = ANY (s.endpoints);
        v_fallback_ok := s.fb_code IS NOT NULL AND ('*' = ANY (s.fb_endpoints) OR p_endpoint = ANY (s.fb_endpoints));
    END IF;

    -- Which plan serves is not a money state: until approved, the plan a
    -- request replaces serves its own endpoints, for test keys as for live
    -- ones (a test key must not try out a plan nobody approved).
    IF s.status = 'pending_approval' THEN
        IF v_fallback_ok THEN
            d.plan_code := s.fb_code; d.rate_per_sec := s.fb_rate;
        ELSIF v_included_ok OR s.fb_code IS NULL THEN
            d.outcome := 'subscription_pending_approval'; RETURN d;
        END IF;
        v_included_ok := v_fallback_ok;
    END IF;

    -- Money states bind live keys only; test keys never touch real money.
    IF k.mode = 'live' THEN
        IF s.status = 'unpaid' THEN
            d.outcome := 'subscription_past_due'; RETURN d;
        ELSIF s.status = 'past_due' THEN
            IF s.grace_until IS NOT NULL AND s.grace_until > p_now THEN
                d.in_grace_until := s.grace_until;
            ELSE
                d.outcome := 'subscription_past_due'; RETURN d;
            END IF;
        ELSIF s.status = 'expired' OR (s.status = 'canceled' AND p_now >= s.current_period_end) THEN
            d.outcome := 'subscription_expired'; RETURN d;
        ELSIF s.status = 'trialing' AND p_now >= coalesce(s.trial_end, s.current_period_end)
              AND NOT EXISTS (SELECT 1 FROM payment_methods WHERE org_id = k.org_id AND removed_at IS NULL) THEN
            d.outcome := 'payment_method_required'; RETURN d;
        END IF;
    END IF;

    IF NOT v_included_ok THEN
        d.outcome := 'plan_upgrade_required';
        SELECT code INTO d.suggested_plan FROM plans
         WHERE active AND (CASE WHEN p_route_plans IS NOT NULL
                                THEN cardinality(p_route_plans) = 0 OR code = ANY (p_route_plans)
                                ELSE '*' = ANY (endpoints) OR p_endpoint = ANY (endpoints) END)
         ORDER BY price_minor, sort_order LIMIT 1;
        RETURN d;
    END IF;

    -- What the headers show, read without a lock (nothing is written here).
    SELECT CASE WHEN k.mode = 'live'
                THEN (CASE WHEN included_expires_at IS NOT NULL AND included_expires_at <= p_now THEN 0 ELSE included END) + purchased
                ELSE sandbox END,
           spend_cap, period_spent, low_balance_at
      INTO d.balance, d.spend_cap, d.period_spent, d.low_balance_at
      FROM org_meters WHERE org_id = k.org_id;
    d.outcome := 'ok';
    RETURN d;
END $$;
