-- Money holes found in review, closed:
--
-- 1. Every balance change is relative (`x = x - n`) and written with its
--    ledger entries in the same transaction. `gateway_authorize` used to set
--    `included` to a value computed before the expiry posting, which could
--    erase credits the ledger still held.
-- 2. A release after the included credits' period ended gives their part back
--    to the `expired` account, not to `included`.
-- 3. Open reservations are recorded in `gateway_holds`, in the transaction
--    that reserves them. The call settles its hold (`gateway_settle`); a job
--    settles any hold that outlives its deadline, so a reservation never
--    outlives the instance that made it.
-- 4. Test keys have their own rate limiter (`sandbox_rate_tat`), so sandbox
--    traffic never spends the live limit.
--
-- 5. The decision carries the organization's low-balance threshold
--    (`org_meters.low_balance_at`), which the gateway's warning follows.
--
-- Replaced functions: gateway_check keeps its signature (it also reads the
-- low-balance threshold); gateway_authorize(bytea, text, text, bigint,
-- timestamptz, text, text[]) becomes gateway_authorize(..., timestamptz) with
-- the hold's deadline; gateway_rate_lease(uuid, integer, integer, timestamptz)
-- becomes gateway_rate_lease(uuid, text, integer, integer, timestamptz) with
-- the key's mode; gateway_release keeps its signature.

ALTER TABLE org_meters ADD COLUMN sandbox_rate_tat timestamptz NOT NULL DEFAULT '-infinity';
COMMENT ON COLUMN org_meters.rate_tat IS 'GCRA theoretical arrival time of the live rate limiter';
COMMENT ON COLUMN org_meters.sandbox_rate_tat IS 'GCRA theoretical arrival time of the test keys'' rate limiter';

