-- The gateway's round trips (issue: the gateway at proxy speed). A charged
-- call used to update its organization's meter row twice: the rate
-- limiter's state, then the balances. It now writes both in one update;
-- a call refused for money, or one that moves nothing, writes the limiter
-- alone, as before.

CREATE OR REPLACE FUNCTION gateway_authorize(
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
    -- The limiter's new state is written with the balances below, in the
    -- one update of the row a call makes (or alone when the call is
    -- refused for money or moves nothing).

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
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
            d.outcome := 'spend_cap_reached'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        IF m.included + m.purchased < p_cost THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
            d.outcome := 'insufficient_credits'; d.balance := m.included + m.purchased; RETURN d;
        END IF;
        v_from_included := least(m.included, p_cost);
        v_from_purchased := p_cost - v_from_included;
        d.balance := m.included + m.purchased - p_cost;
        d.period_spent := m.period_spent + p_cost;
        IF p_cost IS NULL OR p_cost <= 0 THEN
            UPDATE org_meters SET rate_tat = v_tat WHERE org_id = d.org_id;
        ELSE
            UPDATE org_meters
               SET rate_tat = v_tat, included = included - v_from_included, purchased = purchased - v_from_purchased,
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
            UPDATE org_meters SET sandbox_rate_tat = v_tat WHERE org_id = d.org_id;
            d.outcome := 'insufficient_credits'; d.balance := m.sandbox; RETURN d;
        END IF;
        d.balance := m.sandbox - p_cost;
        IF p_cost IS NULL OR p_cost <= 0 THEN
            UPDATE org_meters SET sandbox_rate_tat = v_tat WHERE org_id = d.org_id;
        ELSE
            UPDATE org_meters SET sandbox_rate_tat = v_tat, sandbox = sandbox - p_cost WHERE org_id = d.org_id;
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
