//! The gateway at proxy speed, still exact: decisions in memory (equal to
//! `gateway_check`, invalidated on every instance within a second), credit
//! leases in escrow, charges journalled in batches, fencing.

use crate::gateway::customer;
use crate::helpers::*;
use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tollgate::gateway::cache::{self, KeyRow, OrgRow, PlanRow};
use tollgate::gateway::decision::Decision;
use tower::ServiceExt;
use uuid::Uuid;

/// A call straight to the router, without waiting for the listener (as a
/// client of a real instance would).
async fn raw(app: &TestApp, method: &str, path: &str, key: &str, body: Option<&str>) -> (u16, serde_json::Value, axum::http::HeaderMap) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.unwrap_or("").to_string()))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null), headers)
}

/// Polls `app` with `key` until the answer's status is `want`; the time it took.
async fn until_status(app: &TestApp, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _, _) = raw(app, "GET", "/v1/ping", key, None).await;
        if status == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still {status}, not {want}, after 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn same(a: &Decision, b: &Decision) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// The decision in memory equals `gateway_check`'s over generated states of
/// keys, organizations, subscriptions, plans, cards, meters and clocks.
#[sqlx::test]
async fn the_decision_in_memory_equals_gateway_check(db: PgPool) {
    let (app, key, org) = customer(&db).await;
    let (secret, _) = tollgate::api_keys::Secret::parse(&key).unwrap();
    let hash = secret.hash();
    sqlx::query(
        "INSERT INTO plans (id, code, name, price_minor, currency, included_credits, rate_limit_per_sec, endpoints, sort_order, active)
         VALUES (gen_random_uuid(), 'text-only', 'Text', 900, 'USD', 10, 7, '{sentiment}', 1, true),
                (gen_random_uuid(), 'twin-a', 'Twin A', 900, 'USD', 10, 7, '{ping,sentiment}', 1, true),
                (gen_random_uuid(), 'retired', 'Retired', 100, 'USD', 10, 3, '{*}', 0, false)",
    )
    .execute(&db)
    .await
    .unwrap();
    let plans: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, code FROM plans").fetch_all(&db).await.unwrap();
    let statuses = ["pending_approval", "trialing", "active", "past_due", "unpaid", "canceled", "expired"];
    let endpoints = [("ping", "ping"), ("sentiment", "text"), ("summarize", "text"), ("chat", "chat")];
    let route_plans: [Option<Vec<String>>; 4] = [None, Some(vec![]), Some(vec!["pro".into()]), Some(vec!["twin-a".into(), "free".into()])];
    let now = app.clock.now();
    let at = |r: &mut rand::rngs::StdRng| -> Option<OffsetDateTime> {
        match r.gen_range(0..4) {
            0 => None,
            1 => Some(now - time::Duration::seconds(r.gen_range(1..100_000))),
            2 => Some(now + time::Duration::seconds(r.gen_range(1..100_000))),
            _ => Some(now),
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261206);
    let mut compared = 0;
    for round in 0..150 {
        let scopes: Vec<&str> = match rng.gen_range(0..3) {
            0 => vec!["*"],
            1 => vec!["text"],
            _ => vec!["chat", "ping"],
        };
        sqlx::query("UPDATE api_keys SET revoked_at = $2, expires_at = $3, scopes = $4 WHERE token_hash = $1")
            .bind(&hash)
            .bind(at(&mut rng))
            .bind(at(&mut rng))
            .bind(&scopes)
            .execute(&db)
            .await
            .unwrap();
        sqlx::query("UPDATE organizations SET keys_suspended_at = $2 WHERE id = $1")
            .bind(org)
            .bind(if rng.gen_bool(0.15) { at(&mut rng) } else { None })
            .execute(&db)
            .await
            .unwrap();
        if rng.gen_bool(0.05) {
            sqlx::query("DELETE FROM subscriptions WHERE org_id = $1").bind(org).execute(&db).await.unwrap();
        } else {
            let plan = &plans[rng.gen_range(0..plans.len())];
            let fallback = if rng.gen_bool(0.5) { Some(plans[rng.gen_range(0..plans.len())].0) } else { None };
            let end = now + time::Duration::seconds(rng.gen_range(-200_000..200_000));
            sqlx::query(
                "INSERT INTO subscriptions (id, org_id, plan_id, status, current_period_start, current_period_end, grace_until, trial_end,
                                            fallback_plan_id, created_at, updated_at)
                 VALUES (gen_random_uuid(), $1, $2, $3, $4 - interval '30 days', $4, $5, $6, $7, $8, $8)
                 ON CONFLICT (org_id) DO UPDATE SET plan_id = $2, status = $3, current_period_start = $4 - interval '30 days',
                     current_period_end = $4, grace_until = $5, trial_end = $6, fallback_plan_id = $7",
            )
            .bind(org)
            .bind(plan.0)
            .bind(statuses[rng.gen_range(0..statuses.len())])
            .bind(end)
            .bind(at(&mut rng))
            .bind(at(&mut rng))
            .bind(fallback)
            .bind(now)
            .execute(&db)
            .await
            .unwrap();
        }
        sqlx::query("UPDATE payment_methods SET removed_at = CASE WHEN $2 THEN NULL ELSE $3 END WHERE org_id = $1")
            .bind(org)
            .bind(rng.gen_bool(0.5))
            .bind(now)
            .execute(&db)
            .await
            .unwrap();
        if rng.gen_bool(0.3) {
            sqlx::query(
                "INSERT INTO payment_methods (id, org_id, brand, last4, exp_month, exp_year, is_default, created_at, processor)
                 VALUES (gen_random_uuid(), $1, 'visa', '4242', 12, 2030, false, $2, 'sandbox')",
            )
            .bind(org)
            .bind(now)
            .execute(&db)
            .await
            .ok();
        }
        sqlx::query("UPDATE plans SET active = $1 WHERE code = 'twin-a'").bind(rng.gen_bool(0.7)).execute(&db).await.unwrap();
        sqlx::query("UPDATE org_meters SET included_expires_at = $2, spend_cap = $3 WHERE org_id = $1")
            .bind(org)
            .bind(at(&mut rng))
            .bind(if rng.gen_bool(0.3) { Some(rng.gen_range(0..1000i64)) } else { None })
            .execute(&db)
            .await
            .unwrap();
        // The rows as the cache reads them.
        let key_row: Option<KeyRow> = sqlx::query_as(cache::KEY_SQL).bind(&hash).fetch_optional(&db).await.unwrap();
        let org_row: OrgRow = sqlx::query_as(cache::ORG_SQL).bind(org).fetch_one(&db).await.unwrap();
        let plan_rows: Vec<PlanRow> = sqlx::query_as(cache::PLANS_SQL).fetch_all(&db).await.unwrap();
        for clock in [now, now + time::Duration::seconds(rng.gen_range(0..300_000))] {
            for (endpoint, scope) in endpoints {
                for rp in &route_plans {
                    let sql: Decision = sqlx::query_as("SELECT * FROM gateway_check($1, $2, $3, $4, $5)")
                        .bind(&hash)
                        .bind(endpoint)
                        .bind(scope)
                        .bind(clock)
                        .bind(rp.as_deref())
                        .fetch_one(&db)
                        .await
                        .unwrap();
                    let memory = cache::decide(key_row.as_ref(), &org_row, &plan_rows, endpoint, scope, rp.as_deref(), clock);
                    assert!(same(&sql, &memory), "round {round}, {endpoint}/{scope}, route plans {rp:?}, at {clock}:\n sql    {sql:?}\n memory {memory:?}\n rows {key_row:?}\n {org_row:?}");
                    compared += 1;
                }
            }
        }
    }
    // An unknown key, too.
    let none = cache::decide(None, &OrgRow::default(), &[], "ping", "ping", None, now);
    let sql: Decision = sqlx::query_as("SELECT * FROM gateway_check($1, 'ping', 'ping', $2, NULL)")
        .bind(vec![0u8; 32])
        .bind(now)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(same(&sql, &none), "{sql:?} {none:?}");
    assert_eq!(compared, 150 * 2 * 4 * 4);
}