-- A reservation whose call has not settled yet. `settle_after` is past the
-- longest the call can take (twice the route's timeout plus a margin), so the
-- job never settles a call that is still running.
CREATE TABLE gateway_holds (
    request_id   text PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    amount       bigint NOT NULL CHECK (amount > 0),
    settle_after timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX gateway_holds_due_idx ON gateway_holds (settle_after);

ALTER TYPE gateway_decision ADD ATTRIBUTE low_balance_at bigint;

CREATE OR REPLACE FUNCTION gateway_check(
    p_token_hash bytea, p_endpoint text, p_scope text, p_now timestamptz, p_route_plans text[] DEFAULT NULL
) RETURNS gateway_decision LANGUAGE plpgsql STABLE AS $$
DECLARE
    d gateway_decision;
    k record;
    s record;
    v_included_ok boolean;
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

DROP FUNCTION gateway_authorize(bytea, text, text, bigint, timestamptz, text, text[]);

CREATE FUNCTION gateway_authorize(
    p_token_hash bytea, p_endpoint text, p_scope text, p_cost bigint, p_now timestamptz,
    p_request_id text, p_route_plans text[] DEFAULT NULL, p_hold_until timestamptz DEFAULT NULL
) RETURNS gateway_decision LANGUAGE plpgsql AS $$
DECLARE
    d gateway_decision;
    m record;
    v_live boolean;
    v_interval interval;
    v_tat timestamptz;
    v_from_included bigint;
    v_from_purchased bigint;
    v_tx uuid;
BEGIN
    d := gateway_check(p_token_hash, p_endpoint, p_scope, p_now, p_route_plans);
    IF d.outcome <> 'ok' THEN
        RETURN d;
    END IF;
    d.outcome := NULL; d.balance := NULL; d.spend_cap := NULL; d.period_spent := NULL;
    d.charged := 0;
    v_live := d.mode = 'live';
    SELECT * INTO m FROM org_meters WHERE org_id = d.org_id FOR UPDATE;
    IF NOT FOUND THEN
        d.outcome := 'insufficient_credits'; d.balance := 0; RETURN d;
    END IF;
    d.low_balance_at := m.low_balance_at;

    -- Rate limit (GCRA), one limiter per mode: one request per 1/rate
    -- seconds, bursts up to one second's worth. A refused request leaves the
    -- limiter as it was.
    v_interval := interval '1 second' / greatest(d.rate_per_sec, 1);
    v_tat := greatest(CASE WHEN v_live THEN m.rate_tat ELSE m.sandbox_rate_tat END, p_now) + v_interval;
    IF v_tat - p_now > interval '1 second' THEN
        d.outcome := 'rate_limited';
        d.rate_remaining := 0;
        d.retry_after_ms := ceil(extract(epoch FROM (v_tat - p_now - interval '1 second')) * 1000);
        d.balance := CASE WHEN v_live THEN m.included + m.purchased ELSE m.sandbox END;
        RETURN d;
    END IF;
    d.rate_remaining := floor(extract(epoch FROM (interval '1 second' - (v_tat - p_now))) / extract(epoch FROM v_interval));
    IF v_live THEN
        UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
    ELSE
        UPDATE org_meters SET sandbox_rate_tat = v_tat WHERE org_id = d.org_id;
    END IF;

    -- Included credits lapse at the end of their period: whatever the
    -- projection holds then moves to `expired`, and is read back from it.
    IF m.included > 0 AND m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now THEN
        PERFORM ledger_post(d.org_id, 'expiry', 'expiry:' || d.org_id || ':' || m.included_expires_at || ':' || p_request_id,
                            ARRAY['included', 'expired'], ARRAY[-m.included, m.included], p_now);
        SELECT included INTO m.included FROM org_meters WHERE org_id = d.org_id;
    END IF;

    d.spend_cap := m.spend_cap; d.period_spent := m.period_spent;
    IF v_live THEN
        IF m.spend_cap IS NOT NULL AND p_cost > 0 AND m.period_spent + p_cost > m.spend_cap THEN
            d.outcome := 'spend_cap_reached'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        IF m.included + m.purchased < p_cost THEN
            d.outcome := 'insufficient_credits'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        v_from_included := least(m.included, p_cost);
        v_from_purchased := p_cost - v_from_included;
        d.balance := m.included + m.purchased - p_cost;
        d.period_spent := m.period_spent + p_cost;
        IF p_cost > 0 THEN
            UPDATE org_meters
               SET included = included - v_from_included, purchased = purchased - v_from_purchased,
                   period_spent = period_spent + p_cost
             WHERE org_id = d.org_id;
            v_tx := gen_random_uuid();
            INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, created_at)
            VALUES (v_tx, d.org_id, 'usage', 'usage:' || p_request_id, p_request_id, d.key_id, p_endpoint, p_now);
            INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
            SELECT v_tx, d.org_id, a, x FROM (VALUES ('included', -v_from_included), ('purchased', -v_from_purchased), ('revenue', p_cost)) e (a, x)
             WHERE x <> 0;
        END IF;
    ELSE
        IF m.sandbox < p_cost THEN
            d.outcome := 'insufficient_credits'; d.balance := m.sandbox; RETURN d;
        END IF;
        d.balance := m.sandbox - p_cost;
        IF p_cost > 0 THEN
            UPDATE org_meters SET sandbox = sandbox - p_cost WHERE org_id = d.org_id;
            v_tx := gen_random_uuid();
            INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, created_at)
            VALUES (v_tx, d.org_id, 'sandbox_usage', 'usage:' || p_request_id, p_request_id, d.key_id, p_endpoint, p_now);
            INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
            VALUES (v_tx, d.org_id, 'sandbox', -p_cost), (v_tx, d.org_id, 'sandbox_sink', p_cost);
        END IF;
    END IF;
    IF p_cost > 0 AND p_hold_until IS NOT NULL THEN
        INSERT INTO gateway_holds (request_id, org_id, amount, settle_after, created_at)
        VALUES (p_request_id, d.org_id, p_cost, p_hold_until, p_now);
    END IF;
    d.charged := p_cost;
    d.outcome := 'ok';
    RETURN d;
END $$;

