-- The gateway at proxy speed, still exact (issue: credit leases, decisions
-- in memory, charges journalled in batches).
--
-- 1. Decisions in memory: each instance keeps keys, organizations'
--    subscription state and plans in memory; these triggers announce every
--    change that can alter a decision on `tollgate_gateway`.
-- 2. Rate limits off the meter row: the limiters get their own table; every
--    call (charged ones too) spends tokens an instance claimed in blocks.
-- 3. Credit leases: an instance moves a block of an organization's credits
--    into the `escrow` account, spends it in memory and returns the rest.
-- 4. The journal: finished charges are posted per lease and batch, with
--    their usage events, in one transaction.

-- 1. What invalidates a cached decision. `UPDATE OF` lists the columns a
-- decision reads, so the usage writer's `last_used_at` moves stay quiet.
CREATE FUNCTION gateway_cache_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'plans' THEN
        PERFORM pg_notify('tollgate_gateway', 'all');
    ELSIF TG_TABLE_NAME = 'organizations' THEN
        PERFORM pg_notify('tollgate_gateway', 'org:' || coalesce(NEW.id, OLD.id));
    ELSE
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('tollgate_gateway', 'org:' || OLD.org_id);
        END IF;
        IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.org_id IS DISTINCT FROM OLD.org_id) THEN
            PERFORM pg_notify('tollgate_gateway', 'org:' || NEW.org_id);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_gateway_cache AFTER INSERT OR DELETE OR UPDATE OF org_id, mode, token_hash, scopes, expires_at, revoked_at
    ON api_keys FOR EACH ROW EXECUTE FUNCTION gateway_cache_notify();
CREATE TRIGGER organizations_gateway_cache AFTER DELETE OR UPDATE OF keys_suspended_at
    ON organizations FOR EACH ROW EXECUTE FUNCTION gateway_cache_notify();
CREATE TRIGGER subscriptions_gateway_cache AFTER INSERT OR UPDATE OR DELETE
    ON subscriptions FOR EACH ROW EXECUTE FUNCTION gateway_cache_notify();
CREATE TRIGGER payment_methods_gateway_cache AFTER INSERT OR UPDATE OR DELETE
    ON payment_methods FOR EACH ROW EXECUTE FUNCTION gateway_cache_notify();
CREATE TRIGGER plans_gateway_cache AFTER INSERT OR UPDATE OR DELETE
    ON plans FOR EACH ROW EXECUTE FUNCTION gateway_cache_notify();
-- A new spend cap or alert threshold, and balances moved by anything but
-- the gateway itself (its connections set `tollgate.gateway`): a top-up, a
-- grant, an adjustment. A lowered cap also ends the organization's leases
-- (they were counted against the old one).
CREATE TRIGGER org_meters_gateway_cache AFTER INSERT OR DELETE
    ON org_meters FOR EACH ROW EXECUTE FUNCTION gateway_cache_notify();
CREATE TRIGGER org_meters_gateway_cache_update AFTER UPDATE ON org_meters FOR EACH ROW
    WHEN (OLD.spend_cap IS DISTINCT FROM NEW.spend_cap OR OLD.low_balance_at IS DISTINCT FROM NEW.low_balance_at
          OR (current_setting('tollgate.gateway', true) IS DISTINCT FROM 'on'
              AND (OLD.included, OLD.purchased, OLD.sandbox, OLD.included_expires_at)
                  IS DISTINCT FROM (NEW.included, NEW.purchased, NEW.sandbox, NEW.included_expires_at)))
    EXECUTE FUNCTION gateway_cache_notify();

-- The plan suggested for an upgrade is now chosen in a total order (the
-- same as the decisions in memory): by price, sort order, then code.
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
         ORDER BY price_minor, sort_order, code COLLATE "C" LIMIT 1;
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