/// A revoked key, an unpaid or canceled subscription and a plan change reach every
/// instance within a second, without a call waiting for anything.
#[sqlx::test]
async fn a_change_takes_effect_on_every_instance_within_a_second(db: PgPool) {
    let (app, key, org) = customer(&db).await;
    fast_plan(&db, org).await;
    let other = app.restarted();
    for a in [&app, &other] {
        a.synced().await;
        assert_eq!(until_status(a, &key, 200).await < Duration::from_secs(1), true);
        // Decided from memory from now on.
        let (_, _, h) = raw(a, "GET", "/v1/ping", &key, None).await;
        assert!(h.get("tollgate-credits-remaining").is_some());
    }
    assert!(app.state.gateway.cache.size().0 >= 1 && other.state.gateway.cache.size().0 >= 1);

    let now = app.clock.now();
    // Each change, then its undoing; every instance sees both within 1 s.
    let changes: [(&str, &str, &str, u16); 4] = [
        ("a plan change",
         "UPDATE plans SET endpoints = '{sentiment}' WHERE id = (SELECT plan_id FROM subscriptions WHERE org_id = $1)",
         "UPDATE plans SET endpoints = '{*}' WHERE id = (SELECT plan_id FROM subscriptions WHERE org_id = $1)", 402),
        ("an unpaid subscription",
         "UPDATE subscriptions SET status = 'unpaid' WHERE org_id = $1",
         "UPDATE subscriptions SET status = 'active' WHERE org_id = $1", 402),
        ("a canceled subscription, its period over",
         "UPDATE subscriptions SET status = 'canceled', current_period_start = $2 - interval '30 days', current_period_end = $2 - interval '1 second' WHERE org_id = $1",
         "UPDATE subscriptions SET status = 'active', current_period_end = $2 + interval '30 days' WHERE org_id = $1", 402),
        ("a revoked key",
         "UPDATE api_keys SET revoked_at = $2 - interval '1 second' WHERE org_id = $1",
         "UPDATE api_keys SET revoked_at = NULL WHERE org_id = $1", 401),
    ];
    for (what, change, undo, want) in changes {
        for (sql, status) in [(change, want), (undo, 200)] {
            sqlx::query(sql).bind(org).bind(now).execute(&db).await.unwrap();
            for a in [&app, &other] {
                let took = until_status(a, &key, status).await;
                assert!(took < Duration::from_secs(1), "{what} ({status}) took {took:?}");
            }
        }
    }
}

