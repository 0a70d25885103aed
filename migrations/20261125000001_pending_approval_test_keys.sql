-- Review of billing: a subscription waiting for approval is served by the
-- plan it replaces for test keys too (before, a test key already had the
-- requested plan's endpoints). gateway_authorize calls this function, so
-- metered calls follow.

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