-- 2. The rate limiters (GCRA "theoretical arrival time"), one per
-- organization and mode, off the meter row that charges lock.
CREATE TABLE gateway_limiters (
    org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    mode   text NOT NULL CHECK (mode IN ('live', 'test')),
    tat    timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (org_id, mode)
);
INSERT INTO gateway_limiters (org_id, mode, tat) SELECT org_id, 'live', rate_tat FROM org_meters;
INSERT INTO gateway_limiters (org_id, mode, tat) SELECT org_id, 'test', sandbox_rate_tat FROM org_meters;
ALTER TABLE org_meters DROP COLUMN rate_tat, DROP COLUMN sandbox_rate_tat;

CREATE OR REPLACE FUNCTION gateway_rate_lease(p_org uuid, p_mode text, p_rate integer, p_want integer, p_now timestamptz,
                                              OUT granted integer, OUT remaining integer, OUT retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_interval interval := interval '1 second' / greatest(p_rate, 1);
    v_tat timestamptz;
    v_room integer;
BEGIN
    SELECT greatest(tat, p_now) INTO v_tat FROM gateway_limiters WHERE org_id = p_org AND mode = p_mode FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO gateway_limiters (org_id, mode)
        SELECT p_org, p_mode WHERE EXISTS (SELECT 1 FROM org_meters WHERE org_id = p_org)
        ON CONFLICT DO NOTHING;
        SELECT greatest(tat, p_now) INTO v_tat FROM gateway_limiters WHERE org_id = p_org AND mode = p_mode FOR UPDATE;
        IF NOT FOUND THEN
            granted := 0; remaining := 0; retry_after_ms := 1000; RETURN;
        END IF;
    END IF;
    v_room := floor(extract(epoch FROM (interval '1 second' - (v_tat - p_now))) / extract(epoch FROM v_interval));
    granted := least(greatest(v_room, 0), greatest(p_want, 1));
    IF granted = 0 THEN
        remaining := 0;
        retry_after_ms := ceil(extract(epoch FROM (v_tat + v_interval - p_now - interval '1 second')) * 1000);
        RETURN;
    END IF;
    UPDATE gateway_limiters SET tat = v_tat + v_interval * granted WHERE org_id = p_org AND mode = p_mode;
    remaining := v_room - granted;
    retry_after_ms := NULL;
END $$;

-- The exact per-call path, without the rate limit (the caller spent a
-- token of its limiter first): spend cap, then the reservation, under the
-- organization's row lock. Unchanged otherwise; a call refused for money
-- writes nothing.
CREATE OR REPLACE FUNCTION gateway_authorize(
    p_token_hash bytea, p_endpoint text, p_scope text, p_cost bigint, p_now timestamptz,
    p_request_id text, p_route_plans text[] DEFAULT NULL, p_hold_until timestamptz DEFAULT NULL
) RETURNS gateway_decision LANGUAGE plpgsql AS $$
DECLARE
    d gateway_decision;
    m record;
    v_live boolean;
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

    IF m.included > 0 AND m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now THEN
        PERFORM ledger_post(d.org_id, 'expiry', 'expiry:' || d.org_id || ':' || m.included_expires_at || ':' || p_request_id,
                            ARRAY['included', 'expired'], ARRAY[-m.included, m.included], p_now);
        SELECT included INTO m.included FROM org_meters WHERE org_id = d.org_id;
    END IF;

    d.spend_cap := m.spend_cap; d.period_spent := m.period_spent;
    IF v_live THEN
        IF (m.spend_cap IS NOT NULL AND p_cost > 0 AND m.period_spent + p_cost > m.spend_cap)
           OR m.included + m.purchased < p_cost THEN
            -- Refused for money while leases hold some of it: their holders
            -- are asked to give them back (they do within about a second).
            IF EXISTS (SELECT 1 FROM credit_leases WHERE org_id = d.org_id AND closed_at IS NULL) THEN
                PERFORM pg_notify('tollgate_gateway', 'org:' || d.org_id);
            END IF;
            d.outcome := CASE WHEN m.spend_cap IS NOT NULL AND p_cost > 0 AND m.period_spent + p_cost > m.spend_cap
                              THEN 'spend_cap_reached' ELSE 'insufficient_credits' END;
            d.balance := m.included + m.purchased;
            RETURN d;
        END IF;
        v_from_included := least(m.included, p_cost);
        v_from_purchased := p_cost - v_from_included;
        d.balance := m.included + m.purchased - greatest(p_cost, 0);
        IF p_cost > 0 THEN
            d.period_spent := m.period_spent + p_cost;
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
        d.balance := m.sandbox - greatest(p_cost, 0);
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
    d.charged := greatest(p_cost, 0);
    d.outcome := 'ok';
    RETURN d;
END $$;

-- 3. Credit leases.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_check,
    ADD CONSTRAINT ledger_entries_account_check CHECK (account IN
        ('included', 'purchased', 'sandbox', 'revenue', 'grants', 'payments', 'expired', 'adjustments',
         'sandbox_source', 'sandbox_sink', 'escrow'));
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check,
    ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
        ('grant', 'purchase', 'usage', 'refund', 'expiry', 'adjustment', 'sandbox_grant', 'sandbox_usage', 'sandbox_refund',
         'lease', 'lease_return', 'usage_batch'));

