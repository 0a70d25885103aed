-- The gateway's checks (key, scope, subscription, plan) become their own
-- function, `gateway_check`, which reads and locks nothing. `gateway_authorize`
-- runs it, then takes the organization's row lock for the rate limit and the
-- reservation as before. Calls that move no credits (a ping) use
-- `gateway_check` and `gateway_rate_lease` instead, so they no longer queue on
-- that lock one by one.

CREATE FUNCTION gateway_check(
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
           spend_cap, period_spent
      INTO d.balance, d.spend_cap, d.period_spent
      FROM org_meters WHERE org_id = k.org_id;
    d.outcome := 'ok';
    RETURN d;
END $$;

CREATE OR REPLACE FUNCTION gateway_authorize(
    p_token_hash bytea, p_endpoint text, p_scope text, p_cost bigint, p_now timestamptz,
    p_request_id text, p_route_plans text[] DEFAULT NULL
) RETURNS gateway_decision LANGUAGE plpgsql AS $$
DECLARE
    d gateway_decision;
    m record;
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
    SELECT * INTO m FROM org_meters WHERE org_id = d.org_id FOR UPDATE;
    IF NOT FOUND THEN
        d.outcome := 'insufficient_credits'; d.balance := 0; RETURN d;
    END IF;

    -- Rate limit (GCRA): one request per 1/rate seconds, bursts up to one
    -- second's worth. A refused request leaves the limiter as it was.
    v_interval := interval '1 second' / greatest(d.rate_per_sec, 1);
    v_tat := greatest(m.rate_tat, p_now) + v_interval;
    IF v_tat - p_now > interval '1 second' THEN
        d.outcome := 'rate_limited';
        d.rate_remaining := 0;
        d.retry_after_ms := ceil(extract(epoch FROM (v_tat - p_now - interval '1 second')) * 1000);
        d.balance := CASE WHEN d.mode = 'live' THEN m.included + m.purchased ELSE m.sandbox END;
        RETURN d;
    END IF;
    d.rate_remaining := floor(extract(epoch FROM (interval '1 second' - (v_tat - p_now))) / extract(epoch FROM v_interval));

    -- Included credits lapse at the end of their period.
    IF m.included > 0 AND m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now THEN
        PERFORM ledger_post(d.org_id, 'expiry', 'expiry:' || d.org_id || ':' || m.included_expires_at,
                            ARRAY['included', 'expired'], ARRAY[-m.included, m.included], p_now);
        m.included := 0;
    END IF;

    d.spend_cap := m.spend_cap; d.period_spent := m.period_spent;
    IF d.mode = 'live' THEN
        IF m.spend_cap IS NOT NULL AND p_cost > 0 AND m.period_spent + p_cost > m.spend_cap THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
            d.outcome := 'spend_cap_reached'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        IF m.included + m.purchased < p_cost THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
            d.outcome := 'insufficient_credits'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        v_from_included := least(m.included, p_cost);
        v_from_purchased := p_cost - v_from_included;
        UPDATE org_meters
           SET rate_tat = v_tat, included = m.included - v_from_included,
               purchased = purchased - v_from_purchased, period_spent = period_spent + p_cost
         WHERE org_id = d.org_id;
        d.balance := m.included + m.purchased - p_cost;
        d.period_spent := m.period_spent + p_cost;
        IF p_cost > 0 THEN
            v_tx := gen_random_uuid();
            INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, created_at)
            VALUES (v_tx, d.org_id, 'usage', 'usage:' || p_request_id, p_request_id, d.key_id, p_endpoint, p_now);
            INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
            SELECT v_tx, d.org_id, a, x FROM (VALUES ('included', -v_from_included), ('purchased', -v_from_purchased), ('revenue', p_cost)) e (a, x)
             WHERE x <> 0;
        END IF;
    ELSE
        IF m.sandbox < p_cost THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
            d.outcome := 'insufficient_credits'; d.balance := m.sandbox; RETURN d;
        END IF;
        UPDATE org_meters SET rate_tat = v_tat, sandbox = sandbox - p_cost WHERE org_id = d.org_id;
        d.balance := m.sandbox - p_cost;
        IF p_cost > 0 THEN
            v_tx := gen_random_uuid();
            INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, request_id, api_key_id, endpoint, created_at)
            VALUES (v_tx, d.org_id, 'sandbox_usage', 'usage:' || p_request_id, p_request_id, d.key_id, p_endpoint, p_now);
            INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
            VALUES (v_tx, d.org_id, 'sandbox', -p_cost), (v_tx, d.org_id, 'sandbox_sink', p_cost);
        END IF;
    END IF;
    d.charged := p_cost;
    d.outcome := 'ok';
    RETURN d;
END $$;

-- Rate-limit tokens in blocks, for calls that move no credits: the gateway
-- claims up to `p_want` calls' worth from the organization's limiter at once
-- and spends them in memory for at most a second. Claimed tokens are counted
-- here first, so no number of instances can admit more than the plan's rate;
-- tokens an instance leaves unspent are lost (it can admit less, never more).
CREATE FUNCTION gateway_rate_lease(p_org uuid, p_rate integer, p_want integer, p_now timestamptz,
                                   OUT granted integer, OUT remaining integer, OUT retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_interval interval := interval '1 second' / greatest(p_rate, 1);
    v_tat timestamptz;
    v_room integer;
BEGIN
    SELECT greatest(rate_tat, p_now) INTO v_tat FROM org_meters WHERE org_id = p_org FOR UPDATE;
    IF NOT FOUND THEN
        granted := 0; remaining := 0; retry_after_ms := 1000; RETURN;
    END IF;
    -- GCRA: a call is admitted while the theoretical arrival time stays
    -- within one second (the burst) of now.
    v_room := floor(extract(epoch FROM (interval '1 second' - (v_tat - p_now))) / extract(epoch FROM v_interval));
    granted := least(greatest(v_room, 0), greatest(p_want, 1));
    IF granted = 0 THEN
        remaining := 0;
        retry_after_ms := ceil(extract(epoch FROM (v_tat + v_interval - p_now - interval '1 second')) * 1000);
        RETURN;
    END IF;
    UPDATE org_meters SET rate_tat = v_tat + v_interval * granted WHERE org_id = p_org;
    remaining := v_room - granted;
    retry_after_ms := NULL;
END $$;