/// Unknown keys are never kept, so random keys cannot grow memory; a
/// listener that loses its connection drops the cache whole and decides in
/// the database until it is back.
#[sqlx::test]
async fn unknown_keys_are_not_kept_and_a_lost_listener_drops_everything(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
    let (keys, orgs) = app.state.gateway.cache.size();
    assert_eq!((keys, orgs), (1, 1));
    for n in 0..200 {
        let random = format!("tg_live_{}{n}", Uuid::new_v4().simple());
        let (status, _, _) = raw(&app, "GET", "/v1/ping", &random, None).await;
        assert_eq!(status, 401);
    }
    assert_eq!(app.state.gateway.cache.size(), (1, 1));

    // The listener's connection is cut.
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN %tollgate_gateway%') t",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(cut >= 1, "the listener was found");
    let started = Instant::now();
    while app.state.gateway.cache.is_live() && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Dropped whole; calls are still answered (from the database) and the
    // listener comes back.
    assert_eq!(app.state.gateway.cache.size(), (0, 0));
    let (status, _, _) = raw(&app, "GET", "/v1/ping", &key, None).await;
    assert_eq!(status, 200);
    while !app.state.gateway.cache.is_live() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.state.gateway.cache.is_live(), "the listener reconnected");
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
    assert_eq!(app.state.gateway.cache.size(), (1, 1));
}

