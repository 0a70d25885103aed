-- Billing self-service: invoices with numbered lines, charges (one per
-- attempt, each with its idempotency key), processor webhook events
-- (deduplicated by id), saved cards as the processor references them, plan
-- changes (a pending downgrade, the plan that keeps serving while a plan
-- waits for approval), dunning, limits (auto top-up), notifications already
-- sent, and the sandbox processor's own records.
--
-- Replaced function: gateway_check keeps its signature; while a subscription
-- waits for approval, the plan it replaces keeps serving that plan's
-- endpoints (only the requested plan's extra endpoints get 402
-- subscription_pending_approval).

-- Cards: Tollgate keeps brand, last 4 and expiry, and the processor's
-- reference to the card (never its number or CVC).
ALTER TABLE payment_methods ADD COLUMN processor text NOT NULL DEFAULT 'sandbox';
ALTER TABLE payment_methods ADD COLUMN processor_ref text;
UPDATE payment_methods p SET is_default = false
 WHERE is_default AND removed_at IS NULL
   AND EXISTS (SELECT 1 FROM payment_methods q
                WHERE q.org_id = p.org_id AND q.is_default AND q.removed_at IS NULL
                  AND (q.created_at, q.id) > (p.created_at, p.id));
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (org_id) WHERE is_default AND removed_at IS NULL;

-- Plan changes.
ALTER TABLE subscriptions ADD COLUMN next_plan_id uuid REFERENCES plans (id);
ALTER TABLE subscriptions ADD COLUMN fallback_plan_id uuid REFERENCES plans (id);
ALTER TABLE subscriptions ADD COLUMN requested_at timestamptz;
ALTER TABLE subscriptions ADD COLUMN decision_note text;
ALTER TABLE subscriptions ADD COLUMN trial_used boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN subscriptions.next_plan_id IS 'a downgrade that applies at the end of the period';
COMMENT ON COLUMN subscriptions.fallback_plan_id IS 'while pending_approval: the plan it replaces, which keeps serving';

-- Limits: auto top-up (threshold, pack, at most this many a month) and
-- whether it may fire (disarmed when it fires, armed again once the balance
-- is back at or above the threshold).
ALTER TABLE org_meters ADD COLUMN auto_top_up_threshold bigint CHECK (auto_top_up_threshold > 0);
ALTER TABLE org_meters ADD COLUMN auto_top_up_pack bigint CHECK (auto_top_up_pack > 0);
ALTER TABLE org_meters ADD COLUMN auto_top_up_monthly_max integer NOT NULL DEFAULT 3 CHECK (auto_top_up_monthly_max BETWEEN 1 AND 100);
ALTER TABLE org_meters ADD COLUMN auto_top_up_armed boolean NOT NULL DEFAULT true;

CREATE SEQUENCE invoice_number_seq;

-- What a customer is billed: lines that sum to the total (checked when the
-- transaction commits), in integer minor units of one currency.
CREATE TABLE invoices (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    number          text NOT NULL UNIQUE,
    purpose         text NOT NULL CHECK (purpose IN ('subscription', 'renewal', 'proration', 'top_up', 'auto_top_up')),
    status          text NOT NULL CHECK (status IN ('open', 'paid', 'failed', 'void')),
    currency        char(3) NOT NULL,
    total_minor     bigint NOT NULL CHECK (total_minor > 0),
    -- Credits a top-up buys, or included credits an upgrade adds.
    credits         bigint NOT NULL DEFAULT 0 CHECK (credits >= 0),
    plan_id         uuid REFERENCES plans (id),
    period_start    timestamptz,
    period_end      timestamptz,
    -- Names the request that made it (a form's key, a renewal's period):
    -- the same request twice finds the first invoice.
    idempotency_key text NOT NULL UNIQUE,
    -- Still owed after a failure: retried by dunning and when a card changes.
    owed            boolean NOT NULL,
    failure_code    text,
    decline_code    text,
    next_attempt_at timestamptz,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX invoices_org_idx ON invoices (org_id, created_at DESC);
CREATE INDEX invoices_dunning_idx ON invoices (next_attempt_at) WHERE owed AND status = 'failed';

CREATE TABLE invoice_lines (
    invoice_id   uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no      integer NOT NULL CHECK (line_no > 0),
    description  text NOT NULL,
    quantity     bigint NOT NULL CHECK (quantity > 0),
    unit_minor   bigint NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor = quantity * unit_minor),
    PRIMARY KEY (invoice_id, line_no)
);

