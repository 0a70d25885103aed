use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;
use tollgate::billing::ledger::{Account, Kind, Posting};
use tollgate::gateway::catalogue::{Code, ALL};
use uuid::Uuid;

const TEXT: &str = r#"{"text": "Great docs and a fast, reliable API."}"#;

/// A signed-up customer with a live key on the Free plan (100 included credits).
pub(crate) async fn customer(db: &PgPool) -> (TestApp, String, Uuid) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let key = app.create_key("server", "live", &["*"], "never").await;
    let org = app.org_of("ada@example.com").await;
    (app, key, org)
}

/// Moves credits out of (negative) or into the included balance, through the ledger.
async fn adjust_included(db: &PgPool, org: Uuid, amount: i64, key: &str) {
    let mut conn = db.acquire().await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    tollgate::billing::ledger::post(
        &mut conn,
        Posting {
            org,
            kind: Kind::Adjustment,
            key,
            entries: &[(Account::Included, amount), (Account::Adjustments, -amount)],
            memo: "test",
        },
        now,
    )
    .await
    .unwrap();
}

fn snapshot_body(res: &TestResponse) -> serde_json::Value {
    let v = res.json();
    // The request id varies, in the body and in the fix links' `ref`.
    let id = v["request_id"].as_str().unwrap_or("[none]").to_string();
    serde_json::from_str(&v.to_string().replace(&id, "[request_id]")).unwrap()
}

async fn set_subscription(db: &PgPool, org: Uuid, sql: &str) {
    sqlx::query(&format!("UPDATE subscriptions SET {sql} WHERE org_id = $1"))
        .bind(org)
        .execute(db)
        .await
        .unwrap();
}

#[sqlx::test]
async fn a_fresh_key_gets_200_with_the_metered_headers(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    let ping = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(ping.status, StatusCode::OK, "{}", ping.body);
    assert_eq!(ping.json()["pong"], true);
    assert!(ping.header("request-id").unwrap().starts_with("req_"));
    assert_eq!(
        ping.header("ratelimit-policy").as_deref(),
        Some("\"plan\";q=5;w=1")
    );
    assert_eq!(
        ping.header("ratelimit").as_deref(),
        Some("\"plan\";r=4;t=0")
    );
    assert_eq!(
        ping.header("tollgate-credits-remaining").as_deref(),
        Some("100")
    );
    assert_eq!(ping.header("tollgate-warning"), None);

    let scored = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(scored.status, StatusCode::OK);
    assert_eq!(scored.json()["label"], "positive");
    assert_eq!(
        scored.header("tollgate-credits-remaining").as_deref(),
        Some("99")
    );
}

