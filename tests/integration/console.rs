//! The operator's console: suspension, credit adjustments, the plan editor,
//! the audit log, organization search and the 402 recovery funnel, through
//! the forms and pages an admin uses.

use crate::billing::{add_card, hidden, top_up, upgrade, wait_for, GOOD};
use crate::gateway::customer;
use crate::helpers::*;
use crate::routes::admin_of;
use axum::http::StatusCode;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

const TEXT: &str = r#"{"text": "Great docs and a fast, reliable API."}"#;

async fn suspend(ops: &mut TestApp, org: Uuid, on: bool, reason: &str) -> TestResponse {
    let page = ops.get(&format!("/admin/orgs/{org}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = extract_csrf(&page.body);
    let org = org.to_string();
    let suspend = if on { "true" } else { "false" };
    ops.post_form("/api/set_keys_suspended", &[("csrf", &csrf), ("org_id", &org), ("suspend", suspend), ("reason", reason)]).await
}

/// The adjustment form of the organization's page, filled and posted;
/// returns the response and the form's one-time key.
async fn adjust(ops: &mut TestApp, org: Uuid, account: &str, direction: &str, amount: &str, reason: &str, key: Option<&str>) -> (TestResponse, String) {
    let page = ops.get(&format!("/admin/orgs/{org}")).await;
    let csrf = extract_csrf(&page.body);
    let key = key.map(str::to_string).unwrap_or_else(|| hidden(&page.body, "idempotency_key"));
    let org = org.to_string();
    let res = ops
        .post_form(
            "/api/adjust_credits",
            &[("csrf", &csrf), ("org_id", &org), ("account", account), ("direction", direction), ("amount", amount), ("reason", reason), ("idempotency_key", &key)],
        )
        .await;
    (res, key)
}

async fn meters(db: &PgPool, org: Uuid) -> (i64, i64) {
    sqlx::query_as("SELECT included, purchased FROM org_meters WHERE org_id = $1").bind(org).fetch_one(db).await.unwrap()
}

#[sqlx::test]
async fn suspended_keys_get_403_with_their_own_code_until_restored(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, StatusCode::OK);

    // A reason is required; without one nothing changes.
    let res = suspend(&mut ops, org, true, "  ").await;
    assert_eq!(res.location(), format!("/admin/orgs/{org}"));
    assert!(ops.get(&format!("/admin/orgs/{org}")).await.body.contains("reason-error"));
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, StatusCode::OK);

    suspend(&mut ops, org, true, "abuse report 42").await;
    let refused = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "a suspension is never a 402");
    let body = refused.json();
    assert_eq!(body["code"], "api_key_suspended");
    assert_eq!(body["type"], "http://portal.test/docs/errors/api_key_suspended");
    assert_eq!(app.get("/docs/errors/api_key_suspended").await.status, StatusCode::OK);
    // A key made during the suspension is suspended too.
    app.clock.advance(time::Duration::milliseconds(250));
    let fresh = app.create_key("new", "test", &["*"], "never").await;
    assert_eq!(app.call("GET", "/v1/ping", Some(&fresh), None, &[]).await.json()["code"], "api_key_suspended");

    // The audit log has who, what, before and after, and the request.
    let (before, after, rid, actor): (serde_json::Value, serde_json::Value, Option<String>, Option<Uuid>) = sqlx::query_as(
        "SELECT before, after, request_id, actor_user_id FROM audit_log WHERE action = 'org.keys_suspended' AND org_id = $1",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(before["suspended"], false);
    assert_eq!(after["suspended"], true);
    assert_eq!(after["reason"], "abuse report 42");
    assert!(rid.is_some_and(|r| r.starts_with("req_")), "the entry names the request");
    assert!(actor.is_some());

    // A customer cannot lift it: the form is the admin's.
    let csrf = extract_csrf(&app.get("/account").await.body);
    let org_text = org.to_string();
    app.post_form("/api/set_keys_suspended", &[("csrf", &csrf), ("org_id", &org_text), ("suspend", "false")]).await;
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, StatusCode::FORBIDDEN);

    suspend(&mut ops, org, false, "").await;
    app.clock.advance(time::Duration::milliseconds(250));
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, StatusCode::OK);
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE org_id = $1 AND action IN ('org.keys_suspended', 'org.keys_restored')")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(entries, 2);
}