async fn grant(db: &PgPool, org: Uuid, credits: i64) {
    let mut conn = db.acquire().await.unwrap();
    tollgate::billing::ledger::post(
        &mut conn,
        tollgate::billing::ledger::Posting {
            org,
            kind: tollgate::billing::ledger::Kind::Adjustment,
            key: &format!("test-grant:{}", Uuid::new_v4()),
            entries: &[
                (tollgate::billing::ledger::Account::Purchased, credits),
                (tollgate::billing::ledger::Account::Adjustments, -credits),
            ],
            memo: "test",
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
}

/// A fast plan for `org`, so only money limits the calls.
async fn fast_plan(db: &PgPool, org: Uuid) {
    sqlx::query("UPDATE plans SET rate_limit_per_sec = 100000, endpoints = '{*}' WHERE id = (SELECT plan_id FROM subscriptions WHERE org_id = $1)")
        .bind(org)
        .execute(db)
        .await
        .unwrap();
}

#[derive(Debug, PartialEq, Eq)]
struct Money {
    /// What the customer can spend: the meters plus the open leases' rest.
    balance: i64,
    revenue: i64,
    events: i64,
    open_leases: i64,
}

async fn money(db: &PgPool, org: Uuid) -> Money {
    let (balance, revenue, events, open_leases): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT included + purchased FROM org_meters WHERE org_id = $1) + (SELECT included + purchased FROM org_leased($1)),
                (SELECT coalesce(sum(amount), 0)::int8 FROM ledger_entries WHERE org_id = $1 AND account = 'revenue'),
                (SELECT coalesce(sum(credits), 0)::int8 FROM usage_events WHERE org_id = $1 AND mode = 'live'),
                (SELECT count(*) FROM credit_leases WHERE org_id = $1 AND closed_at IS NULL)",
    )
    .bind(org)
    .fetch_one(db)
    .await
    .unwrap();
    Money { balance, revenue, events, open_leases }
}

async fn audit(db: &PgPool) {
    let a = tollgate::billing::ledger::audit(db).await.unwrap();
    assert!(a.is_sound(), "{a:?}");
}