-- A block of live credits an instance spends in memory. `escrow` in the
-- ledger holds, per organization, the open leases' `amount - spent`.
-- Included credits are spent first (`from_included` of them came from the
-- included balance), as on the exact path.
CREATE TABLE credit_leases (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The instance that took it: only it may post batches against it.
    instance      uuid NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    from_included bigint NOT NULL CHECK (from_included >= 0 AND from_included <= amount),
    spent         bigint NOT NULL DEFAULT 0 CHECK (spent >= 0 AND spent <= amount),
    batches       bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    -- The organization's period when it was taken: it counts against that
    -- period's spend cap only.
    period_start  timestamptz NOT NULL,
    -- Renewed by each batch; past it, any instance may reclaim the lease.
    expires_at    timestamptz NOT NULL,
    closed_at     timestamptz,
    closed_how    text CHECK (closed_how IN ('returned', 'reclaimed')),
    CHECK ((closed_at IS NULL) = (closed_how IS NULL))
);
CREATE INDEX credit_leases_open_idx ON credit_leases (org_id, expires_at) WHERE closed_at IS NULL;
CREATE INDEX credit_leases_open_expiry_idx ON credit_leases (expires_at) WHERE closed_at IS NULL;

-- Closes a lease: what was not spent goes back (purchased credits first,
-- the included rest, or to `expired` when the included credits lapsed or
-- the period changed since the lease was taken), and no longer counts
-- against the spend cap. `p_how = 'reclaimed'` only once it has expired.
-- Lock order: the organization's meter row, then the lease (as taking
-- one). Returns whether this call closed it.
CREATE FUNCTION gateway_lease_close(p_lease uuid, p_how text, p_now timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_org uuid;
    m record;
    l record;
    v_left bigint;
    v_back_i bigint;
    v_lapsed boolean;
BEGIN
    SELECT org_id INTO v_org FROM credit_leases WHERE id = p_lease;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT included_expires_at, period_start INTO m FROM org_meters WHERE org_id = v_org FOR UPDATE;
    SELECT * INTO l FROM credit_leases WHERE id = p_lease FOR UPDATE;
    IF l.closed_at IS NOT NULL OR (p_how = 'reclaimed' AND l.expires_at > p_now) THEN
        RETURN false;
    END IF;
    v_left := l.amount - l.spent;
    v_back_i := greatest(l.from_included - l.spent, 0);
    v_lapsed := (m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now) OR l.period_start <> m.period_start;
    IF v_left > 0 THEN
        PERFORM ledger_post(v_org, 'lease_return', 'lease_close:' || p_lease,
                            ARRAY['escrow', 'purchased', CASE WHEN v_lapsed THEN 'expired' ELSE 'included' END],
                            ARRAY[-v_left, v_left - v_back_i, v_back_i], p_now);
        IF l.period_start = m.period_start THEN
            UPDATE org_meters SET period_spent = greatest(period_spent - v_left, 0) WHERE org_id = v_org;
        END IF;
    END IF;
    UPDATE credit_leases SET closed_at = p_now, closed_how = p_how WHERE id = p_lease;
    RETURN true;
END $$;

-- Every lease past its expiry, closed and its rest given back; by any
-- instance (a periodic job, and before taking a lease). Returns how many.
CREATE FUNCTION gateway_lease_reclaim(p_now timestamptz, p_org uuid DEFAULT NULL) RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::int FROM (
        SELECT gateway_lease_close(id, 'reclaimed', p_now) AS closed
          FROM credit_leases
         WHERE closed_at IS NULL AND expires_at <= p_now AND (p_org IS NULL OR org_id = p_org)
         ORDER BY id) c
     WHERE closed
$$;

-- Takes a lease of at most `p_want` credits, and never more than an eighth
-- of what the organization may still spend (its balance, and what its
-- spend cap leaves): the credits move to `escrow` and count as spent this
-- period until they come back. Nothing when that room is below
-- `p_min_room`: the organization's calls then take the exact path, so its
-- last credits are never held in another instance's lease.
CREATE FUNCTION gateway_lease_take(p_org uuid, p_instance uuid, p_want bigint, p_min_room bigint, p_now timestamptz, p_ttl interval,
                                   OUT lease_id uuid, OUT amount bigint, OUT balance bigint, OUT spend_cap bigint,
                                   OUT period_spent bigint, OUT low_balance_at bigint, OUT lapses_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    m record;
    v_room bigint;
    v_included bigint;
BEGIN
    PERFORM 1 FROM org_meters WHERE org_id = p_org FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM gateway_lease_reclaim(p_now, p_org);
    SELECT * INTO m FROM org_meters WHERE org_id = p_org;
    IF m.included > 0 AND m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now THEN
        PERFORM ledger_post(p_org, 'expiry', 'expiry:' || p_org || ':' || m.included_expires_at || ':lease:' || gen_random_uuid(),
                            ARRAY['included', 'expired'], ARRAY[-m.included, m.included], p_now);
        m.included := 0;
    END IF;
    balance := m.included + m.purchased;
    spend_cap := m.spend_cap; period_spent := m.period_spent; low_balance_at := m.low_balance_at;
    v_room := CASE WHEN m.spend_cap IS NULL THEN balance ELSE least(balance, m.spend_cap - m.period_spent) END;
    IF v_room < greatest(p_min_room, 8) THEN
        RETURN;
    END IF;
    amount := least(p_want, v_room / 8);
    v_included := least(m.included, amount);
    lease_id := gen_random_uuid();
    PERFORM ledger_post(p_org, 'lease', 'lease:' || lease_id, ARRAY['included', 'purchased', 'escrow'],
                        ARRAY[-v_included, -(amount - v_included), amount], p_now);
    UPDATE org_meters o SET period_spent = o.period_spent + amount WHERE o.org_id = p_org;
    INSERT INTO credit_leases (id, org_id, instance, amount, from_included, created_at, period_start, expires_at)
    VALUES (lease_id, p_org, p_instance, amount, v_included, p_now, m.period_start, p_now + p_ttl);
    balance := balance - amount;
    period_spent := period_spent + amount;
    -- Included credits in the lease may not be spent past their period.
    lapses_at := CASE WHEN v_included > 0 THEN m.included_expires_at END;
END $$;

-- Keeps a lease in use from expiring; false when it was closed (fenced).
CREATE FUNCTION gateway_lease_renew(p_lease uuid, p_instance uuid, p_now timestamptz, p_ttl interval) RETURNS boolean
LANGUAGE sql AS $$
    WITH renewed AS (
        UPDATE credit_leases SET expires_at = greatest(expires_at, p_now + p_ttl)
         WHERE id = p_lease AND instance = p_instance AND closed_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- 4. The journal. A batched event names its batch's ledger transaction.
ALTER TABLE usage_events ADD COLUMN journal text;
CREATE INDEX usage_events_journal_idx ON usage_events (journal) WHERE journal IS NOT NULL;

-- Each batch's part per lease: what it charged, and how much of that came
-- from the purchased balance (included credits are spent first), so a void
-- gives back exactly that.
CREATE TABLE journal_batches (
    idempotency_key text PRIMARY KEY,
    lease_id        uuid NOT NULL REFERENCES credit_leases (id) ON DELETE CASCADE,
    org_id          uuid NOT NULL,
    credits         bigint NOT NULL CHECK (credits >= 0),
    purchased       bigint NOT NULL CHECK (purchased >= 0 AND purchased <= credits),
    first_at        timestamptz NOT NULL,
    last_at         timestamptz NOT NULL,
    created_at      timestamptz NOT NULL
);

-- Batches whose calls were answered 503 before their commit could be
-- confirmed, and which never committed: refused should they arrive late.
CREATE TABLE journal_voids (
    idempotency_key text PRIMARY KEY,
    at              timestamptz NOT NULL
);

-- Posts a batch of finished charges: per lease, one balanced transaction
-- (escrow to revenue) keyed by the instance's batch number and the lease's
-- `spent` moved by it, and every standing call's usage event (one statement
-- per table: the rollups lock their rows in one order); all in the caller's
-- one transaction. Leases are renewed apart (`gateway_lease_renew`), so a
-- batch's update of its lease touches no index. A lease that was closed (returned, or reclaimed after it
-- expired) or is another instance's refuses its part: fenced, nothing of it
-- is written. So does a batch past `p_deadline` (the database's clock): its
-- calls were answered 503 already. A retried batch finds its key and moves
-- nothing again. Returns each lease of the batch and whether its part stands.
CREATE FUNCTION gateway_journal(
    p_instance uuid, p_batch bigint, p_now timestamptz, p_deadline timestamptz,
    p_leases uuid[], p_request_ids text[], p_keys uuid[], p_endpoints text[], p_methods text[],
    p_statuses int2[], p_credits int8[], p_latencies int8[], p_ats timestamptz[]
) RETURNS TABLE (lease uuid, posted boolean) LANGUAGE plpgsql AS $$
BEGIN
    -- The leases, locked in one order (a close waits for the batch).
    PERFORM 1 FROM credit_leases WHERE id = ANY (p_leases) ORDER BY id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM (SELECT x.le, sum(x.cr) AS s FROM unnest(p_leases, p_credits) AS x (le, cr) GROUP BY 1) p
                 JOIN credit_leases c ON c.id = p.le
                WHERE c.closed_at IS NULL AND c.instance = p_instance AND c.spent + p.s > c.amount) THEN
        RAISE EXCEPTION 'gateway_journal: batch % spends beyond a lease', p_batch;
    END IF;
    -- Set-based: one statement per table for the whole batch.
    RETURN QUERY
    WITH parts AS (
        SELECT x.le AS id, sum(x.cr)::int8 AS credits, min(x.a) AS first_at, max(x.a) AS last_at
          FROM unnest(p_leases, p_credits, p_ats) AS x (le, cr, a) GROUP BY x.le
    ), judged AS MATERIALIZED (
        SELECT p.*, c.org_id, c.spent, c.from_included, 'batch:' || p.id || ':' || p_batch AS key, gen_random_uuid() AS tx,
               EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = 'batch:' || p.id || ':' || p_batch) AS before,
               (c.id IS NOT NULL AND statement_timestamp() <= p_deadline AND c.closed_at IS NULL AND c.instance = p_instance
                AND NOT EXISTS (SELECT 1 FROM journal_voids v WHERE v.idempotency_key = 'batch:' || p.id || ':' || p_batch)) AS open
          FROM parts p LEFT JOIN credit_leases c ON c.id = p.id
    ), fresh AS MATERIALIZED (
        SELECT * FROM judged WHERE open AND NOT before
    ), txs AS (
        INSERT INTO ledger_transactions (id, org_id, kind, idempotency_key, memo, created_at)
        SELECT f.tx, f.org_id, 'usage_batch', f.key, 'calls charged from a lease', p_now FROM fresh f ORDER BY f.id
        RETURNING 1
    ), entries AS (
        INSERT INTO ledger_entries (transaction_id, org_id, account, amount)
        SELECT f.tx, f.org_id, e.account, e.amount
          FROM fresh f, LATERAL (VALUES ('escrow', -f.credits), ('revenue', f.credits)) AS e (account, amount)
         WHERE f.credits > 0
        RETURNING 1
    ), batches AS (
        -- Included credits first: what lies above the lease's included part.
        INSERT INTO journal_batches (idempotency_key, lease_id, org_id, credits, purchased, first_at, last_at, created_at)
        SELECT f.key, f.id, f.org_id, f.credits, greatest(0, f.spent + f.credits - greatest(f.spent, f.from_included)),
               f.first_at, f.last_at, p_now
          FROM fresh f
        RETURNING 1
    ), moved AS (
        UPDATE credit_leases c SET spent = c.spent + f.credits, batches = c.batches + 1 FROM fresh f WHERE c.id = f.id
        RETURNING 1
    ), events AS (
        -- An event's purchased part: what of it lies above its lease's
        -- included credits, counting the lease's calls in the batch's order.
        INSERT INTO usage_events (request_id, org_id, api_key_id, mode, endpoint, method, status, credits,
                                  credits_purchased, latency_us, at, journal)
        SELECT y.r, y.org_id, y.k, 'live', y.e, y.me, y.s, y.c,
               greatest(0, (y.spent + y.run) - greatest(y.spent + y.run - y.c, y.from_included)), y.lat, y.a, y.key
          FROM (SELECT x.*, f.org_id, f.spent, f.from_included, f.key, sum(x.c) OVER (PARTITION BY x.le ORDER BY x.n) AS run
                  FROM unnest(p_leases, p_request_ids, p_keys, p_endpoints, p_methods, p_statuses, p_credits, p_latencies, p_ats)
                       WITH ORDINALITY AS x (le, r, k, e, me, s, c, lat, a, n)
                  JOIN fresh f ON f.id = x.le) y
        ON CONFLICT (request_id, at) DO NOTHING
        RETURNING 1
    )
    -- (Each insert and update above runs to completion, read or not.)
    SELECT j.id, j.before OR j.open FROM judged j;
    -- Last-used times move once per batch; a key another writer holds right
    -- now keeps its time until the next batch (no lock waits, no cycles).
    UPDATE api_keys k SET last_used_at = u.at
      FROM (SELECT key, max(at) AS at FROM unnest(p_keys, p_ats) AS x (key, at) WHERE key IS NOT NULL GROUP BY key) u
     WHERE k.id = u.key AND (k.last_used_at IS NULL OR k.last_used_at < u.at)
       AND k.id IN (SELECT id FROM api_keys WHERE id = ANY (p_keys) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED);