#[sqlx::test]
async fn a_credit_adjustment_moves_credits_once_never_below_zero_and_is_audited(db: PgPool) {
    let (app, _key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let (res, key) = adjust(&mut ops, org, "purchased", "add", "500", "goodwill for the outage", None).await;
    assert_eq!(res.location(), format!("/admin/orgs/{org}"));
    let page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    assert!(decode_html(&page).contains("Added 500 purchased credits: 0 → 500."), "{page}");
    assert_eq!(meters(&db, org).await, (100, 500));
    // The same form again (a double click, a replay): nothing moves twice.
    adjust(&mut ops, org, "purchased", "add", "500", "goodwill for the outage", Some(&key)).await;
    assert_eq!(meters(&db, org).await, (100, 500));
    assert!(decode_html(&ops.get(&format!("/admin/orgs/{org}")).await.body).contains("nothing moved twice"));
    // Below zero: refused next to the field, what was typed kept.
    adjust(&mut ops, org, "included", "remove", "101", "clean-up", None).await;
    let page = decode_html(&ops.get(&format!("/admin/orgs/{org}")).await.body);
    assert!(page.contains("below zero: 100 available"), "{page}");
    assert!(page.contains("value=\"clean-up\""), "the reason typed comes back");
    assert_eq!(meters(&db, org).await, (100, 500));
    // A reason is required.
    adjust(&mut ops, org, "purchased", "remove", "5", "", None).await;
    assert!(ops.get(&format!("/admin/orgs/{org}")).await.body.contains("reason-error"));
    adjust(&mut ops, org, "included", "remove", "100", "clean-up", None).await;
    assert_eq!(meters(&db, org).await, (0, 500));

    let rows: Vec<(serde_json::Value, serde_json::Value, serde_json::Value, Option<String>)> = sqlx::query_as(
        "SELECT details, before, after, request_id FROM audit_log WHERE action = 'credits.adjusted' AND org_id = $1 ORDER BY id",
    )
    .bind(org)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "two adjustments went through");
    assert_eq!(rows[0].0["reason"], "goodwill for the outage");
    assert_eq!(rows[0].1["purchased"], 0);
    assert_eq!(rows[0].2["purchased"], 500);
    assert_eq!(rows[1].1["included"], 100);
    assert_eq!(rows[1].2["included"], 0);
    assert!(rows.iter().all(|r| r.3.as_deref().is_some_and(|id| id.starts_with("req_"))));

    // A form's key is the form's for one organization: the same key for
    // another organization is another adjustment.
    let mut other = app.other_browser();
    other.sign_up("Bob", "bob@example.com", PASSWORD).await;
    let bob = other.org_of("bob@example.com").await;
    let purchased = tollgate::billing::ledger::Account::Purchased;
    let done = tollgate::billing::ledger::adjust(&db, bob, None, purchased, 7, "same key, other org", &key, app.clock.now()).await.unwrap();
    assert!(!done.replayed);
    assert_eq!(meters(&db, bob).await, (100, 7));
    assert_eq!(meters(&db, org).await, (0, 500));

    // Not an admin: refused, nothing moved.
    let mut ada = app.other_browser();
    ada.sign_in("ada@example.com", PASSWORD).await;
    let csrf = extract_csrf(&ada.get("/account").await.body);
    let org_text = org.to_string();
    ada.post_form(
        "/api/adjust_credits",
        &[("csrf", &csrf), ("org_id", &org_text), ("account", "purchased"), ("direction", "add"), ("amount", "1000"), ("reason", "me"), ("idempotency_key", "0123456789abcdef0123")],
    )
    .await;
    assert_eq!(meters(&db, org).await, (0, 500));
    assert_eq!(ada.get(&format!("/admin/orgs/{org}")).await.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn the_audit_log_is_append_only(db: PgPool) {
    let (app, _key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    adjust(&mut ops, org, "purchased", "add", "5", "test", None).await;
    for sql in [
        "UPDATE audit_log SET action = 'x'",
        "UPDATE audit_log SET actor_user_id = NULL",
        "UPDATE audit_log SET org_id = NULL",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&db).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[sqlx::test]
async fn the_audit_log_filters_pages_by_keyset_and_exports_what_it_shows(db: PgPool) {
    let (app, _key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let start = app.clock.now();
    {
        let mut conn = db.acquire().await.unwrap();
        for i in 0..60 {
            let entry = tollgate::audit::Entry::new(None, Some(org), tollgate::audit::Action::ApiKeyUsedInExplorer, serde_json::json!({"n": i}));
            tollgate::audit::write(&mut conn, start + time::Duration::seconds(i), entry).await.unwrap();
        }
    }
    let first = ops.get(&format!("/admin/audit?org={org}&action=api_key.used_in_explorer")).await;
    assert_eq!(first.status, StatusCode::OK);
    let count = |html: &str| html.matches("data-action=\"api_key.used_in_explorer\"").count();
    assert_eq!(count(&first.body), 50);
    assert!(first.body.contains("{&quot;n&quot;:59}") || first.body.contains("{\"n\":59}"), "newest first");
    let next = decode_html(&first.body);
    let href = next.split("href=\"").find(|s| s.starts_with("/admin/audit?") && s.contains("after=")).unwrap();
    let href = &href[..href.find('"').unwrap()];
    let second = ops.get(href).await;
    assert_eq!(count(&second.body), 10, "the rest, none twice");
    assert!(!second.body.contains("data-testid=\"audit-next\""));

    // Another organization's id, upper case: only its entries (none).
    let upper = Uuid::now_v7().to_string().to_uppercase();
    let none = ops.get(&format!("/admin/audit?org={upper}")).await;
    assert!(none.body.contains("data-testid=\"audit-none\""));
    // A filter that cannot be read is explained and shows nothing.
    let bad = ops.get("/admin/audit?action=credits.stolen&from=yesterday").await;
    assert!(bad.body.contains("id=\"action-error\"") && bad.body.contains("id=\"from-error\""));
    assert_eq!(count(&bad.body), 0);

    let csv = ops.get(&format!("/admin/audit.csv?org={org}&action=api_key.used_in_explorer")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.header("content-type").as_deref(), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.body.lines().count(), 61, "a header and the 60 entries");
    assert!(csv.body.lines().skip(1).all(|l| l.contains("api_key.used_in_explorer")));
    // Not an admin: no export.
    let mut ada = app.other_browser();
    ada.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(ada.get("/admin/audit.csv").await.status, StatusCode::FORBIDDEN);
    assert_eq!(ada.get("/admin/audit").await.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn organizations_are_found_by_name_member_email_or_id_in_any_spelling(db: PgPool) {
    let (app, _key, org) = customer(&db).await;
    let mut other = app.other_browser();
    other.sign_up("Bob", "bob@elsewhere.test", PASSWORD).await;
    let mut ops = admin_of(&app).await;
    let found = |html: &str, who: &str| html.contains(&format!("data-org=\"{who}\""));
    let ada_org: String = sqlx::query_scalar("SELECT name FROM organizations WHERE id = $1").bind(org).fetch_one(&db).await.unwrap();
    for q in [
        ada_org[..3].to_lowercase(),
        "ADA@EXAMPLE".to_string(),
        org.to_string().to_uppercase(),
        org.simple().to_string(),
        format!("%20{org}%20"),
    ] {
        let page = ops.get(&format!("/admin/orgs?q={}", q.replace('%', "%25").replace('@', "%40"))).await;
        assert!(found(&page.body, &ada_org), "{q}");
        assert!(!found(&page.body, "Bob's organization") && !page.body.contains("bob@elsewhere"), "{q}");
    }
    // LIKE's own characters are literal.
    let page = ops.get("/admin/orgs?q=%25").await;
    assert!(page.body.contains("data-testid=\"orgs-none\""));
    assert_eq!(ops.get(&format!("/admin/orgs/{}", Uuid::now_v7())).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ops.get("/admin/orgs/not-an-id").await.status, StatusCode::NOT_FOUND);
    let page = ops.get(&format!("/admin/orgs/{}", org.to_string().to_uppercase())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("ada@example.com"), "members are listed");
}

/// The plan editor's form for `code`, with `changes` over what it shows.
async fn edit_plan(ops: &mut TestApp, code: &str, changes: &[(&str, &str)]) -> TestResponse {
    let list = ops.get("/admin/plans").await.body;
    let row = &list[list.find(&format!("data-plan=\"{code}\"")).unwrap()..];
    let id = {
        let at = row.find("/admin/plans?edit=").unwrap() + "/admin/plans?edit=".len();
        row[at..at + 36].to_string()
    };
    let page = ops.get(&format!("/admin/plans?edit={id}")).await.body;
    let csrf = extract_csrf(&page);
    let mut fields: Vec<(String, String)> = vec![("csrf".into(), csrf), ("plan_id".into(), id)];
    for name in ["name", "price", "currency", "included_credits", "rate_limit_per_sec", "trial_days"] {
        fields.push((name.into(), hidden_or_input(&page, name)));
    }
    for (i, e) in ["ping", "sentiment", "summarize", "*"].iter().enumerate() {
        if page.contains(&format!("name=\"endpoints[{i}]\" value=\"{e}\" checked")) {
            fields.push((format!("endpoints[{i}]"), e.to_string()));
        }
    }
    for flag in ["requires_approval", "visible", "signup"] {
        if page.contains(&format!("name=\"{flag}\" value=\"on\" checked")) {
            fields.push((flag.into(), "on".into()));
        }
    }
    for (k, v) in changes {
        fields.retain(|(f, _)| f != k);
        if !v.is_empty() {
            fields.push((k.to_string(), v.to_string()));
        }
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ops.post_form("/api/save_plan", &pairs).await
}

fn hidden_or_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" type=\"text\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    decode_html(&html[start..start + html[start..].find('"').unwrap()])
}

#[sqlx::test]
async fn a_plan_change_reaches_subscribers_at_their_next_period_and_they_are_told(db: PgPool) {
    let (mut app, _key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    wait_for(&db, org, "active").await;
    assert_eq!(meters(&db, org).await.0, 10_000);
    let mut ops = admin_of(&app).await;
    let org_page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    let history = &org_page[org_page.find("data-testid=\"subscription-history\"").unwrap()..];
    assert!(history[..history.find("</table>").unwrap()].contains("subscription.upgrade"), "the subscription's history");
    let res = edit_plan(&mut ops, "pro", &[("included_credits", "12000")]).await;
    assert_eq!(res.location(), "/admin/plans");
    let list = decode_html(&ops.get("/admin/plans").await.body);
    assert!(list.contains("1 subscriber from their next period; they were told by email"), "{list}");
    // This period is what was paid for.
    assert_eq!(meters(&db, org).await.0, 10_000);
    let (subject, body) = last_email(&db, "ada@example.com").await.unwrap();
    assert!(subject.contains("Pro plan changes"), "{subject}");
    assert!(body.contains("12,000 included credits") && body.contains("10,000 included credits"), "{body}");
    // The audit log has the plan before and after.
    let (before, after): (serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT before, after FROM audit_log WHERE action = 'plan.updated'").fetch_one(&db).await.unwrap();
    assert_eq!((before["included_credits"].as_i64(), after["included_credits"].as_i64()), (Some(10_000), Some(12_000)));

    // After the renewal the new amount is granted.
    let end: time::OffsetDateTime = sqlx::query_scalar("SELECT current_period_end FROM subscriptions WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    for _ in 0..100 {
        if meters(&db, org).await.0 == 12_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(meters(&db, org).await.0, 12_000);

    // A price change reaches the subscriber's next period, not the proration
    // of this one: an upgrade today credits the unused days at what was paid.
    let csrf = extract_csrf(&ops.get("/admin/plans").await.body);
    ops.post_form(
        "/api/save_plan",
        &[("csrf", &csrf), ("code", "team"), ("name", "Team"), ("price", "99"), ("currency", "USD"), ("included_credits", "50000"),
          ("rate_limit_per_sec", "100"), ("endpoints[3]", "*"), ("trial_days", "0"), ("visible", "on")],
    )
    .await;
    let preview = |html: &str| {
        let card = &html[html.find("data-plan=\"team\"").unwrap()..];
        hidden(card, "expected_minor")
    };
    let before = preview(&app.get("/billing/plans?plan=team").await.body);
    edit_plan(&mut ops, "pro", &[("price", "59")]).await;
    let after = preview(&app.get("/billing/plans?plan=team").await.body);
    assert_eq!(before, after, "the unused days are credited at the price paid");
    let (_, body) = last_email(&db, "ada@example.com").await.unwrap();
    assert!(body.contains("$59.00 a month"), "{body}");

    // Bad input is refused next to its field and nothing changes.
    let res = edit_plan(&mut ops, "pro", &[("price", "29,00"), ("rate_limit_per_sec", "0")]).await;
    let back = res.location().split('#').next().unwrap().to_string();
    assert!(back.starts_with("/admin/plans?edit="), "{back}");
    let page = ops.get(&back).await.body;
    assert!(page.contains("id=\"price-error\"") && page.contains("id=\"rate_limit_per_sec-error\""), "{page}");
    assert!(page.contains("value=\"29,00\""), "what was typed comes back");
    let price: i64 = sqlx::query_scalar("SELECT price_minor FROM plans WHERE code = 'pro'").fetch_one(&db).await.unwrap();
    assert_eq!(price, 5900);
}

#[sqlx::test]
async fn plan_roles_come_from_the_plans_sign_up_trial_and_archived(db: PgPool) {
    let (mut app, _key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    // A new free plan becomes the sign-up plan: the role moves to it.
    let csrf = extract_csrf(&ops.get("/admin/plans").await.body);
    let res = ops
        .post_form(
            "/api/save_plan",
            &[("csrf", &csrf), ("code", "starter"), ("name", "Starter"), ("price", "0"), ("currency", "USD"), ("included_credits", "50"),
              ("rate_limit_per_sec", "2"), ("endpoints[0]", "ping"), ("trial_days", "0"), ("visible", "on"), ("signup", "on")],
        )
        .await;
    assert_eq!(res.location(), "/admin/plans");
    let signup: Vec<String> = sqlx::query_scalar("SELECT code FROM plans WHERE signup").fetch_all(&db).await.unwrap();
    assert_eq!(signup, vec!["starter".to_string()]);
    let mut newcomer = app.other_browser();
    newcomer.sign_up("Nia", "nia@example.com", PASSWORD).await;
    let nia = newcomer.org_of("nia@example.com").await;
    let plan: String = sqlx::query_scalar("SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(nia)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(plan, "starter");
    assert_eq!(meters(&db, nia).await.0, 50);
    // The sign-up plan cannot be archived.
    let starter: String = sqlx::query_scalar("SELECT id::text FROM plans WHERE code = 'starter'").fetch_one(&db).await.unwrap();
    let csrf = extract_csrf(&ops.get("/admin/plans").await.body);
    ops.post_form("/api/set_plan_archived", &[("csrf", &csrf), ("plan_id", &starter), ("archive", "true")]).await;
    assert!(decode_html(&ops.get("/admin/plans").await.body).contains("cannot be archived"));

    // Pro archived: its subscriber keeps it, nobody new is offered it.
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    wait_for(&db, org, "active").await;
    let pro: String = sqlx::query_scalar("SELECT id::text FROM plans WHERE code = 'pro'").fetch_one(&db).await.unwrap();
    let csrf = extract_csrf(&ops.get("/admin/plans").await.body);
    ops.post_form("/api/set_plan_archived", &[("csrf", &csrf), ("plan_id", &pro), ("archive", "true")]).await;
    let offered = newcomer.get("/billing/plans").await.body;
    assert!(!offered.contains("data-plan=\"pro\""), "an archived plan is offered to nobody new");
    let end: time::OffsetDateTime = sqlx::query_scalar("SELECT current_period_end FROM subscriptions WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, status): (String, String) = sqlx::query_as("SELECT p.code, s.status FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((code.as_str(), status.as_str()), ("pro", "active"), "its subscriber renews on it");
    // The trial comes from the plan's trial days: none left, none offered.
    edit_plan(&mut ops, "pro", &[]).await;
    let trial_days: i32 = sqlx::query_scalar("SELECT trial_days FROM plans WHERE code = 'pro'").fetch_one(&db).await.unwrap();
    assert_eq!(trial_days, 14);
}

async fn refused(app: &mut TestApp, key: &str, path: &str) -> String {
    let res = app.call("POST", path, Some(key), Some(TEXT), &[]).await;
    assert_eq!(res.status, StatusCode::PAYMENT_REQUIRED, "{}", res.body);
    app.clock.advance(time::Duration::milliseconds(250));
    res.json()["request_id"].as_str().unwrap().to_string()
}

/// Follows a 402's fix link as a browser does: the page it names, with its `ref`.
async fn follow_fix(app: &mut TestApp, rid_source: &serde_json::Value) -> TestResponse {
    let href = rid_source["resolution"][0]["href"].as_str().unwrap();
    let path = href.strip_prefix("http://portal.test").unwrap();
    app.get(path).await
}

#[sqlx::test]
async fn the_recovery_funnel_counts_each_step_by_its_reference(db: PgPool) {
    // Ada: two refusals for credits; she opens the first one's fix link,
    // tops up 1,000 credits ($10.00) and calls again three minutes after the
    // first 402.
    let (mut ada, ada_key, ada_org) = customer(&db).await;
    let mut conn = db.acquire().await.unwrap();
    let drain = tollgate::billing::ledger::Posting {
        org: ada_org,
        kind: tollgate::billing::ledger::Kind::Adjustment,
        key: "drain",
        entries: &[(tollgate::billing::ledger::Account::Included, -100), (tollgate::billing::ledger::Account::Adjustments, 100)],
        memo: "test",
    };
    tollgate::billing::ledger::post(&mut conn, drain, ada.clock.now()).await.unwrap();
    drop(conn);
    add_card(&mut ada, GOOD).await;
    let t0 = ada.clock.now();
    let first = ada.call("POST", "/v1/text/sentiment", Some(&ada_key), Some(TEXT), &[]).await;
    assert_eq!(first.status, StatusCode::PAYMENT_REQUIRED);
    let first = first.json();
    ada.clock.advance(time::Duration::milliseconds(250));
    let second_id = refused(&mut ada, &ada_key, "/v1/text/sentiment").await;
    // A test key's simulated 402 is not a customer's money: not counted.
    let test_key = ada.create_key("test", "test", &["*"], "never").await;
    ada.call("POST", "/v1/text/sentiment", Some(&test_key), Some(TEXT), &[("Tollgate-Simulate", "insufficient_credits")]).await;
    ada.state.gateway.usage.flush().await;
    ada.clock.advance(time::Duration::seconds(60) - (ada.clock.now() - t0));
    assert_eq!(follow_fix(&mut ada, &first).await.status, StatusCode::OK);
    ada.clock.advance(time::Duration::seconds(60));
    top_up(&mut ada, 1000).await;
    for _ in 0..100 {
        if meters(&db, ada_org).await.1 == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(meters(&db, ada_org).await.1, 1000);
    ada.clock.advance(time::Duration::seconds(180) - (ada.clock.now() - t0));
    assert_eq!(ada.call("POST", "/v1/text/sentiment", Some(&ada_key), Some(TEXT), &[]).await.status, StatusCode::OK);

    // Bob: refused a Pro endpoint, never opens the fix.
    let mut bob = ada.other_browser();
    bob.sign_up("Bob", "bob@example.com", PASSWORD).await;
    let bob_key = bob.create_key("server", "live", &["*"], "never").await;
    refused(&mut bob, &bob_key, "/v1/text/summarize").await;

    // Cy: refused for credits, opens the fix page first with Ada's
    // reference (not Cy's refusal: not counted), then with Cy's own, and
    // never pays.
    let mut cy = ada.other_browser();
    cy.sign_up("Cy", "cy@example.com", PASSWORD).await;
    let cy_key = cy.create_key("server", "live", &["*"], "never").await;
    let cy_org = cy.org_of("cy@example.com").await;
    let mut conn = db.acquire().await.unwrap();
    let drain = tollgate::billing::ledger::Posting {
        org: cy_org,
        kind: tollgate::billing::ledger::Kind::Adjustment,
        key: "drain-cy",
        entries: &[(tollgate::billing::ledger::Account::Included, -100), (tollgate::billing::ledger::Account::Adjustments, 100)],
        memo: "test",
    };
    tollgate::billing::ledger::post(&mut conn, drain, cy.clock.now()).await.unwrap();
    drop(conn);
    let cy_refusal = cy.call("POST", "/v1/text/sentiment", Some(&cy_key), Some(TEXT), &[]).await.json();
    ada.state.gateway.usage.flush().await;
    cy.get(&format!("/billing/top-up?credits=1000&ref={second_id}")).await;
    cy.get(&format!("/billing/top-up?credits=1000&ref={}", first["request_id"].as_str().unwrap())).await;
    follow_fix(&mut cy, &cy_refusal).await;
    // Cy's visits with Ada's references are Cy's own records: they count
    // for nobody (below), and Ada's own visit stands.
    let ada_visits: i64 = sqlx::query_scalar("SELECT count(*) FROM fix_visits WHERE org_id = $1").bind(ada_org).fetch_one(&db).await.unwrap();
    assert_eq!(ada_visits, 1);

    let from = t0 - time::Duration::days(1);
    let r = tollgate::admin::recovery::load(&db, from, cy.clock.now() + time::Duration::days(1), None).await.unwrap();
    let only_cy = tollgate::admin::recovery::load(&db, from, cy.clock.now() + time::Duration::days(1), Some(cy_org)).await.unwrap();
    assert_eq!(only_cy.funnels.iter().map(|f| (f.code.as_str(), f.refused, f.visited)).collect::<Vec<_>>(), vec![("insufficient_credits", 1, 1)]);
    let credits = r.funnels.iter().find(|f| f.code == "insufficient_credits").unwrap();
    assert_eq!(
        (credits.refused, credits.visited, credits.fixed, credits.recovered, credits.episodes),
        (3, 2, 1, 1, 1),
        "{credits:?}"
    );
    assert_eq!((credits.median_secs, credits.p90_secs), (Some(180), Some(180)));
    assert_eq!(credits.revenue, vec![("USD".to_string(), 1000)]);
    let upgrade = r.funnels.iter().find(|f| f.code == "plan_upgrade_required").unwrap();
    assert_eq!((upgrade.refused, upgrade.visited, upgrade.fixed, upgrade.recovered), (1, 0, 0, 0));
    assert_eq!(upgrade.median_secs, None);
    let lost: Vec<(&str, &str, i64, bool)> = r.unrecovered.iter().map(|u| (u.name.as_str(), u.code.as_str(), u.refused, u.visited)).collect();
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert!(lost.iter().any(|l| l.1 == "plan_upgrade_required" && l.2 == 1 && !l.3), "{lost:?}");
    assert!(lost.iter().any(|l| l.1 == "insufficient_credits" && l.2 == 1 && l.3), "{lost:?}");

    // The page shows the same numbers.
    let mut ops = admin_of(&ada).await;
    let day = |t: time::OffsetDateTime| t.date().to_string();
    let page = ops.get(&format!("/admin/recovery?from={}&to={}", day(from), day(cy.clock.now()))).await;
    assert_eq!(page.status, StatusCode::OK);
    let row = &page.body[page.body.find("data-code=\"insufficient_credits\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    for (step, want) in [("refused", "3"), ("visited", "2"), ("fixed", "1"), ("recovered", "1"), ("median", "3 min"), ("revenue", "$10.00")] {
        assert!(row.contains(&format!("data-step=\"{step}\" class=\"num\">{want}<")), "{step}: {row}");
    }
    assert!(page.body.contains(&format!("/admin/orgs/{cy_org}")), "the unrecovered are linked");
    assert_eq!(ada.get("/admin/recovery").await.status, StatusCode::FORBIDDEN);
}

/// Saves the limits page with this spend cap.
async fn limits(app: &mut TestApp, cap: &str) {
    let csrf = extract_csrf(&app.get("/billing/limits").await.body);
    app.post_form("/api/save_limits", &[("csrf", &csrf), ("spend_cap", cap), ("low_balance_at", "10")]).await;
}

#[sqlx::test]
async fn a_spend_cap_402_is_fixed_by_raising_the_cap_not_by_lowering_it(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    limits(&mut app, "1").await;
    assert_eq!(app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await.status, StatusCode::OK);
    app.clock.advance(time::Duration::milliseconds(250));
    let refused = app.call("POST", "/v1/text/sentiment", Some(&key), Some(TEXT), &[]).await.json();
    assert_eq!(refused["code"], "spend_cap_reached");
    app.state.gateway.usage.flush().await;
    app.clock.advance(time::Duration::seconds(30));
    let href = refused["resolution"][0]["href"].as_str().unwrap().strip_prefix("http://portal.test").unwrap().to_string();
    app.get(&href).await;
    let funnel = |db: PgPool, now: time::OffsetDateTime| async move {
        let r = tollgate::admin::recovery::load(&db, now - time::Duration::days(1), now + time::Duration::days(1), Some(org)).await.unwrap();
        let f = r.funnels.into_iter().find(|f| f.code == "spend_cap_reached").unwrap();
        (f.refused, f.visited, f.fixed)
    };
    // The same cap saved again (or a lower one) fixes nothing.
    limits(&mut app, "1").await;
    assert_eq!(funnel(db.clone(), app.clock.now()).await, (1, 1, 0));
    limits(&mut app, "500").await;
    assert_eq!(funnel(db.clone(), app.clock.now()).await, (1, 1, 1));
    let (before, after): (serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT before, after FROM audit_log WHERE action = 'billing.limits_changed' ORDER BY id DESC LIMIT 1").fetch_one(&db).await.unwrap();
    assert_eq!((before["spend_cap"].as_i64(), after["spend_cap"].as_i64()), (Some(1), Some(500)));
}
