-- The metered API: API keys, the credit ledger, per-organization meters
-- (balances, spend cap, rate limiter state), payment methods (for the trial
-- rule), provider routes, and usage events. Forward-only.

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    mode         text NOT NULL CHECK (mode IN ('live', 'test')),
    -- For display only: "tg_live_AbCd" and the last four characters.
    prefix       text NOT NULL,
    last4        text NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    token_hash   bytea NOT NULL,
    scopes       text[] NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    rotated_from uuid REFERENCES api_keys (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX api_keys_token_hash_key ON api_keys (token_hash);
CREATE INDEX api_keys_org_idx ON api_keys (org_id, created_at DESC);

CREATE TABLE payment_methods (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    brand      text NOT NULL,
    last4      char(4) NOT NULL,
    exp_month  smallint NOT NULL,
    exp_year   smallint NOT NULL,
    is_default boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL,
    removed_at timestamptz
);
CREATE INDEX payment_methods_org_idx ON payment_methods (org_id) WHERE removed_at IS NULL;

-- One row per organization: the balances the ledger projects, the spend cap
-- and what this period spent, and the rate limiter's state. The hot path
-- locks this one row; CHECKs make a negative balance impossible.
CREATE TABLE org_meters (
    org_id              uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    included            bigint NOT NULL DEFAULT 0 CHECK (included >= 0),
    included_expires_at timestamptz,
    purchased           bigint NOT NULL DEFAULT 0 CHECK (purchased >= 0),
    sandbox             bigint NOT NULL DEFAULT 0 CHECK (sandbox >= 0),
    spend_cap           bigint CHECK (spend_cap >= 0),
    period_start        timestamptz NOT NULL,
    period_spent        bigint NOT NULL DEFAULT 0 CHECK (period_spent >= 0),
    low_balance_at      bigint NOT NULL DEFAULT 10 CHECK (low_balance_at >= 0),
    -- GCRA "theoretical arrival time" of the live and test rate limiters.
    rate_tat            timestamptz NOT NULL DEFAULT '-infinity'
);

-- The ledger: append-only, double-entry. A transaction's entries sum to
-- zero; customer accounts (included, purchased, sandbox) are projected into
-- org_meters in the same database transaction.
CREATE TABLE ledger_transactions (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN
                      ('grant', 'purchase', 'usage', 'refund', 'expiry', 'adjustment', 'sandbox_grant', 'sandbox_usage', 'sandbox_refund')),
    -- Every retryable write names itself; a retry finds the first and moves nothing.
    idempotency_key text NOT NULL UNIQUE,
    request_id      text,
    api_key_id      uuid,
    endpoint        text,
    memo            text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX ledger_transactions_org_idx ON ledger_transactions (org_id, created_at DESC);

CREATE TABLE ledger_entries (
    id             bigserial PRIMARY KEY,
    transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
    org_id         uuid NOT NULL,
    account        text NOT NULL CHECK (account IN
                     ('included', 'purchased', 'sandbox', 'revenue', 'grants', 'payments', 'expired', 'adjustments', 'sandbox_source', 'sandbox_sink')),
    amount         bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX ledger_entries_tx_idx ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_org_idx ON ledger_entries (org_id, account);

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Posts a balanced transaction: `accounts` and `amounts` pair up and must sum
-- to zero. Customer accounts move org_meters in the same transaction (their
-- CHECKs refuse a negative balance). Idempotent on `p_key`: a repeat returns
-- false and moves nothing.
CREATE FUNCTION ledger_post(
    p_org uuid, p_kind text, p_key text, p_accounts text[], p_amounts bigint[], p_now timestamptz,
    p_request_id text DEFAULT NULL, p_api_key uuid DEFAULT NULL, p_endpoint text DEFAULT NULL, p_memo text DEFAULT NULL
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_tx uuid := gen_random_uuid();
    i int;
BEGIN
    IF array_length(p_accounts, 1) IS DISTINCT FROM array_length(p_amounts, 1) THEN
        RAISE EXCEPTION 'ledger_post: accounts and amounts differ in length';
    END IF;
    IF (SELECT sum(a) FROM unnest(p_amounts) a) <> 0 THEN
        RAISE EXCEPTION 'ledger_post: entries of % do not balance', p_key;
    END IF;
    INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, memo, created_at)
    VALUES (v_tx, p_org, p_kind, p_key, p_request_id, p_api_key, p_endpoint, p_memo, p_now)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR i IN 1 .. array_length(p_accounts, 1) LOOP
        CONTINUE WHEN p_amounts[i] = 0;
        INSERT INTO ledger_entries (transaction_id, org_id, account, amount) VALUES (v_tx, p_org, p_accounts[i], p_amounts[i]);
        IF p_accounts[i] = 'included' THEN
            UPDATE org_meters SET included = included + p_amounts[i] WHERE org_id = p_org;
        ELSIF p_accounts[i] = 'purchased' THEN
            UPDATE org_meters SET purchased = purchased + p_amounts[i] WHERE org_id = p_org;
        ELSIF p_accounts[i] = 'sandbox' THEN
            UPDATE org_meters SET sandbox = sandbox + p_amounts[i] WHERE org_id = p_org;
        END IF;
    END LOOP;
    RETURN true;
END $$;

-- Provider routes: a path prefix under /v1 proxied to an upstream.
CREATE TABLE routes (
    id            uuid PRIMARY KEY,
    path_prefix   text NOT NULL UNIQUE CHECK (path_prefix ~ '^/v1/[a-z0-9/_-]+$'),
    upstream_url  text NOT NULL,
    endpoint      text NOT NULL UNIQUE,
    scope         text NOT NULL,
    -- Fixed: `price` per call. Metered: reserve `price`, capture what the
    -- upstream reports (Tollgate-Cost, or usage.total_tokens × rate_per_1k / 1000).
    pricing       text NOT NULL CHECK (pricing IN ('fixed', 'metered')),
    price         bigint NOT NULL CHECK (price >= 0),
    rate_per_1k   bigint NOT NULL DEFAULT 0 CHECK (rate_per_1k >= 0),
    plans         text[] NOT NULL DEFAULT '{}',
    timeout_ms    integer NOT NULL DEFAULT 30000 CHECK (timeout_ms > 0),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per metered call, written in batches off the hot path. A charged
-- call's row is also recoverable from its ledger transaction (same request id).
CREATE TABLE usage_events (
    request_id   text PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    api_key_id   uuid,
    mode         text NOT NULL,
    endpoint     text NOT NULL,
    method       text NOT NULL,
    status       smallint NOT NULL,
    problem_code text,
    credits      bigint NOT NULL DEFAULT 0,
    latency_us   bigint NOT NULL,
    problem_body jsonb,
    at           timestamptz NOT NULL
);
CREATE INDEX usage_events_org_idx ON usage_events (org_id, at DESC);

ALTER TABLE subscriptions ADD COLUMN trial_end timestamptz;

-- The gateway's decision for one call, made in one round trip and one
-- database transaction, in the pipeline order of the product: key, scope,
-- subscription, plan, rate limit, spend cap, reserve. A call that passes is
-- charged here (the check and the debit hold the same row lock, so no
-- interleaving of requests, connections or instances can overspend).
CREATE TYPE gateway_decision AS (
    outcome        text,       -- 'ok' or a problem code
    key_id         uuid,
    org_id         uuid,
    mode           text,
    plan_code      text,
    rate_per_sec   integer,
    rate_remaining integer,
    retry_after_ms bigint,
    balance        bigint,     -- available after this call (or when refused)
    charged        bigint,
    suggested_plan text,       -- for plan_upgrade_required
    in_grace_until timestamptz,
    spend_cap      bigint,
    period_spent   bigint
);

CREATE FUNCTION gateway_authorize(
    p_token_hash bytea, p_endpoint text, p_scope text, p_cost bigint, p_now timestamptz,
    p_request_id text, p_route_plans text[] DEFAULT NULL
) RETURNS gateway_decision LANGUAGE plpgsql AS $$
DECLARE
    d gateway_decision;
    k record;
    s record;
    m record;
    v_interval interval;
    v_tat timestamptz;
    v_included_ok boolean;
    v_from_included bigint;
    v_from_purchased bigint;
    v_tx uuid;
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
           p.code, p.rate_limit_per_sec, p.endpoints
      INTO s
      FROM subscriptions sub JOIN plans p ON p.id = sub.plan_id
     WHERE sub.org_id = k.org_id;
    IF NOT FOUND THEN
        d.outcome := 'subscription_expired'; RETURN d;
    END IF;
    d.plan_code := s.code; d.rate_per_sec := s.rate_limit_per_sec;

    -- Money states bind live keys only; test keys never touch real money.
    IF k.mode = 'live' THEN
        IF s.status = 'pending_approval' THEN
            d.outcome := 'subscription_pending_approval'; RETURN d;
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

    IF p_route_plans IS NOT NULL THEN
        v_included_ok := cardinality(p_route_plans) = 0 OR s.code = ANY (p_route_plans);
    ELSE
        v_included_ok := '*' = ANY (s.endpoints) OR p_endpoint = ANY (s.endpoints);
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

    SELECT * INTO m FROM org_meters WHERE org_id = k.org_id FOR UPDATE;
    IF NOT FOUND THEN
        d.outcome := 'insufficient_credits'; d.balance := 0; RETURN d;
    END IF;

    -- Rate limit (GCRA): one request per 1/rate seconds, bursts up to one
    -- second's worth. A refused request leaves the limiter as it was.
    v_interval := interval '1 second' / greatest(s.rate_limit_per_sec, 1);
    v_tat := greatest(m.rate_tat, p_now) + v_interval;
    IF v_tat - p_now > interval '1 second' THEN
        d.outcome := 'rate_limited';
        d.rate_remaining := 0;
        d.retry_after_ms := ceil(extract(epoch FROM (v_tat - p_now - interval '1 second')) * 1000);
        d.balance := CASE WHEN k.mode = 'live' THEN m.included + m.purchased ELSE m.sandbox END;
        RETURN d;
    END IF;
    d.rate_remaining := floor(extract(epoch FROM (interval '1 second' - (v_tat - p_now))) / extract(epoch FROM v_interval));

    -- Included credits lapse at the end of their period.
    IF m.included > 0 AND m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now THEN
        PERFORM ledger_post(k.org_id, 'expiry', 'expiry:' || k.org_id || ':' || m.included_expires_at,
                            ARRAY['included', 'expired'], ARRAY[-m.included, m.included], p_now);
        m.included := 0;
    END IF;

    d.spend_cap := m.spend_cap; d.period_spent := m.period_spent;
    IF k.mode = 'live' THEN
        IF m.spend_cap IS NOT NULL AND p_cost > 0 AND m.period_spent + p_cost > m.spend_cap THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = k.org_id;
            d.outcome := 'spend_cap_reached'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        IF m.included + m.purchased < p_cost THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = k.org_id;
            d.outcome := 'insufficient_credits'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        v_from_included := least(m.included, p_cost);
        v_from_purchased := p_cost - v_from_included;
        UPDATE org_meters
           SET rate_tat = v_tat, included = m.included - v_from_included,
               purchased = purchased - v_from_purchased, period_spent = period_spent + p_cost
         WHERE org_id = k.org_id;
        d.balance := m.included + m.purchased - p_cost;
        d.period_spent := m.period_spent + p_cost;
        IF p_cost > 0 THEN
            v_tx := gen_random_uuid();
            INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, created_at)
            VALUES (v_tx, k.org_id, 'usage', 'usage:' || p_request_id, p_request_id, k.id, p_endpoint, p_now);
            INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
            SELECT v_tx, k.org_id, a, x FROM (VALUES ('included', -v_from_included), ('purchased', -v_from_purchased), ('revenue', p_cost)) e (a, x)
             WHERE x <> 0;
        END IF;
    ELSE
        IF m.sandbox < p_cost THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = k.org_id;
            d.outcome := 'insufficient_credits'; d.balance := m.sandbox; RETURN d;
        END IF;
        UPDATE org_meters SET rate_tat = v_tat, sandbox = sandbox - p_cost WHERE org_id = k.org_id;
        d.balance := m.sandbox - p_cost;
        IF p_cost > 0 THEN
            v_tx := gen_random_uuid();
            INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, created_at)
            VALUES (v_tx, k.org_id, 'sandbox_usage', 'usage:' || p_request_id, p_request_id, k.id, p_endpoint, p_now);
            INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
            VALUES (v_tx, k.org_id, 'sandbox', -p_cost), (v_tx, k.org_id, 'sandbox_sink', p_cost);
        END IF;
    END IF;
    d.charged := p_cost;
    d.outcome := 'ok';
    RETURN d;
END $$;

-- Gives back `p_amount` of a call's charge (the unused part of a metered
-- reservation, or all of it when the upstream failed): to the accounts it
-- came from, purchased first. Idempotent per request. Returns the balance.
CREATE FUNCTION gateway_release(p_request_id text, p_amount bigint, p_now timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t record;
    v_purchased bigint;
    v_included bigint;
    v_back_p bigint;
    v_back_i bigint;
    v_balance bigint;
BEGIN
    SELECT id, org_id, kind INTO t FROM ledger_transactions WHERE idempotency_key = 'usage:' || p_request_id;
    IF NOT FOUND OR p_amount <= 0 THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM org_meters WHERE org_id = t.org_id FOR UPDATE;
    IF t.kind = 'sandbox_usage' THEN
        PERFORM ledger_post(t.org_id, 'sandbox_refund', 'release:' || p_request_id,
                            ARRAY['sandbox_sink', 'sandbox'], ARRAY[-p_amount, p_amount], p_now, p_request_id);
        SELECT sandbox INTO v_balance FROM org_meters WHERE org_id = t.org_id;
        RETURN v_balance;
    END IF;
    SELECT coalesce(-sum(amount) FILTER (WHERE account = 'purchased'), 0), coalesce(-sum(amount) FILTER (WHERE account = 'included'), 0)
      INTO v_purchased, v_included FROM ledger_entries WHERE transaction_id = t.id;
    v_back_p := least(p_amount, v_purchased);
    v_back_i := least(p_amount - v_back_p, v_included);
    IF v_back_p + v_back_i > 0 THEN
        IF ledger_post(t.org_id, 'refund', 'release:' || p_request_id,
                       ARRAY['revenue', 'purchased', 'included'], ARRAY[-(v_back_p + v_back_i), v_back_p, v_back_i], p_now, p_request_id) THEN
            UPDATE org_meters SET period_spent = greatest(period_spent - (v_back_p + v_back_i), 0) WHERE org_id = t.org_id;
        END IF;
    END IF;
    SELECT included + purchased INTO v_balance FROM org_meters WHERE org_id = t.org_id;
    RETURN v_balance;
END $$;

-- Organizations that exist already get their meters, this period's included
-- credits and the starting sandbox balance, through the ledger like any other.
INSERT INTO org_meters (org_id, included_expires_at, period_start)
SELECT s.org_id, s.current_period_end, s.current_period_start FROM subscriptions s
ON CONFLICT (org_id) DO NOTHING;
SELECT ledger_post(s.org_id, 'grant', 'grant:' || s.org_id || ':' || s.current_period_start,
                   ARRAY['grants', 'included'], ARRAY[-p.included_credits, p.included_credits], now(), NULL, NULL, NULL,
                   'included credits of the ' || p.name || ' plan')
  FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE p.included_credits > 0;
SELECT ledger_post(o.id, 'sandbox_grant', 'sandbox:' || o.id || ':start', ARRAY['sandbox_source', 'sandbox'],
                   ARRAY[-1000::bigint, 1000::bigint], now(), NULL, NULL, NULL, 'starting sandbox balance')
  FROM organizations o;