-- Gives back `p_amount` of a call's charge to the accounts it came from,
-- purchased first. Included credits whose period has ended by `p_now` go to
-- `expired` instead: they would have lapsed had the call never run.
-- Idempotent per request. Returns the balance of the call's mode.
CREATE OR REPLACE FUNCTION gateway_release(p_request_id text, p_amount bigint, p_now timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t record;
    m record;
    v_purchased bigint;
    v_included bigint;
    v_back_p bigint;
    v_back_i bigint;
    v_lapsed boolean;
    v_balance bigint;
BEGIN
    SELECT id, org_id, kind, created_at INTO t FROM ledger_transactions WHERE idempotency_key = 'usage:' || p_request_id;
    IF NOT FOUND OR p_amount <= 0 THEN
        RETURN NULL;
    END IF;
    SELECT included_expires_at, period_start INTO m FROM org_meters WHERE org_id = t.org_id FOR UPDATE;
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
    v_lapsed := (m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now) OR t.created_at < m.period_start;
    IF v_back_p + v_back_i > 0 THEN
        IF ledger_post(t.org_id, 'refund', 'release:' || p_request_id,
                       ARRAY['revenue', 'purchased', CASE WHEN v_lapsed THEN 'expired' ELSE 'included' END],
                       ARRAY[-(v_back_p + v_back_i), v_back_p, v_back_i], p_now, p_request_id)
           AND t.created_at >= m.period_start THEN
            UPDATE org_meters SET period_spent = greatest(period_spent - (v_back_p + v_back_i), 0) WHERE org_id = t.org_id;
        END IF;
    END IF;
    SELECT included + purchased INTO v_balance FROM org_meters WHERE org_id = t.org_id;
    RETURN v_balance;
END $$;

-- Settles a held reservation: the hold is taken (deleted) and `p_release` of
-- it given back, in one transaction. Only one settlement can take a hold, so
-- a call that finishes late and the job that settles lapsed holds never both
-- act: the loser sees `settled = false` and moves nothing.
CREATE FUNCTION gateway_settle(p_request_id text, p_release bigint, p_now timestamptz,
                               OUT settled boolean, OUT balance bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_amount bigint;
BEGIN
    DELETE FROM gateway_holds WHERE request_id = p_request_id RETURNING amount INTO v_amount;
    IF NOT FOUND THEN
        settled := false; balance := NULL; RETURN;
    END IF;
    settled := true;
    balance := gateway_release(p_request_id, least(greatest(p_release, 0), v_amount), p_now);
END $$;

DROP FUNCTION gateway_rate_lease(uuid, integer, integer, timestamptz);

-- Rate-limit tokens in blocks, for calls that move no credits, from the
-- limiter of the key's mode (see 20261122000002_gateway_check.sql).
CREATE FUNCTION gateway_rate_lease(p_org uuid, p_mode text, p_rate integer, p_want integer, p_now timestamptz,
                                   OUT granted integer, OUT remaining integer, OUT retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_interval interval := interval '1 second' / greatest(p_rate, 1);
    v_tat timestamptz;
    v_room integer;
BEGIN
    SELECT greatest(CASE WHEN p_mode = 'live' THEN rate_tat ELSE sandbox_rate_tat END, p_now) INTO v_tat
      FROM org_meters WHERE org_id = p_org FOR UPDATE;
    IF NOT FOUND THEN
        granted := 0; remaining := 0; retry_after_ms := 1000; RETURN;
    END IF;
    v_room := floor(extract(epoch FROM (interval '1 second' - (v_tat - p_now))) / extract(epoch FROM v_interval));
    granted := least(greatest(v_room, 0), greatest(p_want, 1));
    IF granted = 0 THEN
        remaining := 0;
        retry_after_ms := ceil(extract(epoch FROM (v_tat + v_interval - p_now - interval '1 second')) * 1000);
        RETURN;
    END IF;
    IF p_mode = 'live' THEN
        UPDATE org_meters SET rate_tat = v_tat + v_interval * granted WHERE org_id = p_org;
    ELSE
        UPDATE org_meters SET sandbox_rate_tat = v_tat + v_interval * granted WHERE org_id = p_org;
    END IF;
    remaining := v_room - granted;
    retry_after_ms := NULL;
END $$;
