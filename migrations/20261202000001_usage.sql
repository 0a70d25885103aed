-- Usage you can see (issue 17): usage events partitioned by day, rollups
-- by hour and by day kept in the same transaction as the events they count,
-- per-organization warning thresholds.

-- Events: one partition per UTC day, created ahead by the usage job
-- (`usage_partition_ensure`), dropped whole after the retention
-- (`usage_partitions_drop_before`). A default partition keeps any event
-- whose day has no partition yet; creating that day's partition moves them.
-- The key includes the time (PostgreSQL requires the partition key in it):
-- a request's event always carries the time of its call, which is also its
-- ledger transaction's, so a retried batch and the recovery job meet on it.
ALTER TABLE usage_events RENAME TO usage_events_unpartitioned;
ALTER INDEX usage_events_pkey RENAME TO usage_events_unpartitioned_pkey;
ALTER INDEX usage_events_org_idx RENAME TO usage_events_unpartitioned_org_idx;

CREATE TABLE usage_events (
    request_id        text NOT NULL,
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    api_key_id        uuid,
    mode              text NOT NULL,
    endpoint          text NOT NULL,
    method            text NOT NULL,
    status            smallint NOT NULL,
    problem_code      text,
    credits           bigint NOT NULL DEFAULT 0,
    -- Of `credits`, what came from the purchased balance; the rest of a live
    -- call's came from the included credits (a test call's: the sandbox).
    credits_purchased bigint NOT NULL DEFAULT 0,
    latency_us        bigint NOT NULL,
    problem_body      jsonb,
    at                timestamptz NOT NULL,
    PRIMARY KEY (request_id, at)
) PARTITION BY RANGE (at);
-- The request log: newest first, by keyset.
CREATE INDEX usage_events_log_idx ON usage_events (org_id, at DESC, request_id DESC);
-- Refused calls (any status from 400), 402s alone (the dashboard's last
-- refusal, the log's 402 filter: an organization with many 429s would
-- otherwise read them all), and the log's key, endpoint, problem code and
-- mode filters: each filter of the log has an index that starts at the
-- cursor, so a rare value is found without reading the rest.
CREATE INDEX usage_events_refused_idx ON usage_events (org_id, at DESC, request_id DESC) WHERE status >= 400;
CREATE INDEX usage_events_402_idx ON usage_events (org_id, at DESC, request_id DESC) WHERE status = 402;
CREATE INDEX usage_events_key_idx ON usage_events (org_id, api_key_id, at DESC, request_id DESC);
CREATE INDEX usage_events_endpoint_idx ON usage_events (org_id, endpoint, at DESC, request_id DESC);
CREATE INDEX usage_events_code_idx ON usage_events (org_id, problem_code, at DESC, request_id DESC) WHERE problem_code IS NOT NULL;
CREATE INDEX usage_events_mode_idx ON usage_events (org_id, mode, at DESC, request_id DESC);
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
-- The default partition is meant to stay nearly empty; this finds a day's
-- events in it without reading it all.
CREATE INDEX usage_events_default_at_idx ON usage_events_default (at);