END $$;

-- Settles a batch whose calls were answered 503 because its commit could
-- not be confirmed: per lease, if its part committed after all, the
-- charges go back to the customer (purchased and included as the batch
-- recorded; included to `expired` once lapsed or in another period) and no
-- longer count against the spend cap, and its events say 503 and 0
-- credits; if it did not, its key is voided so it never will. Returns how
-- many parts had committed.
CREATE FUNCTION gateway_journal_void(p_instance uuid, p_batch bigint, p_now timestamptz,
                                     p_leases uuid[], p_request_ids text[], p_ats timestamptz[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_lease uuid;
    l record;
    m record;
    b record;
    v_key text;
    v_lapsed boolean;
    n bigint := 0;
BEGIN
    FOR v_lease IN SELECT DISTINCT x FROM unnest(p_leases) x ORDER BY 1 LOOP
        v_key := 'batch:' || v_lease || ':' || p_batch;
        SELECT org_id INTO l FROM credit_leases WHERE id = v_lease;
        CONTINUE WHEN NOT FOUND;
        SELECT included_expires_at, period_start INTO m FROM org_meters WHERE org_id = l.org_id FOR UPDATE;
        SELECT * INTO l FROM credit_leases WHERE id = v_lease FOR UPDATE;
        CONTINUE WHEN l.instance <> p_instance;
        SELECT * INTO b FROM journal_batches WHERE idempotency_key = v_key;
        IF NOT FOUND THEN
            INSERT INTO journal_voids (idempotency_key, at) VALUES (v_key, p_now) ON CONFLICT DO NOTHING;
            CONTINUE;
        END IF;
        n := n + 1;
        CONTINUE WHEN b.credits = 0;
        v_lapsed := (m.included_expires_at IS NOT NULL AND m.included_expires_at <= p_now) OR l.period_start <> m.period_start;
        IF ledger_post(l.org_id, 'refund', 'void:' || v_key,
                       ARRAY['revenue', 'purchased', CASE WHEN v_lapsed THEN 'expired' ELSE 'included' END],
                       ARRAY[-b.credits, b.purchased, b.credits - b.purchased], p_now) THEN
            IF l.period_start = m.period_start THEN
                UPDATE org_meters SET period_spent = greatest(period_spent - b.credits, 0) WHERE org_id = l.org_id;
            END IF;
            UPDATE usage_events SET status = 503, credits = 0, credits_purchased = 0
             WHERE journal = v_key AND at BETWEEN b.first_at AND b.last_at;
        END IF;
    END LOOP;
    RETURN n;
END $$;

-- What an organization's open leases hold unspent, as the balances it came
-- from (included credits are spent first): the pages add it back, so a
-- balance never seems to drop by a lease, and take it off what the period
-- has spent (a lease counts against the spend cap until it comes back).
CREATE FUNCTION org_leased(p_org uuid, OUT included bigint, OUT purchased bigint) LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(greatest(from_included - spent, 0)), 0)::int8,
           coalesce(sum(amount - spent - greatest(from_included - spent, 0)), 0)::int8
      FROM credit_leases WHERE org_id = p_org AND closed_at IS NULL
$$;

-- The rollups of inserted events, the hot path of both the usage writer
-- and the journal: the same upserts as `usage_rollup`, written out (its
-- dynamic statements were planned again for every batch, the largest
-- fixed cost of a batch). Updates and deletes keep `usage_rollup`.
CREATE FUNCTION usage_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Hourly then daily, each grouped in key order (as `usage_rollup`).
            INSERT INTO usage_hourly AS r (org_id, bucket, api_key_id, endpoint, mode, outcome, code, calls, credits,
                                 credits_purchased, latency_us_sum, h00, h01, h02, h03, h04, h05, h06, h07, h08, h09, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19)
            SELECT org_id, date_trunc('hour', at, 'UTC'), coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'),
                   endpoint, mode, usage_outcome(status), coalesce(problem_code, ''),
                   sum(sign), sum(sign * credits), sum(sign * credits_purchased), sum(sign * latency_us),
                   coalesce(sum(sign) FILTER (WHERE b = 0), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 1), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 2), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 3), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 4), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 5), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 6), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 7), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 8), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 9), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 10), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 11), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 12), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 13), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 14), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 15), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 16), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 17), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 18), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 19), 0)
              FROM (SELECT e.*, width_bucket(e.latency_us, usage_latency_bounds()) AS b FROM (SELECT n.*, 1 AS sign FROM new_rows n) e) x
             GROUP BY 1, 2, 3, 4, 5, 6, 7
             ORDER BY 1, 2, 3, 4, 5, 6, 7
            ON CONFLICT (org_id, bucket, api_key_id, endpoint, mode, outcome, code) DO UPDATE SET
                calls = r.calls + EXCLUDED.calls,
                credits = r.credits + EXCLUDED.credits,
                credits_purchased = r.credits_purchased + EXCLUDED.credits_purchased,
                latency_us_sum = r.latency_us_sum + EXCLUDED.latency_us_sum,
                h00 = r.h00 + EXCLUDED.h00,
                h01 = r.h01 + EXCLUDED.h01,
                h02 = r.h02 + EXCLUDED.h02,
                h03 = r.h03 + EXCLUDED.h03,
                h04 = r.h04 + EXCLUDED.h04,
                h05 = r.h05 + EXCLUDED.h05,
                h06 = r.h06 + EXCLUDED.h06,
                h07 = r.h07 + EXCLUDED.h07,
                h08 = r.h08 + EXCLUDED.h08,
                h09 = r.h09 + EXCLUDED.h09,
                h10 = r.h10 + EXCLUDED.h10,
                h11 = r.h11 + EXCLUDED.h11,
                h12 = r.h12 + EXCLUDED.h12,
                h13 = r.h13 + EXCLUDED.h13,
                h14 = r.h14 + EXCLUDED.h14,
                h15 = r.h15 + EXCLUDED.h15,
                h16 = r.h16 + EXCLUDED.h16,
                h17 = r.h17 + EXCLUDED.h17,
                h18 = r.h18 + EXCLUDED.h18,
                h19 = r.h19 + EXCLUDED.h19;
            INSERT INTO usage_daily AS r (org_id, bucket, api_key_id, endpoint, mode, outcome, code, calls, credits,
                                 credits_purchased, latency_us_sum, h00, h01, h02, h03, h04, h05, h06, h07, h08, h09, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19)
            SELECT org_id, date_trunc('day', at, 'UTC'), coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'),
                   endpoint, mode, usage_outcome(status), coalesce(problem_code, ''),
                   sum(sign), sum(sign * credits), sum(sign * credits_purchased), sum(sign * latency_us),
                   coalesce(sum(sign) FILTER (WHERE b = 0), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 1), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 2), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 3), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 4), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 5), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 6), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 7), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 8), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 9), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 10), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 11), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 12), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 13), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 14), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 15), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 16), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 17), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 18), 0),
                   coalesce(sum(sign) FILTER (WHERE b = 19), 0)
              FROM (SELECT e.*, width_bucket(e.latency_us, usage_latency_bounds()) AS b FROM (SELECT n.*, 1 AS sign FROM new_rows n) e) x
             GROUP BY 1, 2, 3, 4, 5, 6, 7
             ORDER BY 1, 2, 3, 4, 5, 6, 7
            ON CONFLICT (org_id, bucket, api_key_id, endpoint, mode, outcome, code) DO UPDATE SET
                calls = r.calls + EXCLUDED.calls,
                credits = r.credits + EXCLUDED.credits,
                credits_purchased = r.credits_purchased + EXCLUDED.credits_purchased,
                latency_us_sum = r.latency_us_sum + EXCLUDED.latency_us_sum,
                h00 = r.h00 + EXCLUDED.h00,
                h01 = r.h01 + EXCLUDED.h01,
                h02 = r.h02 + EXCLUDED.h02,
                h03 = r.h03 + EXCLUDED.h03,
                h04 = r.h04 + EXCLUDED.h04,
                h05 = r.h05 + EXCLUDED.h05,
                h06 = r.h06 + EXCLUDED.h06,
                h07 = r.h07 + EXCLUDED.h07,
                h08 = r.h08 + EXCLUDED.h08,
                h09 = r.h09 + EXCLUDED.h09,
                h10 = r.h10 + EXCLUDED.h10,
                h11 = r.h11 + EXCLUDED.h11,
                h12 = r.h12 + EXCLUDED.h12,
                h13 = r.h13 + EXCLUDED.h13,
                h14 = r.h14 + EXCLUDED.h14,
                h15 = r.h15 + EXCLUDED.h15,
                h16 = r.h16 + EXCLUDED.h16,
                h17 = r.h17 + EXCLUDED.h17,
                h18 = r.h18 + EXCLUDED.h18,
                h19 = r.h19 + EXCLUDED.h19;
    RETURN NULL;
END $$;
DROP TRIGGER usage_rollup_insert ON usage_events;
CREATE TRIGGER usage_rollup_insert AFTER INSERT ON usage_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_inserted();