CREATE FUNCTION invoice_lines_sum() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_total bigint;
    v_sum bigint;
BEGIN
    SELECT total_minor INTO v_total FROM invoices WHERE id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(amount_minor), 0) INTO v_sum FROM invoice_lines WHERE invoice_id = NEW.id;
    IF v_sum <> v_total THEN
        RAISE EXCEPTION 'invoice %: lines sum to %, total is %', NEW.id, v_sum, v_total;
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER invoices_lines_sum AFTER INSERT OR UPDATE OF total_minor ON invoices
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION invoice_lines_sum();

-- One row per attempt to collect an invoice. Each carries its own
-- idempotency key to the processor; at most one is pending per invoice.
CREATE TABLE charges (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    invoice_id        uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    attempt           integer NOT NULL CHECK (attempt > 0),
    idempotency_key   text NOT NULL UNIQUE,
    payment_method_id uuid REFERENCES payment_methods (id),
    processor         text NOT NULL,
    processor_ref     text,
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    currency          char(3) NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_code      text,
    decline_code      text,
    created_at        timestamptz NOT NULL,
    settled_at        timestamptz,
    UNIQUE (invoice_id, attempt)
);
CREATE UNIQUE INDEX charges_one_pending ON charges (invoice_id) WHERE status = 'pending';
CREATE INDEX charges_org_idx ON charges (org_id, created_at DESC);

-- Processor events already applied: a duplicate delivery finds its id here.
CREATE TABLE webhook_events (
    event_id    text PRIMARY KEY,
    processor   text NOT NULL,
    type        text NOT NULL,
    charge_id   uuid,
    received_at timestamptz NOT NULL
);

-- Billing notifications already sent (one per organization and reason).
CREATE TABLE billing_notices (
    org_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    reason  text NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, reason)
);

-- The sandbox processor's own records: they stand for a card processor's
-- systems, which Tollgate reaches only through the processor interface.
-- A saved card keeps what its test number does, never the number.
CREATE TABLE sandbox_cards (
    token      text PRIMARY KEY,
    behaviour  text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE sandbox_charges (
    id              text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    card_token      text NOT NULL,
    amount_minor    bigint NOT NULL,
    currency        char(3) NOT NULL,
    failure_code    text,
    decline_code    text,
    created_at      timestamptz NOT NULL
);
-- Events waiting to be delivered to the webhook endpoint (retried).
CREATE TABLE sandbox_events (
    id              text PRIMARY KEY,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL
);
CREATE INDEX sandbox_events_due_idx ON sandbox_events (next_attempt_at) WHERE delivered_at IS NULL;

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
    SELECT id, org_id, mode, scopes, expires_at, revoked_at INTO k FROM api_keys WHERE token_hash = p_token_hash;
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

    -- Money states bind live keys only; test keys never touch real money.
    IF k.mode = 'live' THEN
        IF s.status = 'pending_approval' THEN
            -- Until approved, the plan it replaces serves its own endpoints.
            IF v_fallback_ok THEN
                d.plan_code := s.fb_code; d.rate_per_sec := s.fb_rate;
            ELSIF v_included_ok OR s.fb_code IS NULL THEN
                d.outcome := 'subscription_pending_approval'; RETURN d;
            END IF;
            v_included_ok := v_fallback_ok;
        ELSIF s.status = 'unpaid' THEN
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