-- Creates the partition of one UTC day; `false` when it exists. Events of
-- that day already in the default partition move into it.
--
-- Locks: `organizations` (the foreign key's triggers need it), then the
-- parent, then the default partition: the order in which a writer's insert
-- takes them, so the two never wait on each other in a circle, and writers
-- wait only the few milliseconds this takes. Every lock is waited for at
-- most 2 s (`lock_timeout` for the whole function; PostgreSQL puts the
-- caller's back afterwards): behind a long reader it gives up rather than
-- make every writer queue behind it, and the job runs again within the hour
-- (partitions are made a week ahead).
CREATE FUNCTION usage_partition_ensure(p_day date) RETURNS boolean LANGUAGE plpgsql
SET lock_timeout = '2s' AS $$
DECLARE
    v_name text := 'usage_events_' || to_char(p_day, 'YYYYMMDD');
    v_lo timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
    v_hi timestamptz := (p_day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('tollgate:usage_partitions'));
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE organizations IN SHARE ROW EXCLUSIVE MODE;
    LOCK TABLE usage_events IN ACCESS EXCLUSIVE MODE;
    LOCK TABLE usage_events_default IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM usage_events_default WHERE at >= v_lo AND at < v_hi) THEN
        EXECUTE format('CREATE TABLE %I (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
        EXECUTE format('WITH moved AS (DELETE FROM usage_events_default WHERE at >= $1 AND at < $2 RETURNING *)
                        INSERT INTO %I SELECT * FROM moved', v_name) USING v_lo, v_hi;
        EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', v_name, v_lo, v_hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)', v_name, v_lo, v_hi);
    END IF;
    RETURN true;
END $$;

-- Drops the partitions of days before `p_day` (and the default partition's
-- events from before it). Returns how many partitions went. Takes no lock
-- when nothing is due; a partition is dropped without being detached first
-- (which would lock `organizations` for the foreign key); locks are waited
-- for 2 s at most, as above.
CREATE FUNCTION usage_partitions_drop_before(p_day date) RETURNS integer LANGUAGE plpgsql
SET lock_timeout = '2s' AS $$
DECLARE
    r record;
    n integer := 0;
    v_before timestamptz := p_day::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tollgate:usage_partitions'));
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'usage_events'::regclass AND c.relname ~ '^usage_events_[0-9]{8}$'
                AND to_date(substr(c.relname, 14), 'YYYYMMDD') < p_day
              ORDER BY c.relname
    LOOP
        IF n = 0 THEN
            LOCK TABLE usage_events IN ACCESS EXCLUSIVE MODE;
        END IF;
        EXECUTE format('DROP TABLE %I', r.relname);
        n := n + 1;
    END LOOP;
    IF EXISTS (SELECT 1 FROM usage_events_default WHERE at < v_before) THEN
        DELETE FROM usage_events_default WHERE at < v_before;
    END IF;
    RETURN n;
END $$;

-- Rollups: calls, credits and a latency histogram per organization, hour
-- (or UTC day), key, endpoint, mode, outcome and problem code. Kept by the
-- statement triggers below in the transaction that writes the events, so
-- each event counts exactly once whichever instance writes it, and a
-- correction (an UPDATE of an event) or a DELETE moves the rollups with it.
CREATE FUNCTION usage_outcome(p_status smallint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_status BETWEEN 200 AND 299 THEN '2xx'
                WHEN p_status = 402 THEN '402'
                WHEN p_status = 429 THEN '429'
                WHEN p_status BETWEEN 400 AND 499 THEN '4xx'
                WHEN p_status >= 500 THEN '5xx'
                ELSE 'unknown' END
$$;

-- The latency histogram's bucket bounds in microseconds (`h00` counts calls
-- under the first, `h19` calls at or over the last); `src/usage/latency.rs`
-- holds the same numbers, and a test keeps them equal.
CREATE FUNCTION usage_latency_bounds() RETURNS bigint[] LANGUAGE sql IMMUTABLE AS $$
    SELECT '{250,500,1000,2000,3000,5000,7500,10000,15000,25000,50000,75000,100000,250000,500000,1000000,2500000,5000000,10000000}'::bigint[]
$$;

CREATE TABLE usage_hourly (
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    bucket            timestamptz NOT NULL,
    -- The nil uuid for calls without a key.
    api_key_id        uuid NOT NULL,
    endpoint          text NOT NULL,
    mode              text NOT NULL,
    outcome           text NOT NULL,
    -- '' for calls without a problem.
    code              text NOT NULL,
    calls             bigint NOT NULL DEFAULT 0,
    credits           bigint NOT NULL DEFAULT 0,
    credits_purchased bigint NOT NULL DEFAULT 0,
    latency_us_sum    bigint NOT NULL DEFAULT 0,
    h00 bigint NOT NULL DEFAULT 0,
    h01 bigint NOT NULL DEFAULT 0,
    h02 bigint NOT NULL DEFAULT 0,
    h03 bigint NOT NULL DEFAULT 0,
    h04 bigint NOT NULL DEFAULT 0,
    h05 bigint NOT NULL DEFAULT 0,
    h06 bigint NOT NULL DEFAULT 0,
    h07 bigint NOT NULL DEFAULT 0,
    h08 bigint NOT NULL DEFAULT 0,
    h09 bigint NOT NULL DEFAULT 0,
    h10 bigint NOT NULL DEFAULT 0,
    h11 bigint NOT NULL DEFAULT 0,
    h12 bigint NOT NULL DEFAULT 0,
    h13 bigint NOT NULL DEFAULT 0,
    h14 bigint NOT NULL DEFAULT 0,
    h15 bigint NOT NULL DEFAULT 0,
    h16 bigint NOT NULL DEFAULT 0,
    h17 bigint NOT NULL DEFAULT 0,
    h18 bigint NOT NULL DEFAULT 0,
    h19 bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, bucket, api_key_id, endpoint, mode, outcome, code)
);
CREATE TABLE usage_daily (LIKE usage_hourly INCLUDING ALL);
ALTER TABLE usage_daily ADD FOREIGN KEY (org_id) REFERENCES organizations (id) ON DELETE CASCADE;

CREATE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rows text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT n.*, 1 AS sign FROM new_rows n'
        WHEN 'DELETE' THEN 'SELECT o.*, -1 AS sign FROM old_rows o'
        ELSE 'SELECT n.*, 1 AS sign FROM new_rows n UNION ALL SELECT o.*, -1 AS sign FROM old_rows o' END;
    v_unit text;
BEGIN
    -- Groups in key order, hourly then daily, so concurrent writers take
    -- the rollup rows' locks in one order and never deadlock.
    FOREACH v_unit IN ARRAY ARRAY['hour', 'day'] LOOP
        EXECUTE format($q$
            INSERT INTO %I AS r (org_id, bucket, api_key_id, endpoint, mode, outcome, code, calls, credits,
                                 credits_purchased, latency_us_sum, h00, h01, h02, h03, h04, h05, h06, h07, h08, h09, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19)
            SELECT org_id, date_trunc(%L, at, 'UTC'), coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'),
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
              FROM (SELECT e.*, width_bucket(e.latency_us, usage_latency_bounds()) AS b FROM (%s) e) x
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
                h19 = r.h19 + EXCLUDED.h19
        $q$, CASE v_unit WHEN 'hour' THEN 'usage_hourly' ELSE 'usage_daily' END, v_unit, v_rows);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_rollup_insert AFTER INSERT ON usage_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup();
CREATE TRIGGER usage_rollup_update AFTER UPDATE ON usage_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup();
-- A DELETE through the parent takes its events out of the rollups; the
-- retention's drops (and a day's move out of the default partition) work
-- on the partitions themselves, so the rollups keep what they counted.
CREATE TRIGGER usage_rollup_delete AFTER DELETE ON usage_events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup();