/// Charged calls of a rich organization are paid from a lease: credits in
/// escrow (never more than an eighth of the balance, counted against the
/// cap), posted in batches with their usage events, the rest returned when
/// the lease goes idle; the balance a page shows never drops by a lease.
#[sqlx::test]
async fn a_lease_pays_for_calls_and_its_rest_comes_back(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    fast_plan(&db, org).await;
    grant(&db, org, 100_000).await;
    let start = money(&db, org).await;
    let body = Some(r#"{"text":"good"}"#);
    for n in 0..50 {
        let res = app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await;
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(res.header("tollgate-credits-remaining").unwrap(), (start.balance - n - 1).to_string());
    }
    let (amount, spent, from_included): (i64, i64, i64) =
        sqlx::query_as("SELECT amount, spent, from_included FROM credit_leases WHERE org_id = $1 AND closed_at IS NULL")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(amount, start.balance / 8, "an eighth of the room");
    assert_eq!(spent, 50);
    assert_eq!(from_included, 100, "the included credits go first");
    let now = money(&db, org).await;
    assert_eq!(now, Money { balance: start.balance - 50, revenue: start.revenue + 50, events: start.events + 50, open_leases: 1 });
    // The first 100 calls spend included credits, so none of these came
    // from the purchased balance.
    let purchased: i64 = sqlx::query_scalar("SELECT coalesce(sum(credits_purchased), 0)::int8 FROM usage_events WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(purchased, 0);
    audit(&db).await;
    // The billing page shows the balance as if nothing were leased.
    let page = decode_html(&app.get("/billing").await.body);
    assert!(page.contains("data-testid=\"included-credits\">50<"), "{page}");
    assert!(page.contains("data-testid=\"purchased-credits\">100000<"), "{page}");
    // Idle: returned.
    let started = Instant::now();
    while money(&db, org).await.open_leases > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the idle lease was returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let how: String = sqlx::query_scalar("SELECT closed_how FROM credit_leases WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(how, "returned");
    let (m_bal, period_spent): (i64, i64) = sqlx::query_as("SELECT included + purchased, period_spent FROM org_meters WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(m_bal, start.balance - 50);
    assert_eq!(period_spent, 50, "only what was spent counts against the cap");
    audit(&db).await;
}

/// An instance whose lease expired and was reclaimed by another has its
/// late batch refused: those calls answer 503 and are not charged; its
/// next call takes a new lease.
#[sqlx::test]
async fn a_reclaimed_lease_fences_the_late_batch(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    fast_plan(&db, org).await;
    grant(&db, org, 100_000).await;
    let body = Some(r#"{"text":"good"}"#);
    assert_eq!(app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await.status, 200);
    let before = money(&db, org).await;
    // Past the lease's expiry (the instances share the clock), another
    // instance reclaims it.
    let other = app.restarted();
    let mut reclaimed = 0;
    // (The first instance renews a lease in use when it would expire: it
    // may do so between the clock's step and the reclaim; then again.)
    for _ in 0..3 {
        app.clock.advance(time::Duration::seconds(11));
        reclaimed = tollgate::gateway::leases::reclaim(&other.state.gateway.db, app.clock.now()).await.unwrap();
        if reclaimed > 0 {
            break;
        }
    }
    assert_eq!(reclaimed, 1);
    let how: String = sqlx::query_scalar("SELECT closed_how FROM credit_leases WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(how, "reclaimed");
    // The first instance still spends it in memory: its batch is fenced.
    let res = app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert!(res.body.contains("not charged"), "{}", res.body);
    let after = money(&db, org).await;
    assert_eq!(after, Money { open_leases: 0, ..before }, "nothing charged, the rest back");
    // The next call takes a new lease.
    let res = app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let m = money(&db, org).await;
    assert_eq!((m.balance, m.revenue, m.open_leases), (before.balance - 1, before.revenue + 1, 1));
    audit(&db).await;
}

/// Two instances spend one organization's credits to the last: exactly
/// what it had is charged, every 200 is a charge and a usage event, the
/// last credits are spent on the exact path (never stranded in a lease),
/// and the balance ends at 0.
#[sqlx::test]
async fn two_instances_spend_exactly_the_balance(db: PgPool) {
    let (app, key, org) = customer(&db).await;
    fast_plan(&db, org).await;
    grant(&db, org, 2_900).await;
    let other = app.restarted();
    app.synced().await;
    other.synced().await;
    let start = money(&db, org).await;
    assert_eq!(start.balance, 3_000);
    let body = Some(r#"{"text":"good"}"#);
    let spend = |a: &TestApp| {
        let (router, key) = (a.router.clone(), key.clone());
        async move {
            let mut ok = 0i64;
            let mut refused_since: Option<Instant> = None;
            loop {
                let req = Request::builder()
                    .method("POST")
                    .uri("/v1/text/sentiment")
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.unwrap()))
                    .unwrap();
                let res = router.clone().oneshot(req).await.unwrap();
                match res.status().as_u16() {
                    200 => {
                        ok += 1;
                        refused_since = None;
                    }
                    402 => {
                        // Another instance's lease may still hold the last
                        // credits for a moment: it is returned when idle.
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(4) {
                            return ok;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("answered {other}"),
                }
            }
        }
    };
    let (a, b) = tokio::join!(spend(&app), spend(&other));
    app.state.gateway.usage.flush().await;
    other.state.gateway.usage.flush().await;
    let end = money(&db, org).await;
    assert_eq!(a + b, 3_000, "every credit bought a call ({a} + {b})");
    assert_eq!(end, Money { balance: 0, revenue: start.revenue + 3_000, events: start.events + 3_000, open_leases: 0 });
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_leases WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert!(leases >= 2, "both instances leased ({leases})");
    audit(&db).await;
}

/// A spend cap: leases never take more than what the cap leaves, and a
/// lowered cap ends the leases at once.
#[sqlx::test]
async fn leases_stay_under_the_spend_cap(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    fast_plan(&db, org).await;
    grant(&db, org, 100_000).await;
    sqlx::query("UPDATE org_meters SET spend_cap = 8000 WHERE org_id = $1").bind(org).execute(&db).await.unwrap();
    let body = Some(r#"{"text":"good"}"#);
    assert_eq!(app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await.status, 200);
    let amount: i64 = sqlx::query_scalar("SELECT amount FROM credit_leases WHERE org_id = $1 AND closed_at IS NULL")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(amount, 1000, "an eighth of what the cap leaves");
    // The cap is lowered to what was spent: the lease is given back and the
    // next call is refused on the exact path.
    sqlx::query("UPDATE org_meters SET spend_cap = 1 WHERE org_id = $1").bind(org).execute(&db).await.unwrap();
    let started = Instant::now();
    loop {
        let (status, body, _) = raw(&app, "POST", "/v1/text/sentiment", &key, Some(r#"{"text":"good"}"#)).await;
        if status == 402 {
            assert_eq!(body["code"], "spend_cap_reached");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "the lowered cap took effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    while money(&db, org).await.open_leases > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the lease was given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.state.gateway.usage.flush().await;
    let spent: i64 = sqlx::query_scalar("SELECT period_spent FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let charged = money(&db, org).await.events;
    assert_eq!(spent, charged, "the period counts what was charged");
    audit(&db).await;
}

/// The journal's batch is idempotent under its number, and a void settles
/// a batch whose calls were answered 503: refused if it had not committed,
/// given back if it had.
#[sqlx::test]
async fn a_batch_is_posted_once_and_a_void_gives_it_back(db: PgPool) {
    let (_app, _key, org) = customer(&db).await;
    grant(&db, org, 100_000).await;
    let instance = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let lease: Option<Uuid> = sqlx::query_scalar("SELECT lease_id FROM gateway_lease_take($1, $2, 500, 1000, $3, interval '10 seconds')")
        .bind(org)
        .bind(instance)
        .bind(now)
        .fetch_one(&db)
        .await
        .unwrap();
    let lease = lease.expect("a lease");
    let post = |batch: i64, ids: Vec<&'static str>| {
        let db = db.clone();
        async move {
            let n = ids.len();
            let rows: Vec<(Uuid, bool)> = sqlx::query_as(
                "SELECT * FROM gateway_journal($1, $2, $3, $13, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(instance)
            .bind(batch)
            .bind(now)
            .bind(vec![lease; n])
            .bind(&ids)
            .bind(vec![None::<Uuid>; n])
            .bind(vec!["sentiment"; n])
            .bind(vec!["POST"; n])
            .bind(vec![200i16; n])
            .bind(vec![3i64; n])
            .bind(vec![10i64; n])
            .bind(vec![now; n])
            .bind(if batch == 9 { OffsetDateTime::now_utc() - time::Duration::seconds(1) } else { OffsetDateTime::now_utc() + time::Duration::hours(1) })
            .fetch_all(&db)
            .await
            .unwrap();
            rows
        }
    };
    assert_eq!(post(1, vec!["req_b1", "req_b2"]).await, vec![(lease, true)]);
    // A retry of the same batch moves nothing again.
    assert_eq!(post(1, vec!["req_b1", "req_b2"]).await, vec![(lease, true)]);
    let spent: i64 = sqlx::query_scalar("SELECT spent FROM credit_leases WHERE id = $1").bind(lease).fetch_one(&db).await.unwrap();
    assert_eq!(spent, 6);
    audit(&db).await;
    // Batch 1 committed but its calls were answered 503: given back.
    let balance = money(&db, org).await.balance;
    let void = |batch: i64, ids: Vec<&'static str>| {
        let db = db.clone();
        async move {
            let n = ids.len();
            sqlx::query_scalar::<_, i64>("SELECT gateway_journal_void($1, $2, $3, $4, $5, $6)")
                .bind(instance)
                .bind(batch)
                .bind(now)
                .bind(vec![lease; n])
                .bind(&ids)
                .bind(vec![now; n])
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(void(1, vec!["req_b1", "req_b2"]).await, 1);
    assert_eq!(void(1, vec!["req_b1", "req_b2"]).await, 1, "once");
    assert_eq!(money(&db, org).await.balance, balance + 6);
    let statuses: Vec<(i16, i64)> = sqlx::query_as("SELECT status, credits FROM usage_events WHERE journal IS NOT NULL ORDER BY request_id")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(statuses, vec![(503, 0), (503, 0)]);
    audit(&db).await;
    // Batch 2 never committed: voided, it is refused should it arrive late.
    assert_eq!(void(2, vec!["req_b3"]).await, 0);
    assert_eq!(post(2, vec!["req_b3"]).await, vec![(lease, false)]);
    // A batch past its deadline (its calls were answered 503) refuses itself.
    assert_eq!(post(9, vec!["req_late"]).await, vec![(lease, false)]);
    // Another instance cannot post against this lease.
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT * FROM gateway_journal($1, 3, $2, 'infinity', $3, '{req_x}', '{NULL}', '{sentiment}', '{POST}', '{200}', '{1}', '{1}', $4)",
    )
    .bind(Uuid::new_v4())
    .bind(now)
    .bind(vec![lease])
    .bind(vec![now])
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows, vec![(lease, false)]);
    // Closing gives the rest back; a closed lease takes no batch.
    assert!(sqlx::query_scalar::<_, bool>("SELECT gateway_lease_close($1, 'returned', $2)").bind(lease).bind(now).fetch_one(&db).await.unwrap());
    assert_eq!(post(4, vec!["req_b4"]).await, vec![(lease, false)]);
    let m = money(&db, org).await;
    assert_eq!(m.open_leases, 0);
    audit(&db).await;
}

/// A period that ends while credits are leased: the leases come back first
/// (counted against the period that ended), the new period starts at 0
/// spent, and the next call is paid from a new lease counted in it.
#[sqlx::test]
async fn a_new_period_takes_the_leases_back(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    fast_plan(&db, org).await;
    grant(&db, org, 100_000).await;
    let body = Some(r#"{"text":"good"}"#);
    for _ in 0..3 {
        assert_eq!(app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await.status, 200);
    }
    assert_eq!(money(&db, org).await.open_leases, 1);
    crate::billing::renew_past_period_end(&mut app, org).await;
    let m = money(&db, org).await;
    assert_eq!(m.open_leases, 0, "the lease came back with the period");
    let spent: i64 = sqlx::query_scalar("SELECT period_spent FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(spent, 0);
    // Unless the notification rotated it first, the instance still spends
    // the old lease in memory: fenced (503, not charged), then a new one.
    let mut res = app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await;
    if res.status == 503 {
        res = app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await;
    }
    assert_eq!(res.status, 200, "{}", res.body);
    let (spent, leased): (i64, i64) = sqlx::query_as(
        "SELECT period_spent, (SELECT amount FROM credit_leases WHERE org_id = $1 AND closed_at IS NULL) FROM org_meters WHERE org_id = $1",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(spent, leased, "the new lease counts in the new period");
    audit(&db).await;
}
