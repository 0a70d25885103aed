//! Usage you can see: rollups, the usage page and its export, the request
//! log and its entries, the dashboard, warnings, partitions and retention.

use crate::gateway::customer;
use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;
use time::macros::datetime;
use time::OffsetDateTime;
use tollgate::billing::ledger::{Account, Kind, Posting};
use tollgate::gateway::usage::{UsageEvent, UsageSink};
use uuid::Uuid;

const TEXT: &str = r#"{"text": "Great docs and a fast, reliable API."}"#;

async fn post(db: &PgPool, org: Uuid, key: &str, entries: &[(Account, i64)]) {
    let mut conn = db.acquire().await.unwrap();
    tollgate::billing::ledger::post(
        &mut conn,
        Posting { org, kind: Kind::Adjustment, key, entries, memo: "test" },
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
}

/// Three answered calls, a 402 plan_upgrade_required, then every included
/// credit taken away and a 402 insufficient_credits. Returns the two 402
/// bodies.
async fn mixed_calls(app: &mut TestApp, key: &str, org: Uuid) -> (serde_json::Value, serde_json::Value) {
    for _ in 0..3 {
        let r = app.call("POST", "/v1/text/sentiment", Some(key), Some(TEXT), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let upgrade = app.call("POST", "/v1/text/summarize", Some(key), Some(TEXT), &[]).await;
    assert_eq!(upgrade.status, StatusCode::PAYMENT_REQUIRED);
    let left: i64 = sqlx::query_scalar("SELECT included FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&app.db).await.unwrap();
    post(&app.db, org, "drain", &[(Account::Included, -left), (Account::Adjustments, left)]).await;
    let broke = app.call("POST", "/v1/text/sentiment", Some(key), Some(TEXT), &[]).await;
    assert_eq!(broke.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(broke.json()["code"], "insufficient_credits");
    app.state.gateway.usage.flush().await;
    (upgrade.json(), broke.json())
}

/// The CSV's lines as maps of column to value.
fn csv(body: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = body.lines();
    let head: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines.map(|l| head.iter().cloned().zip(l.split(',').map(str::to_string)).collect()).collect()
}

fn sum(rows: &[std::collections::HashMap<String, String>], col: &str, pred: impl Fn(&std::collections::HashMap<String, String>) -> bool) -> i64 {
    rows.iter().filter(|r| pred(r)).map(|r| r[col].parse::<i64>().unwrap()).sum()
}

/// The text of the element with `data-testid=id` (up to its first tag).
fn testid(html: &str, id: &str) -> String {
    let marker = format!("data-testid=\"{id}\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("{id} on the page")) + marker.len();
    let rest = &html[start..];
    let open_end = rest.find('>').unwrap() + 1;
    let text = &rest[open_end..];
    decode_html(&text[..text.find('<').unwrap()])
}

#[sqlx::test]
async fn calls_show_on_the_usage_page_and_the_export_sums_to_it(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    mixed_calls(&mut app, &key, org).await;
    let page = app.get("/account/usage?span=24h").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-testid=\"calls-chart\""), "an SVG chart");
    assert!(page.body.contains("All times are UTC"));
    assert_eq!(testid(&page.body, "calls-total"), "5");
    assert_eq!(testid(&page.body, "credits-included-total"), "3");
    assert_eq!(testid(&page.body, "credits-purchased-total"), "0");
    // The per-endpoint table: sentiment 4 calls (one 402), summarize one 402.
    let endpoints = &page.body[page.body.find("data-testid=\"endpoints-table\"").unwrap()..];
    assert!(endpoints.contains("text.sentiment") || endpoints.contains("sentiment"), "{endpoints}");

    let export = app.get("/account/usage.csv?span=24h").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(export.header("content-type").unwrap().starts_with("text/csv"));
    let rows = csv(&export.body);
    assert_eq!(sum(&rows, "calls", |_| true), 5);
    assert_eq!(sum(&rows, "calls", |r| r["outcome"] == "402"), 2);
    assert_eq!(sum(&rows, "calls", |r| r["code"] == "plan_upgrade_required"), 1);
    assert_eq!(sum(&rows, "calls", |r| r["code"] == "insufficient_credits"), 1);
    assert_eq!(sum(&rows, "credits_included", |_| true), 3);

    // Filtered by mode: the test mode has none of these calls.
    let test_only = app.get("/account/usage.csv?span=24h&mode=test").await;
    assert_eq!(sum(&csv(&test_only.body), "calls", |_| true), 0);
    let test_page = app.get("/account/usage?span=24h&mode=test").await;
    assert!(test_page.body.contains("data-testid=\"usage-empty\""), "a friendly empty state, not an empty chart");
}

#[sqlx::test]
async fn a_key_filter_narrows_the_page_and_the_export_alike(db: PgPool) {
    let (mut app, key, _org) = customer(&db).await;
    let other = app.create_key("second", "live", &["*"], "never").await;
    for _ in 0..2 {
        app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
    }
    app.call("POST", "/v1/text/sentiment", Some(&other), Some(TEXT), &[]).await;
    app.state.gateway.usage.flush().await;
    let id: Uuid = sqlx::query_scalar("SELECT id FROM api_keys WHERE name = 'second'").fetch_one(&db).await.unwrap();
    let page = app.get(&format!("/account/usage?span=7d&key={id}")).await;
    assert_eq!(testid(&page.body, "calls-total"), "1");
    let rows = csv(&app.get(&format!("/account/usage.csv?span=7d&key={id}")).await.body);
    assert_eq!(sum(&rows, "calls", |_| true), 1);
    // A revoked key's calls stay, and it stays a choice of the filter.
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1").bind(id).execute(&db).await.unwrap();
    let page = app.get(&format!("/account/usage?span=7d&key={id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(testid(&page.body, "calls-total"), "1");
    assert!(page.body.contains("revoked"));
}

#[sqlx::test]
async fn the_month_on_the_usage_page_equals_the_ledgers_debits(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    // 100 included credits and 5 purchased: 103 calls spend all included
    // then 3 purchased.
    post(&db, org, "bought", &[(Account::Purchased, 5), (Account::Adjustments, -5)]).await;
    for _ in 0..103 {
        app.clock.advance(time::Duration::milliseconds(250));
        let r = app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // Test calls spend the sandbox, apart.
    let test_key = app.create_key("tests", "test", &["*"], "never").await;
    for _ in 0..4 {
        app.clock.advance(time::Duration::milliseconds(250));
        app.call("POST", "/v1/text/sentiment", Some(&test_key), Some(TEXT), &[]).await;
    }
    app.state.gateway.usage.flush().await;
    let page = app.get("/account/usage?span=30d").await;
    let included: i64 = testid(&page.body, "credits-included-total").replace(',', "").parse().unwrap();
    let purchased: i64 = testid(&page.body, "credits-purchased-total").replace(',', "").parse().unwrap();
    let sandbox: i64 = testid(&page.body, "credits-sandbox-total").replace(',', "").parse().unwrap();
    // The ledger: what calls took from each balance, less what releases gave back.
    let (l_purchased, l_revenue, l_sandbox): (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce(-sum(e.amount) FILTER (WHERE e.account = 'purchased'), 0)::int8,
                coalesce(sum(e.amount) FILTER (WHERE e.account = 'revenue'), 0)::int8,
                coalesce(sum(e.amount) FILTER (WHERE e.account = 'sandbox_sink'), 0)::int8
           FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
          WHERE t.org_id = $1 AND t.kind IN ('usage', 'refund', 'sandbox_usage', 'sandbox_refund')",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((included, purchased, sandbox), (l_revenue - l_purchased, l_purchased, l_sandbox));
    assert_eq!((included, purchased, sandbox), (100, 3, 4));
    assert!(tollgate::billing::ledger::audit(&db).await.unwrap().is_sound());
    // The dashboard agrees: all 100 included credits used.
    let dash = app.get("/account").await;
    assert!(testid(&dash.body, "included-used").starts_with("100 of 100 included credits used"), "{}", testid(&dash.body, "included-used"));
    assert_eq!(testid(&dash.body, "purchased-balance"), "2");
}

#[sqlx::test]
async fn each_event_counts_once_whatever_writes_it(db: PgPool) {
    let (app, _key, org) = customer(&db).await;
    let at = app.clock.now();
    let events: Vec<UsageEvent> = (0..600)
        .map(|i| UsageEvent {
            request_id: format!("req_conc_{i}"),
            org_id: org,
            api_key_id: None,
            mode: "live".into(),
            endpoint: "ping".into(),
            method: "GET".into(),
            status: if i % 10 == 0 { 402 } else { 200 },
            problem_code: (i % 10 == 0).then(|| "insufficient_credits".to_string()),
            credits: 0,
            latency_us: 700 + i,
            problem_body: None,
            at: at + time::Duration::milliseconds(i),
            settles_hold: false,
        })
        .collect();
    // Four instances' writers, each with its own pool, all writing the same
    // events at once (as retries and recoveries would).
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = PgPool::connect_with((*db.connect_options()).clone()).await.unwrap();
        let sink = UsageSink::start(pool);
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            for e in events {
                sink.record(e).await;
            }
            sink.flush().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (events_n, hourly, daily, refused): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_events WHERE org_id = $1),
                (SELECT sum(calls)::int8 FROM usage_hourly WHERE org_id = $1),
                (SELECT sum(calls)::int8 FROM usage_daily WHERE org_id = $1),
                (SELECT sum(calls)::int8 FROM usage_daily WHERE org_id = $1 AND outcome = '402')",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((events_n, hourly, daily, refused), (600, 600, 600, 60));
    // The histogram holds every call once too.
    let hist: i64 = sqlx::query_scalar(&format!(
        "SELECT sum({})::int8 FROM usage_daily WHERE org_id = $1",
        (0..20).map(|i| format!("h{i:02}")).collect::<Vec<_>>().join(" + ")
    ))
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(hist, 600);
}

#[sqlx::test]
async fn a_corrected_event_moves_its_rollups(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
    app.state.gateway.usage.flush().await;
    // The batch is lost (deleted through the parent: the rollups follow),
    // then rebuilt from the ledger: counted once.
    sqlx::query("DELETE FROM usage_events").execute(&db).await.unwrap();
    let calls: Option<i64> = sqlx::query_scalar("SELECT sum(calls)::int8 FROM usage_daily WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(calls, Some(0));
    let later = app.clock.now() + time::Duration::minutes(10);
    assert_eq!(tollgate::gateway::usage::recover(&db, later, time::Duration::minutes(5)).await.unwrap(), 1);
    assert_eq!(tollgate::gateway::usage::recover(&db, later, time::Duration::minutes(5)).await.unwrap(), 0);
    let (calls, credits): (i64, i64) =
        sqlx::query_as("SELECT sum(calls)::int8, sum(credits)::int8 FROM usage_daily WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!((calls, credits), (1, 1));
}

#[sqlx::test]
async fn partitions_are_made_ahead_and_dropped_after_the_retention(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    // The last second of November and the first of December: two days, two
    // months, two partitions.
    app.clock.advance(datetime!(2026-11-30 23:59:59 UTC) - app.clock.now());
    app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
    app.clock.advance(time::Duration::seconds(2));
    app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
    app.state.gateway.usage.flush().await;
    let now = app.clock.now();
    let done = tollgate::usage::partitions::maintain(&db, now, 90).await.unwrap();
    assert!(done.created >= 1, "{done:?}");
    let homes: Vec<String> = sqlx::query_scalar("SELECT tableoid::regclass::text FROM usage_events WHERE org_id = $1 ORDER BY at")
        .bind(org)
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(homes, ["usage_events_20261130", "usage_events_20261201"]);
    // Moving them out of the default partition counted nothing twice.
    let page = app.get("/account/usage?span=7d").await;
    assert_eq!(testid(&page.body, "calls-total"), "2");
    let log = app.get("/account/logs?from=2026-11-30T23:00&to=2026-12-01T01:00").await;
    assert_eq!(log.body.matches("href=\"/account/logs/").count(), 2, "the log reads across the boundary");
    let times: Vec<usize> = ["2026-12-01 00:00:01 UTC", "2026-11-30 23:59:59 UTC"].iter().map(|t| log.body.find(t).unwrap()).collect();
    assert!(times[0] < times[1], "newest first");
    // Ahead: the next week's partitions exist.
    let ahead: bool = sqlx::query_scalar("SELECT to_regclass('usage_events_20261208') IS NOT NULL").fetch_one(&db).await.unwrap();
    assert!(ahead);
    // 91 days on, the events are gone and the rollups stay.
    let later = now + time::Duration::days(91);
    let done = tollgate::usage::partitions::maintain(&db, later, 90).await.unwrap();
    assert!(done.dropped >= 2, "{done:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(left, 0);
    let kept: i64 = sqlx::query_scalar("SELECT sum(calls)::int8 FROM usage_daily WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(kept, 2);
    // 13 months on, the rollups go too.
    tollgate::usage::partitions::maintain(&db, now + time::Duration::days(400), 90).await.unwrap();
    let kept: Option<i64> = sqlx::query_scalar("SELECT sum(calls)::int8 FROM usage_daily WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(kept, None);
}

#[sqlx::test]
async fn the_log_pages_by_keyset_newest_first(db: PgPool) {
    let (mut app, key, _org) = customer(&db).await;
    for _ in 0..60 {
        app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
        app.clock.advance(time::Duration::milliseconds(250));
    }
    app.state.gateway.usage.flush().await;
    let mut seen = Vec::new();
    let mut path = "/account/logs".to_string();
    let mut pages = 0;
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        let ids: Vec<String> = page
            .body
            .match_indices("href=\"/account/logs/")
            .map(|(i, m)| {
                let rest = &page.body[i + m.len()..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .collect();
        seen.extend(ids);
        pages += 1;
        let marker = "data-testid=\"log-older\"";
        let Some(at) = page.body.find(marker) else { break };
        let before = &page.body[..at];
        let href = &before[before.rfind("href=\"").unwrap() + 6..];
        path = decode_html(&href[..href.find('"').unwrap()]);
        assert!(!path.contains("offset"), "{path}");
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 60);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 60, "no call twice");
    // A made-up cursor is not a page.
    assert_eq!(app.get("/account/logs?after=garbage").await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn a_refused_calls_entry_shows_the_exact_body_and_its_fix_comes_back(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let (upgrade, broke) = mixed_calls(&mut app, &key, org).await;
    for body in [upgrade, broke] {
        let id = body["request_id"].as_str().unwrap().to_string();
        let filtered = app.get(&format!("/account/logs?class=402&code={}", body["code"].as_str().unwrap())).await;
        assert!(filtered.body.contains(&format!("/account/logs/{id}")));
        assert_eq!(filtered.body.matches("href=\"/account/logs/").count(), 1, "only that code");
        let page = app.get(&format!("/account/logs/{id}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let pre = page.body.find("data-testid=\"entry-body\"").unwrap();
        let start = pre + page.body[pre..].find("<code>").unwrap() + "<code>".len();
        let shown = decode_html(&page.body[start..start + page.body[start..].find("</code>").unwrap()]);
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(shown, body, "the body exactly as the client got it");
        let tag_end = page.body.find("data-testid=\"entry-fix\"").unwrap();
        let tag = &page.body[page.body[..tag_end].rfind("<a ").unwrap()..];
        let href = decode_html(&tag[tag.find("href=\"").unwrap() + 6..]);
        let href = &href[..href.find('"').unwrap()];
        assert!(href.starts_with("/billing/"), "{href}");
        assert!(href.ends_with(&format!("return_to=%2Faccount%2Flogs%2F{id}")), "{href}");
        let fix_page = app.get(href).await;
        assert_eq!(fix_page.status, StatusCode::OK);
        assert!(page.body.contains(&format!("href=\"/docs/errors/{}\"", body["code"].as_str().unwrap())));
        assert!(page.body.contains("/explorer?endpoint="));
    }
    // The dashboard shows the last refusal and its fix.
    let dash = app.get("/account").await;
    assert!(dash.body.contains("data-testid=\"last-refused\""));
    assert!(dash.body.contains("insufficient_credits"));
    assert!(dash.body.contains("data-testid=\"last-refused-fix\""));
    assert_eq!(testid(&dash.body, "today-402"), "2");
}

#[sqlx::test]
async fn another_organizations_ids_are_not_found_in_any_form(db: PgPool) {
    let (mut app, key, _org) = customer(&db).await;
    let mut other = TestApp::new(db.clone()).await;
    other.sign_up("Grace", "grace@example.com", PASSWORD).await;
    let other_key = other.create_key("theirs", "live", &["*"], "never").await;
    let theirs = other.call("POST", "/v1/text/summarize", Some(&other_key), Some(TEXT), &[]).await;
    app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    other.state.gateway.usage.flush().await;
    app.state.gateway.usage.flush().await;
    let their_key: Uuid = sqlx::query_scalar("SELECT id FROM api_keys WHERE name = 'theirs'").fetch_one(&db).await.unwrap();
    let their_request = theirs.json()["request_id"].as_str().unwrap().to_string();
    let upper = their_key.to_string().to_uppercase();
    let braced = format!("%7B{their_key}%7D");
    for path in [
        format!("/account/usage?key={their_key}"),
        format!("/account/usage?key={upper}"),
        format!("/account/usage?key={braced}"),
        format!("/account/usage.csv?key={their_key}"),
        format!("/account/logs?key={their_key}"),
        format!("/account/logs/{their_request}"),
        format!("/account/logs/{}", their_request.to_uppercase()),
        format!("/account/logs/{their_request}%2F..%2F"),
        "/account/logs/..%5Cx".to_string(),
        "/account/usage?span=365d".to_string(),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!res.body.contains(&their_request) && !res.body.contains("theirs"), "{path} leaks");
    }
    // Their calls are never in our log or our usage.
    let log = app.get("/account/logs").await;
    assert!(!log.body.contains(&their_request));
    assert_eq!(log.body.matches("href=\"/account/logs/").count(), 1);
}

#[sqlx::test]
async fn no_traffic_yet_is_a_friendly_empty_state(db: PgPool) {
    let (mut app, _key, _org) = customer(&db).await;
    let usage = app.get("/account/usage").await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(usage.body.contains("data-testid=\"usage-empty\""));
    assert!(!usage.body.contains("data-testid=\"calls-chart\""));
    assert!(usage.body.contains("nothing to forecast"));
    let log = app.get("/account/logs").await;
    assert!(log.body.contains("data-testid=\"log-empty\""));
    let dash = app.get("/account").await;
    assert_eq!(testid(&dash.body, "today-calls"), "0");
    assert!(!dash.body.contains("data-testid=\"last-refused\""));
    // One call: a chart with one bar.
    let (mut app2, key2, _) = (app, _key, ());
    app2.call("GET", "/v1/ping", Some(&key2), None, &[]).await;
    app2.state.gateway.usage.flush().await;
    let usage = app2.get("/account/usage?span=24h").await;
    assert!(usage.body.contains("data-testid=\"calls-chart\""));
    assert_eq!(testid(&usage.body, "calls-total"), "1");
}

#[sqlx::test]
async fn every_member_sees_usage_and_developers_and_up_see_the_log(db: PgPool) {
    let (mut app, key, _org) = customer(&db).await;
    app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    let refused = app.call("POST", "/v1/text/summarize", Some(&key), Some(TEXT), &[]).await;
    let refused_id = refused.json()["request_id"].as_str().unwrap().to_string();
    app.state.gateway.usage.flush().await;
    let mut billing = app.invite_and_join("bill@example.com", "billing", "Bill").await;
    let usage = billing.get("/account/usage").await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(!usage.body.contains("href=\"/account/logs\""), "no way to the log for a billing member");
    assert!(app.get("/account/usage").await.body.contains("href=\"/account/logs\""));
    // The dashboard tells a billing member of the refusal and its fix, not
    // what only the log's readers see.
    let dash = billing.get("/account").await;
    assert!(dash.body.contains("data-testid=\"last-refused-fix\""));
    // The fix link carries the refusal's id as `ref` (the console's
    // recovery funnel attributes the visit by it); nothing else shows it.
    let without_ref = dash.body.replace(&format!("ref={refused_id}"), "");
    assert!(dash.body.contains(&format!("ref={refused_id}")), "the fix link names its refusal");
    assert!(!without_ref.contains(&refused_id), "no request id for a billing member");
    assert!(!dash.body.contains("tg_live_"), "no key for a billing member");
    assert!(app.get("/account").await.body.contains(&refused_id), "the owner sees it");
    assert_eq!(billing.get("/account/usage.csv").await.status, StatusCode::OK);
    assert_eq!(billing.get("/account/logs").await.status, StatusCode::FORBIDDEN);
    let id = refused_id;
    assert_eq!(billing.get(&format!("/account/logs/{id}")).await.status, StatusCode::FORBIDDEN);
    let mut dev = app.invite_and_join("dev@example.com", "developer", "Dev").await;
    assert_eq!(dev.get("/account/logs").await.status, StatusCode::OK);
    assert_eq!(dev.get(&format!("/account/logs/{id}")).await.status, StatusCode::OK);
    let mut anonymous = app.other_browser();
    anonymous.cookies.clear();
    let res = anonymous.get("/account/usage.csv").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.location().starts_with("/login"));
}

#[sqlx::test]
async fn a_threshold_crossed_warns_once_per_crossing_however_many_run_the_job(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    // Warn below 90 credits left.
    let csrf = extract_csrf(&app.get("/billing/limits").await.body);
    let saved = app
        .post_form(
            "/api/save_limits",
            &[("csrf", &csrf), ("spend_cap", ""), ("low_balance_at", "90"), ("warn_included_pct", "5"), ("warn_spend_cap_pct", "")],
        )
        .await;
    assert_eq!(saved.location(), "/billing/limits");
    let limits = app.get("/billing/limits").await;
    assert!(limits.body.contains("value=\"5\""), "the threshold is kept");
    let bad = app
        .post_form("/api/save_limits", &[("csrf", &csrf), ("spend_cap", ""), ("low_balance_at", "90"), ("warn_included_pct", "150")])
        .await;
    assert_eq!(bad.location(), "/billing/limits");
    assert!(decode_html(&app.get("/billing/limits").await.body).contains("The included-credits warning is a whole number from 1 to 100."));
    for _ in 0..11 {
        app.clock.advance(time::Duration::milliseconds(250));
        app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
    }
    app.state.gateway.usage.flush().await;
    let now = app.clock.now();
    // Two instances run the job at once; then again.
    let (a, b) = tokio::join!(tollgate::usage::warnings::due(&app.state, now), tollgate::usage::warnings::due(&app.state, now));
    let sent = a.unwrap() + b.unwrap();
    assert_eq!(sent, 2, "low balance and included credits, once each");
    assert_eq!(tollgate::usage::warnings::due(&app.state, now).await.unwrap(), 0);
    let emails: Vec<String> = sqlx::query_scalar("SELECT subject FROM email_outbox WHERE kind IN ('low_balance', 'included_used') ORDER BY subject")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(emails, ["You have used most of your included credits", "Your credit balance is low"]);
    let (_, body) = last_email(&db, "ada@example.com").await.unwrap();
    assert!(body.contains("credits a day"), "the forecast is in the email: {body}");
    let dash = app.get("/account").await;
    assert!(dash.body.contains("data-banner=\"low_balance\""));
    assert!(dash.body.contains("data-banner=\"included_used\""));
    // Topped up: cleared, then crossed again: a second low-balance email.
    post(&db, org, "topup", &[(Account::Purchased, 100), (Account::Adjustments, -100)]).await;
    tollgate::usage::warnings::due(&app.state, now).await.unwrap();
    post(&db, org, "spent", &[(Account::Purchased, -100), (Account::Adjustments, 100)]).await;
    assert_eq!(tollgate::usage::warnings::due(&app.state, now).await.unwrap(), 1);
}

#[sqlx::test]
async fn the_latency_buckets_are_the_databases(db: PgPool) {
    let bounds: Vec<i64> = sqlx::query_scalar("SELECT unnest(usage_latency_bounds())").fetch_all(&db).await.unwrap();
    assert_eq!(bounds, tollgate::usage::latency::BOUNDS_US);
}

#[sqlx::test]
async fn calls_of_an_endpoint_removed_since_stay_in_usage_and_the_log(db: PgPool) {
    let (mut app, _key, org) = customer(&db).await;
    // A provider route's calls, the route deleted since: its events keep
    // the endpoint's name.
    sqlx::query(
        "INSERT INTO usage_events (request_id, org_id, mode, endpoint, method, status, credits, latency_us, at)
         VALUES ('req_gone_1', $1, 'live', 'retired.search', 'POST', 200, 0, 1500, $2)",
    )
    .bind(org)
    .bind(app.clock.now())
    .execute(&db)
    .await
    .unwrap();
    let page = app.get("/account/usage?span=24h").await;
    assert!(page.body.contains("retired.search"));
    let log = app.get("/account/logs?endpoint=retired.search").await;
    assert!(log.body.contains("/account/logs/req_gone_1"));
    let entry = app.get("/account/logs/req_gone_1").await;
    assert_eq!(entry.status, StatusCode::OK);
    assert!(entry.body.contains("/explorer?endpoint=retired.search"));
    // Bad filters are said next to the field, and nothing breaks.
    let bad = decode_html(&app.get("/account/logs?from=yesterday&class=999&code=nope").await.body);
    assert!(bad.contains("A date like 2026-12-01"));
    assert!(bad.contains("Choose a status class from the list."));
    assert!(bad.contains("Choose a problem code from the list."));
    assert!(bad.contains("aria-invalid=\"true\""));
    assert!(bad.contains("data-testid=\"log-filter-errors\""), "no rows under filters that could not be read");
    assert!(!bad.contains("/account/logs/req_gone_1"));
    let long = app.get(&format!("/account/logs?endpoint={}", "x".repeat(5000))).await;
    assert_eq!(long.status, StatusCode::OK);
}

#[sqlx::test]
async fn held_reservations_and_lapsed_credits_are_neither_spent_nor_used(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let test_key = app.create_key("tests", "test", &["*"], "never").await;
    let mut ids = Vec::new();
    for k in [&key, &test_key] {
        app.clock.advance(time::Duration::milliseconds(250));
        let r = app.call("POST", "/v1/text/sentiment", Some(k), Some(TEXT), &[]).await;
        ids.push(r.header("request-id").unwrap());
    }
    app.state.gateway.usage.flush().await;
    // As if both calls were still running: their reservations held.
    for id in &ids {
        sqlx::query("INSERT INTO gateway_holds (request_id, org_id, amount, settle_after, created_at) VALUES ($1, $2, 1, now() + interval '1 hour', now())")
            .bind(id)
            .bind(org)
            .execute(&db)
            .await
            .unwrap();
    }
    let o = tollgate::usage::outlook::outlook(&db, org, app.clock.now()).await.unwrap();
    assert_eq!((o.thresholds.held, o.thresholds.held_included), (1, 1), "the live call's hold only, from the included credits");
    sqlx::query("DELETE FROM gateway_holds").execute(&db).await.unwrap();
    for _ in 0..9 {
        app.clock.advance(time::Duration::milliseconds(250));
        app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await;
    }
    // The period ends unrenewed; a test call makes the gateway post the
    // lapse of the 90 left. They lapsed; 10 were used.
    let now = app.clock.now();
    sqlx::query("UPDATE org_meters SET included_expires_at = $2 WHERE org_id = $1").bind(org).bind(now).execute(&db).await.unwrap();
    app.clock.advance(time::Duration::seconds(1));
    app.call("POST", "/v1/text/sentiment", Some(&test_key), Some(TEXT), &[]).await;
    let expired: i64 = sqlx::query_scalar("SELECT included FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(expired, 0, "the gateway moved them to expired");
    let o = tollgate::usage::outlook::outlook(&db, org, app.clock.now()).await.unwrap();
    assert_eq!((o.included.used, o.included.of), (10, 100));
    assert!(o.included.lapsed);
    assert!(!o.crossed.contains(&tollgate::usage::outlook::Warning::IncludedUsed));
}