-- Of the `p_credits` a call finally cost, how many came from the purchased
-- balance: what its charge took from it less what its release gave back,
-- as the ledger says (included credits are spent first, given back last).
CREATE FUNCTION usage_purchased_part(p_request_id text, p_mode text, p_credits bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_mode = 'live' AND p_credits > 0 THEN
        least(p_credits, greatest((SELECT coalesce(-sum(e.amount), 0)
                                     FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
                                    WHERE t.idempotency_key IN ('usage:' || p_request_id, 'release:' || p_request_id)
                                      AND e.account = 'purchased'), 0))
    ELSE 0 END
$$;

-- Every day from the oldest event kept (100 days back at most: the default
-- retention is 90) to a few days ahead gets its partition, so the default
-- partition starts empty. The copy goes through the trigger: the rollups
-- start complete.
SELECT usage_partition_ensure(d::date)
  FROM generate_series(
           date_trunc('day', greatest(coalesce((SELECT min(at) FROM usage_events_unpartitioned), now()), now() - interval '100 days') AT TIME ZONE 'UTC'),
           (now() AT TIME ZONE 'UTC') + interval '3 days',
           interval '1 day') d;
INSERT INTO usage_events (request_id, org_id, api_key_id, mode, endpoint, method, status, problem_code, credits,
                          credits_purchased, latency_us, problem_body, at)
SELECT u.request_id, u.org_id, u.api_key_id, u.mode, u.endpoint, u.method, u.status, u.problem_code, u.credits,
       usage_purchased_part(u.request_id, u.mode, u.credits), u.latency_us, u.problem_body, u.at
  FROM usage_events_unpartitioned u;
DROP TABLE usage_events_unpartitioned;
ALTER TABLE usage_events RENAME CONSTRAINT usage_events_org_id_fkey1 TO usage_events_org_id_fkey;

-- What a period's included credits were: the grants (and adjustments) of
-- the period, found without reading its usage transactions.
CREATE INDEX ledger_transactions_grants_idx ON ledger_transactions (org_id, created_at)
    WHERE kind NOT IN ('usage', 'sandbox_usage', 'refund', 'sandbox_refund');

-- Warnings before the cutoff: besides `low_balance_at` (credits left), a
-- share of the period's included credits used and of the spend cap; NULL
-- turns one off. Each crossing is one notice (billing_notices).
ALTER TABLE org_meters
    ADD COLUMN warn_included_pct smallint DEFAULT 80 CHECK (warn_included_pct BETWEEN 1 AND 100),
    ADD COLUMN warn_spend_cap_pct smallint DEFAULT 80 CHECK (warn_spend_cap_pct BETWEEN 1 AND 100);