#[sqlx::test]
async fn spending_the_credits_gives_insufficient_credits_with_a_top_up_link(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    adjust_included(&db, org, -98, "test:drain").await;
    for remaining in ["1", "0"] {
        app.clock.advance(time::Duration::seconds(1));
        let ok = app
            .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(
            ok.header("tollgate-credits-remaining").as_deref(),
            Some(remaining)
        );
        assert!(ok
            .header("tollgate-warning")
            .unwrap()
            .starts_with("low_balance"));
    }
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(res.header("retry-after"), None);
    let body = res.json();
    assert_eq!(body["required"]["amount"], "1");
    assert_eq!(body["balance"]["available"], "0");
    let href = body["resolution"][0]["href"].as_str().unwrap();
    assert_eq!(
        href,
        format!(
            "http://portal.test/billing/top-up?credits=1000&return_to=%2Fexplorer&ref={}",
            body["request_id"].as_str().unwrap()
        )
    );
    insta::assert_json_snapshot!("insufficient_credits", snapshot_body(&res));

    // Its type URL is a page that explains the fix.
    let docs_path = body["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://portal.test")
        .to_string();
    let page = app.get(&docs_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Insufficient credits") && page.body.contains("Top up credits"));
}

#[sqlx::test]
async fn every_code_has_a_docs_page(db: PgPool) {
    let mut app = TestApp::new(db).await;
    for code in ALL {
        let page = app.get(&format!("/docs/errors/{}", code.as_str())).await;
        assert_eq!(page.status, StatusCode::OK, "{}", code.as_str());
        assert!(page.body.contains(code.title()), "{}", code.as_str());
        assert!(page.body.contains("How to fix it"), "{}", code.as_str());
    }
}

#[sqlx::test]
async fn key_problems_are_401_with_www_authenticate_or_403(db: PgPool) {
    let (mut app, _, _) = customer(&db).await;
    let missing = app.call("GET", "/v1/ping", None, None, &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(missing
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    insta::assert_json_snapshot!("invalid_api_key", snapshot_body(&missing));
    let unknown = app
        .call(
            "GET",
            "/v1/ping",
            Some(&format!("tg_live_{}", "0".repeat(32))),
            None,
            &[],
        )
        .await;
    assert_eq!(unknown.json()["code"], "invalid_api_key");

    let week = app.create_key("temp", "live", &["*"], "7").await;
    app.clock.advance(time::Duration::days(8));
    let expired = app.call("GET", "/v1/ping", Some(&week), None, &[]).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    insta::assert_json_snapshot!("api_key_expired", snapshot_body(&expired));

    let narrow = app.create_key("pinger", "live", &["ping"], "never").await;
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&narrow), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let forbidden = app
        .call("POST", "/v1/text/sentiment", Some(&narrow), Some(TEXT), &[])
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    insta::assert_json_snapshot!("scope_forbidden", snapshot_body(&forbidden));
}

#[sqlx::test]
async fn a_free_key_on_a_pro_endpoint_is_told_which_plan_includes_it(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    let res = app
        .call("POST", "/v1/text/summarize", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
    let body = res.json();
    assert_eq!(body["required_plan"], "pro");
    assert_eq!(
        body["resolution"][0]["href"],
        format!(
            "http://portal.test/billing/plans?plan=pro&return_to=%2Fexplorer&ref={}",
            body["request_id"].as_str().unwrap()
        )
    );
    insta::assert_json_snapshot!("plan_upgrade_required", snapshot_body(&res));
    assert_eq!(
        res.header("tollgate-credits-remaining"),
        None,
        "refused before the meter"
    );
}

#[sqlx::test]
async fn subscription_states_block_live_keys_with_their_own_codes(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let now = app.clock.now();

    set_subscription(&db, org, "status = 'pending_approval'").await;
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
    insta::assert_json_snapshot!("subscription_pending_approval", snapshot_body(&res));

    // Past due within its grace period: served, with a warning.
    sqlx::query("UPDATE subscriptions SET status = 'past_due', grace_until = $2 WHERE org_id = $1")
        .bind(org)
        .bind(now + time::Duration::days(3))
        .execute(&db)
        .await
        .unwrap();
    let grace = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(grace.status, StatusCode::OK);
    assert!(grace
        .header("tollgate-warning")
        .unwrap()
        .starts_with("subscription_past_due; until="));
    app.clock.advance(time::Duration::days(4));
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
    insta::assert_json_snapshot!("subscription_past_due", snapshot_body(&res));
    set_subscription(&db, org, "status = 'unpaid'").await;
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .json()["code"],
        "subscription_past_due"
    );

    // Canceled: served until the period ends, then expired.
    sqlx::query(
        "UPDATE subscriptions SET status = 'canceled', current_period_end = $2 WHERE org_id = $1",
    )
    .bind(org)
    .bind(app.clock.now() + time::Duration::hours(1))
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(time::Duration::hours(2));
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    insta::assert_json_snapshot!("subscription_expired", snapshot_body(&res));

    // A trial that ended with no card on file.
    sqlx::query("UPDATE subscriptions SET status = 'trialing', trial_end = $2, current_period_end = $3 WHERE org_id = $1")
        .bind(org)
        .bind(app.clock.now() - time::Duration::hours(1))
        .bind(app.clock.now() + time::Duration::days(20))
        .execute(&db)
        .await
        .unwrap();
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    insta::assert_json_snapshot!("payment_method_required", snapshot_body(&res));
    sqlx::query("INSERT INTO payment_methods (id, org_id, brand, last4, exp_month, exp_year, created_at) VALUES ($1, $2, 'visa', '4242', 12, 2030, now())")
        .bind(Uuid::now_v7())
        .bind(org)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn the_spend_cap_stops_spending_and_warns_before(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    sqlx::query("UPDATE org_meters SET spend_cap = 5 WHERE org_id = $1")
        .bind(org)
        .execute(&db)
        .await
        .unwrap();
    for i in 1..=5 {
        app.clock.advance(time::Duration::seconds(1));
        let ok = app
            .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
            .await;
        assert_eq!(ok.status, StatusCode::OK, "call {i}");
        assert_eq!(
            ok.header("tollgate-warning").is_some(),
            i >= 4,
            "call {i}: past 80% of the cap"
        );
    }
    app.clock.advance(time::Duration::seconds(1));
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED);
    insta::assert_json_snapshot!("spend_cap_reached", snapshot_body(&res));
    assert_eq!(
        res.header("tollgate-credits-remaining").as_deref(),
        Some("95")
    );
}

#[sqlx::test]
async fn too_many_requests_get_429_never_402(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    adjust_included(&db, org, -100, "test:empty").await;
    // Free allows 5 per second; the clock stands still.
    for _ in 0..5 {
        assert_eq!(
            app.call("GET", "/v1/ping", Some(&key), None, &[])
                .await
                .status,
            StatusCode::OK
        );
    }
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.header("retry-after").as_deref(), Some("1"));
    assert_eq!(res.header("ratelimit").as_deref(), Some("\"plan\";r=0;t=1"));
    assert_eq!(res.header("cache-control"), None);
    insta::assert_json_snapshot!("rate_limited", snapshot_body(&res));
    // Even with no credits left, a rate-limited call is a 429, not a 402.
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(time::Duration::milliseconds(200));
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn invalid_input_is_422_and_never_charged(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    let res = app
        .call(
            "POST",
            "/v1/text/sentiment",
            Some(&key),
            Some(r#"{"txt": "typo"}"#),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.json()["errors"][0]["field"], "text");
    insta::assert_json_snapshot!("validation_failed", snapshot_body(&res));
    assert_eq!(
        res.header("tollgate-credits-remaining").as_deref(),
        Some("100")
    );
    let nowhere = app.call("GET", "/v1/nowhere", Some(&key), None, &[]).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    insta::assert_json_snapshot!("not_found", snapshot_body(&nowhere));
}

#[sqlx::test]
async fn test_keys_spend_the_sandbox_and_simulate_every_code(db: PgPool) {
    let (mut app, live, _) = customer(&db).await;
    let test = app.create_key("ci", "test", &["*"], "never").await;
    assert!(test.starts_with("tg_test_"));
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&test), Some(TEXT), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.header("tollgate-credits-remaining").as_deref(),
        Some("999")
    );
    app.clock.advance(time::Duration::seconds(1));
    let live_res = app.call("GET", "/v1/ping", Some(&live), None, &[]).await;
    assert_eq!(
        live_res.header("tollgate-credits-remaining").as_deref(),
        Some("100"),
        "the live balance is untouched"
    );

    for code in ALL {
        app.clock.advance(time::Duration::seconds(1));
        let res = app
            .call(
                "POST",
                "/v1/text/sentiment",
                Some(&test),
                Some(TEXT),
                &[("Tollgate-Simulate", code.as_str())],
            )
            .await;
        assert_eq!(res.status, code.status(), "{}", code.as_str());
        assert_eq!(res.json()["code"], code.as_str());
        assert_eq!(
            res.json()["type"],
            format!("http://portal.test/docs/errors/{}", code.as_str())
        );
        if code == Code::RateLimited {
            assert_eq!(res.header("retry-after").as_deref(), Some("1"));
        }
        if code.status() == StatusCode::PAYMENT_REQUIRED {
            assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
        }
    }
    app.clock.advance(time::Duration::seconds(1));
    let unknown = app
        .call(
            "GET",
            "/v1/ping",
            Some(&test),
            None,
            &[("Tollgate-Simulate", "nope")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.clock.advance(time::Duration::seconds(1));
    let after = app.call("GET", "/v1/ping", Some(&test), None, &[]).await;
    assert_eq!(
        after.header("tollgate-credits-remaining").as_deref(),
        Some("999"),
        "simulations are free"
    );
    // Live keys ignore the header.
    app.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        app.call(
            "GET",
            "/v1/ping",
            Some(&live),
            None,
            &[("Tollgate-Simulate", "insufficient_credits")]
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn summarize_is_priced_by_input_size(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let pro: Uuid = sqlx::query_scalar("SELECT id FROM plans WHERE code = 'pro'")
        .fetch_one(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE subscriptions SET plan_id = $2 WHERE org_id = $1")
        .bind(org)
        .bind(pro)
        .execute(&db)
        .await
        .unwrap();
    let text = vec!["word."; 250].join(" ");
    let body = serde_json::json!({"text": text, "max_sentences": 2}).to_string();
    let res = app
        .call("POST", "/v1/text/summarize", Some(&key), Some(&body), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["sentences"], 2);
    assert_eq!(
        res.header("tollgate-credits-remaining").as_deref(),
        Some("97"),
        "250 words cost 3 credits"
    );
}

/// The ledger: every transaction balances, and the balances are its sums.
pub(crate) async fn assert_ledger_balanced(db: &PgPool) {
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING sum(amount) <> 0) t",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "every ledger transaction sums to zero");
    let drift: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM org_meters m WHERE
           m.included <> coalesce((SELECT sum(amount) FROM ledger_entries e WHERE e.org_id = m.org_id AND e.account = 'included'), 0)
        OR m.purchased <> coalesce((SELECT sum(amount) FROM ledger_entries e WHERE e.org_id = m.org_id AND e.account = 'purchased'), 0)
        OR m.sandbox <> coalesce((SELECT sum(amount) FROM ledger_entries e WHERE e.org_id = m.org_id AND e.account = 'sandbox'), 0)",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(drift, 0, "balances equal the sums of their ledger entries");
}

#[sqlx::test]
async fn concurrent_calls_on_two_instances_never_overspend(db: PgPool) {
    let (app, key, org) = customer(&db).await;
    adjust_included(&db, org, -80, "test:small").await; // 20 credits left
    sqlx::query("UPDATE plans SET rate_limit_per_sec = 100000")
        .execute(&db)
        .await
        .unwrap();
    // Two instances (each its own router, pool-sharing state and usage writer)
    // on the same database.
    let first = app.restarted();
    let second = app.restarted();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut instance = if i % 2 == 0 {
            first.other_browser()
        } else {
            second.other_browser()
        };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            instance
                .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
                .await
                .status
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PAYMENT_REQUIRED => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (20, 80));
    let balances = tollgate::billing::ledger::balances(&db, org).await.unwrap();
    assert_eq!(balances.live(), 0);
    let charged: i64 = sqlx::query_scalar("SELECT coalesce(sum(amount), 0)::int8 FROM ledger_entries WHERE org_id = $1 AND account = 'revenue'")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        charged, 20,
        "credits charged = starting balance - final balance"
    );
    assert_ledger_balanced(&db).await;
    first.state.gateway.usage.flush().await;
    second.state.gateway.usage.flush().await;
    // Every charged call has its usage event.
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transactions t WHERE t.kind = 'usage'
           AND NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.request_id = t.request_id AND u.credits = 1 AND u.status = 200)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(missing, 0);
}

#[sqlx::test]
async fn usage_events_record_every_call_with_the_402_body(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    let refused = app
        .call("POST", "/v1/text/summarize", Some(&key), Some(TEXT), &[])
        .await;
    app.state.gateway.usage.flush().await;
    let rows: Vec<(String, i16, Option<String>, i64, Option<serde_json::Value>)> =
        sqlx::query_as("SELECT endpoint, status, problem_code, credits, problem_body FROM usage_events WHERE org_id = $1 ORDER BY at, endpoint")
            .bind(org)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[0].1, rows[0].3), ("ping", 200, 0));
    assert_eq!(rows[1].2.as_deref(), Some("plan_upgrade_required"));
    assert_eq!(
        rows[1].4.as_ref(),
        Some(&refused.json()),
        "the exact body returned is kept"
    );
}

#[sqlx::test]
async fn lost_usage_events_of_charged_calls_are_rebuilt_from_the_ledger(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    app.state.gateway.usage.flush().await;
    // Simulate a crash that lost the batch.
    sqlx::query("DELETE FROM usage_events")
        .execute(&db)
        .await
        .unwrap();
    let later = app.clock.now() + time::Duration::minutes(10);
    let n = tollgate::gateway::usage::recover(&db, later, time::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let credits: i64 = sqlx::query_scalar("SELECT credits FROM usage_events WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(credits, 1);
    assert_eq!(
        tollgate::gateway::usage::recover(&db, later, time::Duration::minutes(5))
            .await
            .unwrap(),
        0
    );
}

#[sqlx::test]
async fn the_ledger_is_append_only_and_postings_are_idempotent(db: PgPool) {
    let (_app, _key, org) = customer(&db).await;
    adjust_included(&db, org, 5, "test:once").await;
    adjust_included(&db, org, 5, "test:once").await; // a retry moves nothing
    assert_eq!(
        tollgate::billing::ledger::balances(&db, org)
            .await
            .unwrap()
            .included,
        105
    );
    assert!(sqlx::query("UPDATE ledger_entries SET amount = 1")
        .execute(&db)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM ledger_transactions")
        .execute(&db)
        .await
        .is_err());
    assert!(
        sqlx::query("UPDATE org_meters SET included = -1")
            .execute(&db)
            .await
            .is_err(),
        "balances never go negative"
    );
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn openapi_describes_every_endpoint_and_problem(db: PgPool) {
    let mut app = TestApp::new(db).await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    let doc = res.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/ping", "get"),
        ("/v1/text/sentiment", "post"),
        ("/v1/text/summarize", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{path}");
        let examples = &op["responses"]["402"]["content"]["application/problem+json"]["examples"];
        assert!(
            examples["plan_upgrade_required"]["value"]["resolution"].is_array(),
            "{path}"
        );
        assert!(
            op["responses"]["401"].is_object() && op["responses"]["429"].is_object(),
            "{path}"
        );
    }
}

#[sqlx::test]
async fn releasing_a_charge_gives_credits_back_once(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(
        res.header("tollgate-credits-remaining").as_deref(),
        Some("99")
    );
    let request_id = res.header("request-id").unwrap();
    for _ in 0..2 {
        // An upstream failure releases the whole reservation; a retry moves nothing.
        let balance: Option<i64> = sqlx::query_scalar("SELECT gateway_release($1, 1, now())")
            .bind(&request_id)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(balance, Some(100));
    }
    let spent: i64 = sqlx::query_scalar("SELECT period_spent FROM org_meters WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(spent, 0);
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn the_gateway_commits_without_waiting_and_charged_calls_wait_for_the_flush(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let setting = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(setting(app.state.gateway.db.clone()).await, "off");
    assert_eq!(
        setting(db.clone()).await,
        "on",
        "everything else commits durably"
    );
    // The shared flush answers every waiter, however many arrive at once.
    let waits = (0..50).map(|_| {
        let durable = app.state.gateway.durable.clone();
        tokio::spawn(async move { durable.wait().await })
    });
    for w in waits {
        assert!(w.await.unwrap());
    }
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let charged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND kind = 'usage'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(charged, 1);

    // When the flush cannot be confirmed, a charged call is not served (and
    // gets its credits back); a free call, which moved nothing, is.
    let mut unconfirmed = app.state.clone();
    unconfirmed.gateway.durable = tollgate::gateway::durable::Durability::unconfirmed();
    app.router = tollgate::startup::router(unconfirmed);
    app.clock.advance(time::Duration::seconds(1));
    let refused = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[])
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("you were not charged"),
        "{}",
        refused.body
    );
    let balance: i64 =
        sqlx::query_scalar("SELECT included + purchased FROM org_meters WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(balance, 99, "the unconfirmed charge went back");
    let free = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(free.status, StatusCode::OK);
}

#[sqlx::test]
async fn free_calls_lease_rate_tokens_without_ever_exceeding_the_plan(db: PgPool) {
    let (mut a, key, _) = customer(&db).await;
    let mut b = a.restarted();
    sqlx::query("UPDATE plans SET rate_limit_per_sec = 1000 WHERE code = 'free'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(tollgate::gateway::rate::block(1000), 20);
    // The clock stands still: the plan allows 1,000 calls in this second, in all.
    let mut admitted = 0;
    for _ in 0..10 {
        let res = a.call("GET", "/v1/ping", Some(&key), None, &[]).await;
        assert_eq!(res.status, StatusCode::OK);
        admitted += 1;
    }
    let mut refused = None;
    for _ in 0..1100 {
        let res = b.call("GET", "/v1/ping", Some(&key), None, &[]).await;
        match res.status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused = Some(res);
                break;
            }
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    // Instance a still holds 10 claimed tokens: admitted is short of the plan
    // by at most one block, and never over it.
    assert_eq!(admitted, 990);
    let refused = refused.expect("the limit was reached");
    assert_eq!(refused.json()["code"], "rate_limited");
    assert!(refused.header("retry-after").is_some());
    // a spends what it claimed; then it is refused too.
    for _ in 0..10 {
        assert_eq!(
            a.call("GET", "/v1/ping", Some(&key), None, &[])
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        a.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A second later the limiter has room again.
    a.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        b.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn an_oversized_body_is_413_after_the_key_check_and_never_charged(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    let huge = format!(
        r#"{{"text": "{}"}}"#,
        "word ".repeat(tollgate::gateway::MAX_BODY / 5 + 10)
    );
    // Without a valid key, the body is never read: the key's problem comes first.
    let anonymous = app
        .call(
            "POST",
            "/v1/text/sentiment",
            Some("tg_live_00000000000000000000000000000000"),
            Some(&huge),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json()["code"], "invalid_api_key");
    let res = app
        .call("POST", "/v1/text/sentiment", Some(&key), Some(&huge), &[])
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.json()["code"], "payload_too_large");
    assert_eq!(
        res.header("tollgate-credits-remaining").as_deref(),
        Some("100"),
        "nothing charged"
    );
    let summarize = app
        .call("POST", "/v1/text/summarize", Some(&key), Some(&huge), &[])
        .await;
    assert_eq!(
        summarize.json()["code"],
        "plan_upgrade_required",
        "the plan comes first too"
    );
}

#[sqlx::test]
async fn the_low_balance_warning_follows_the_organizations_threshold(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    // 100 credits, above the default threshold of 10: no warning.
    let ping = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(ping.header("tollgate-warning"), None);
    sqlx::query("UPDATE org_meters SET low_balance_at = 150 WHERE org_id = $1")
        .bind(org)
        .execute(&db)
        .await
        .unwrap();
    for (method, body) in [("GET", None), ("POST", Some(TEXT))] {
        app.clock.advance(time::Duration::seconds(1));
        let path = if method == "GET" {
            "/v1/ping"
        } else {
            "/v1/text/sentiment"
        };
        let res = app.call(method, path, Some(&key), body, &[]).await;
        assert_eq!(res.status, StatusCode::OK);
        let warning = res.header("tollgate-warning").expect("below the threshold");
        assert!(warning.starts_with("low_balance; remaining="), "{warning}");
    }
}

/// A charged call on the exact path updates its organization's meter row
/// once (the balances), and a free one not at all: the rate limiters live
/// off that row (`gateway_limiters`).
#[sqlx::test]
async fn a_charged_call_updates_its_meter_row_once(db: PgPool) {
    let (_app, key, _) = customer(&db).await;
    let (secret, _) = tollgate::api_keys::Secret::parse(&key).unwrap();
    for (cost, request) in [(1i64, "req_once_charged"), (0, "req_once_free")] {
        let mut tx = db.begin().await.unwrap();
        // The counter holds this connection's updates not yet reported to
        // the statistics, whatever transaction made them: the call's are
        // the difference.
        let before: i64 = sqlx::query_scalar("SELECT pg_stat_get_xact_tuples_updated('org_meters'::regclass)")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let outcome: String = sqlx::query_scalar(
            "SELECT outcome::text FROM gateway_authorize($1, 'sentiment', 'text', $2, now(), $3, NULL, NULL)",
        )
        .bind(secret.hash())
        .bind(cost)
        .bind(request)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(outcome, "ok");
        let updated: i64 = sqlx::query_scalar("SELECT pg_stat_get_xact_tuples_updated('org_meters'::regclass)")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(updated - before, cost, "cost {cost}: {cost} update(s) of the meter row");
        tx.rollback().await.unwrap();
    }
}

/// `/metrics` is there only with a token configured, answers only to it,
/// and counts the gateway's answers by outcome and code.
#[sqlx::test]
async fn metrics_need_their_token_and_count_the_gateways_answers(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    assert_eq!(app.get("/metrics").await.status, 404);
    let mut config = tollgate::config::Config::for_tests();
    config.metrics_token = Some(tollgate::config::SecretKey("metrics-token-for-tests".into()));
    let mut m = TestApp::with_config(db.clone(), config).await;
    assert_eq!(m.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
    assert_eq!(m.call("GET", "/v1/ping", Some("tg_live_notakey"), None, &[]).await.status, 401);
    for wrong in [None, Some("metrics-token-for-test"), Some("metrics-token-for-tests-")] {
        let res = m.call("GET", "/metrics", wrong, None, &[]).await;
        assert_eq!(res.status, 401, "{wrong:?}");
        assert!(!res.body.contains("tollgate_"));
    }
    let res = m.call("GET", "/metrics", Some("metrics-token-for-tests"), None, &[]).await;
    assert_eq!(res.status, 200);
    assert!(res.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let body = res.body;
    assert!(body.contains("tollgate_gateway_decisions_total{outcome=\"served\",code=\"\"} 1"), "{body}");
    assert!(body.contains("tollgate_gateway_decisions_total{outcome=\"refused\",code=\"invalid_api_key\"} 1"), "{body}");
    assert!(body.contains("tollgate_gateway_latency_seconds_count{outcome=\"served\"} 1"));
    assert!(body.contains("tollgate_db_pool_connections{pool=\"gateway\",state=\"max\"}"));
}
