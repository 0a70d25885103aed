//! Billing self-service through the pages a customer uses, with the sandbox
//! processor delivering its outcomes as signed webhooks over real HTTP.

use crate::gateway::customer;
use crate::helpers::*;
use crate::routes::admin_of;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sqlx::PgPool;
use std::time::Duration;
use tollgate::billing::webhooks::sign;
use tower::ServiceExt;
use uuid::Uuid;

pub(crate) const GOOD: &str = "4242 4242 4242 4242";
const NO_FUNDS: &str = "4000000000009995";
const ALWAYS_FAILS: &str = "4000000000000341";

pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    let end = html[start..].find('"').unwrap();
    decode_html(&html[start..start + end])
}

pub(crate) async fn add_card(app: &mut TestApp, number: &str) -> TestResponse {
    let csrf = extract_csrf(&app.get("/billing/payment-methods").await.body);
    app.post_form(
        "/api/add_card",
        &[
            ("csrf", &csrf),
            ("number", number),
            ("exp_month", "12"),
            ("exp_year", "2030"),
            ("cvc", "123"),
            ("name", "Ada Lovelace"),
            ("make_default", "on"),
        ],
    )
    .await
}

/// The flash a page shows after a post: its banner text.
async fn banner(app: &mut TestApp, path: &str) -> String {
    let page = app.get(path).await;
    let start = page.body.find("class=\"banner").map(|i| &page.body[i..]).unwrap_or("");
    decode_html(&start[..start.find("</p>").unwrap_or(0)])
}

async fn count(db: &PgPool, sql: &str, org: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(org).fetch_one(db).await.unwrap()
}

async fn purchased(db: &PgPool, org: Uuid) -> i64 {
    count(db, "SELECT purchased FROM org_meters WHERE org_id = $1", org).await
}

pub(crate) async fn status(db: &PgPool, org: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM subscriptions WHERE org_id = $1").bind(org).fetch_one(db).await.unwrap()
}

/// The top-up form as the page renders it for `credits`, posted once.
pub(crate) async fn top_up(app: &mut TestApp, credits: i64) -> TestResponse {
    let page = app.get(&format!("/billing/top-up?credits={credits}")).await;
    let csrf = extract_csrf(&page.body);
    let key = hidden(&page.body, "idempotency_key");
    app.post_form(
        "/api/top_up",
        &[("csrf", &csrf), ("choice", &credits.to_string()), ("idempotency_key", &key)],
    )
    .await
}

#[sqlx::test]
async fn a_top_up_adds_credits_once_however_often_the_form_is_sent(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    let res = add_card(&mut app, GOOD).await;
    assert_eq!(res.location(), "/billing/payment-methods");
    assert!(banner(&mut app, "/billing/payment-methods").await.contains("Card added"));
    let before = purchased(&db, org).await;

    // A double click: the same form twice at once.
    let page = app.get("/billing/top-up?credits=4200").await;
    assert!(page.body.contains("id=\"pack-5000\" name=\"choice\" value=\"5000\" checked"), "the smallest covering pack is selected");
    let csrf = extract_csrf(&page.body);
    let key = hidden(&page.body, "idempotency_key");
    let body = serde_urlencoded::to_string([("csrf", csrf.as_str()), ("choice", "5000"), ("idempotency_key", key.as_str())]).unwrap();
    let cookies = app.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let post = || {
        Request::post("/api/top_up")
            .header(header::ACCEPT, "text/html")
            .header(header::REFERER, "http://portal.test/billing/top-up")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, "http://portal.test")
            .header(header::COOKIE, cookies.clone())
            .header("x-forwarded-for", "203.0.113.7")
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (a, b) = tokio::join!(app.router.clone().oneshot(post()), app.router.clone().oneshot(post()));
    for res in [a.unwrap(), b.unwrap()] {
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        assert_eq!(status, StatusCode::FOUND, "{}", String::from_utf8_lossy(&body));
    }
    // And once more later, as a resubmitted form.
    app.post_form("/api/top_up", &[("csrf", &csrf), ("choice", "5000"), ("idempotency_key", &key)]).await;

    assert_eq!(purchased(&db, org).await, before + 5000);
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1", org).await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM charges WHERE org_id = $1", org).await, 1);
    let charged: i64 = sqlx::query_scalar("SELECT count(*) FROM sandbox_charges").fetch_one(&db).await.unwrap();
    assert_eq!(charged, 1, "the processor was asked once");
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND kind = 'purchase'", org).await,
        1
    );
    let invoices = app.get("/billing/invoices").await.body;
    assert!(invoices.contains("data-status=\"paid\""), "{invoices}");
    assert!(invoices.contains("$45.00"));
    // Its receipt went out.
    let (subject, _) = last_email(&db, "ada@example.com").await.unwrap();
    assert!(subject.starts_with("Receipt for invoice TG-"), "{subject}");
}

/// After a paid top-up, the page used to answer with the same Pay button
/// in the same place and a fresh form key, so the second click of an
/// impatient double click bought again. The answer is now a confirmation;
/// buying again is a deliberate step.
#[sqlx::test]
async fn the_answer_to_a_paid_top_up_is_a_confirmation_not_another_pay_button(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    let res = top_up(&mut app, 1000).await;
    let answer = app.get(res.location()).await.body;
    let text = decode_html(&answer);
    assert!(text.contains("Paid: 1,000 credits were added"), "{text}");
    assert!(answer.contains("data-testid=\"top-up-done\""));
    assert!(!answer.contains("action=\"/api/top_up\""), "no purchase form in the answer");
    assert!(!answer.contains("data-testid=\"pay\""), "no Pay button where the first click was");
    assert!(!answer.contains("name=\"idempotency_key\""), "no fresh form key to buy with");
    // Buying more is a link to the form, which then works as before.
    assert!(answer.contains("data-testid=\"buy-more\""));
    let again = app.get("/billing/top-up").await.body;
    assert!(again.contains("action=\"/api/top_up\""), "the form is one deliberate step away");
    assert_eq!(count(&db, "SELECT count(*) FROM charges WHERE org_id = $1", org).await, 1);
}

#[sqlx::test]
async fn a_declined_card_adds_nothing_and_keeps_the_failed_charge_with_its_decline_code(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, NO_FUNDS).await;
    let before = purchased(&db, org).await;
    let ledger_before = count(&db, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1", org).await;

    let res = top_up(&mut app, 1000).await;
    assert!(res.location().starts_with("/billing/top-up?credits=1000"), "{}", res.location());
    let said = banner(&mut app, res.location()).await;
    assert!(said.contains("Your card has insufficient funds."), "{said}");

    assert_eq!(purchased(&db, org).await, before);
    assert_eq!(count(&db, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1", org).await, ledger_before);
    let (status, code, decline): (String, String, String) =
        sqlx::query_as("SELECT status, failure_code, decline_code FROM charges WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), code.as_str(), decline.as_str()), ("failed", "card_declined", "insufficient_funds"));
    let history = app.get("/billing/invoices").await.body;
    assert!(history.contains("data-status=\"failed\""));
    assert!(history.contains("insufficient_funds"), "the history names the decline code");
}

/// Posts an event to the webhook endpoint over HTTP, signed as given.
async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(webhook_url(app))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = signature {
        req = req.header("tollgate-signature", s);
    }
    req.send().await.unwrap()
}

fn webhook_url(app: &TestApp) -> String {
    app.state.sandbox_target().expect("the test app listens").to_string()
}

#[sqlx::test]
async fn forged_replayed_and_duplicated_webhooks_change_nothing(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    top_up(&mut app, 1000).await;
    let after_one = purchased(&db, org).await;
    let (payload,): (serde_json::Value,) = sqlx::query_as("SELECT payload FROM sandbox_events ORDER BY created_at LIMIT 1")
        .fetch_one(&db)
        .await
        .unwrap();
    let body = payload.to_string();
    let secret = "whsec_tests";
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    // The same event again, freshly signed: a duplicate.
    let res = deliver(&app, &body, Some(sign(secret, now, body.as_bytes()))).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("duplicate"));

    // A new event id claiming success for the same charge: already settled.
    let mut again = payload.clone();
    again["id"] = "evt_another".into();
    let again = again.to_string();
    let res = deliver(&app, &again, Some(sign(secret, now, again.as_bytes()))).await;
    assert_eq!(res.status(), 200);

    // A charge that failed, "succeeding" by a forged or replayed event.
    add_card(&mut app, NO_FUNDS).await;
    top_up(&mut app, 5000).await;
    let key: String = sqlx::query_scalar("SELECT idempotency_key FROM charges WHERE org_id = $1 AND status = 'failed'")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    let forged = serde_json::json!({
        "id": "evt_forged", "type": "charge.succeeded", "created": now,
        "data": {"object": {"id": "ch_x", "idempotency_key": key, "amount": 4500, "currency": "USD",
                            "failure_code": null, "decline_code": null}},
    })
    .to_string();
    for (signature, why) in [
        (None, "unsigned"),
        (Some(sign("not the secret", now, forged.as_bytes())), "wrong secret"),
        (Some(sign(secret, now - 301, forged.as_bytes())), "older than 300 s"),
        (Some(sign(secret, now, b"another body")), "another body"),
    ] {
        let res = deliver(&app, &forged, signature).await;
        assert_eq!(res.status(), 400, "{why}");
    }
    assert_eq!(purchased(&db, org).await, after_one);
    assert_eq!(count(&db, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND kind = 'purchase'", org).await, 1);
    let failed: String = sqlx::query_scalar("SELECT status FROM invoices WHERE org_id = $1 AND total_minor = 4500")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(failed, "failed");
    // An event about a charge we never made is refused for a later retry.
    let unknown = forged.replace(&key, "charge:nope:1").replace("evt_forged", "evt_unknown");
    let res = deliver(&app, &unknown, Some(sign(secret, now, unknown.as_bytes()))).await;
    assert_eq!(res.status(), 409);
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE event_id = 'evt_unknown'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(seen, 0, "an event not applied is not marked as seen");
}

/// Upgrades to `plan` from the plans page, paying the amount it previews.
pub(crate) async fn upgrade(app: &mut TestApp, plan: &str) -> (TestResponse, i64) {
    let page = app.get(&format!("/billing/plans?plan={plan}")).await;
    let csrf = extract_csrf(&page.body);
    let key = hidden(&page.body, "idempotency_key");
    let start = page.body.find(&format!("data-plan=\"{plan}\"")).unwrap();
    let card = &page.body[start..];
    let expected = hidden(card, "expected_minor");
    let res = app
        .post_form(
            "/api/choose_plan",
            &[("csrf", &csrf), ("plan", plan), ("expected_minor", &expected), ("idempotency_key", &key)],
        )
        .await;
    (res, expected.parse().unwrap_or(0))
}

#[sqlx::test]
async fn an_upgrade_charges_exactly_the_previewed_proration(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    app.clock.advance(time::Duration::days(10));
    let page = app.get("/billing/plans?plan=pro").await.body;
    assert!(page.contains("data-testid=\"preview-pro\""), "the upgrade is previewed before paying");
    let (res, previewed) = upgrade(&mut app, "pro").await;
    assert!(res.location().starts_with("/billing/plans"));
    assert!(previewed > 0 && previewed < 2900, "prorated: {previewed}");
    let (total, lines): (i64, i64) = sqlx::query_as(
        "SELECT i.total_minor, (SELECT sum(amount_minor) FROM invoice_lines WHERE invoice_id = i.id)::bigint
           FROM invoices i WHERE i.org_id = $1 AND i.purpose = 'proration'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(total, previewed);
    assert_eq!(lines, total, "the lines sum to the total");
    let plan: String = sqlx::query_scalar("SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(plan, "pro");
    // Summarize is Pro's: it answers now.
    let res = app.call("POST", "/v1/text/summarize", Some(&key), Some(r#"{"text":"one two three"}"#), &[]).await;
    assert_eq!(res.status, 200, "{}", res.body);

    // A stale amount (the page was open across a price change) charges nothing.
    let before = count(&db, "SELECT count(*) FROM charges WHERE org_id = $1", org).await;
    let page = app.get("/billing/plans?plan=enterprise").await.body;
    let csrf = extract_csrf(&page);
    let res = app
        .post_form("/api/choose_plan", &[("csrf", &csrf), ("plan", "pro"), ("expected_minor", "1"), ("idempotency_key", "0123456789abcdef0123")])
        .await;
    let _ = res;
    assert_eq!(count(&db, "SELECT count(*) FROM charges WHERE org_id = $1", org).await, before);
}

#[sqlx::test]
async fn a_renewal_is_charged_once_per_period_however_many_jobs_run(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    let end: time::OffsetDateTime = sqlx::query_scalar("SELECT current_period_end FROM subscriptions WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    let now = app.clock.now();
    let other = app.restarted();
    let (a, b) = tokio::join!(
        tollgate::billing::renewals::renew_due(&app.state.billing, now),
        tollgate::billing::renewals::renew_due(&other.state.billing, now)
    );
    a.unwrap();
    b.unwrap();
    tollgate::billing::renewals::renew_due(&app.state.billing, now).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND purpose = 'renewal'", org).await, 1);
    let charges: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sandbox_charges s JOIN charges c ON c.idempotency_key = s.idempotency_key
           JOIN invoices i ON i.id = c.invoice_id WHERE i.purpose = 'renewal'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(charges, 1, "the processor was asked once for the period");
    // Paid: active, the new period's included credits granted once.
    wait_for(&db, org, "active").await;
    let included = count(&db, "SELECT included FROM org_meters WHERE org_id = $1", org).await;
    assert_eq!(included, 10_000);
    let start: time::OffsetDateTime = sqlx::query_scalar("SELECT current_period_start FROM subscriptions WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(start, end, "the next period starts where the last ended");
}

/// Moves the clock a minute past the subscription's period end and runs
/// the renewals that are due.
pub(crate) async fn renew_past_period_end(app: &mut TestApp, org: Uuid) {
    let end: time::OffsetDateTime = sqlx::query_scalar("SELECT current_period_end FROM subscriptions WHERE org_id = $1")
        .bind(org)
        .fetch_one(&app.db)
        .await
        .unwrap();
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
}

pub(crate) async fn wait_for(db: &PgPool, org: Uuid, want: &str) {
    for _ in 0..100 {
        if status(db, org).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the subscription never became {want}: {}", status(db, org).await);
}

#[sqlx::test]
async fn a_failed_renewal_has_a_grace_period_then_402_and_a_new_card_restores_access_at_once(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    add_card(&mut app, ALWAYS_FAILS).await;
    renew_past_period_end(&mut app, org).await;
    wait_for(&db, org, "past_due").await;

    // In grace: calls work, with a warning; the portal shows a banner.
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, 200);
    assert!(res.header("tollgate-warning").is_some_and(|w| w.contains("subscription_past_due; until=")), "{:?}", res.headers);
    let overview = app.get("/billing").await.body;
    assert!(overview.contains("data-banner=\"past_due\""));

    // After the grace period: 402 with the processor's words, and a fix link.
    app.clock.advance(time::Duration::days(3) + time::Duration::minutes(1));
    tollgate::billing::renewals::dunning_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "unpaid");
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, 402);
    let body = res.json();
    assert_eq!(body["code"], "subscription_past_due");
    assert_eq!(body["payment_error"]["code"], "card_declined");
    assert_eq!(body["payment_error"]["decline_code"], "generic_decline");
    assert!(body["resolution"][0]["href"].as_str().unwrap().contains("/billing/payment-methods"));

    // A good card: the owed invoice is paid before the page answers.
    let res = add_card(&mut app, GOOD).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(banner(&mut app, "/billing/payment-methods").await.contains("access is restored"));
    assert_eq!(status(&db, org).await, "active");
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, 200);
}

#[sqlx::test]
async fn card_fields_are_checked_and_what_was_typed_comes_back_but_never_the_number_or_cvc(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    let csrf = extract_csrf(&app.get("/billing/payment-methods").await.body);
    let res = app
        .post_form(
            "/api/add_card",
            &[("csrf", &csrf), ("number", "4242 4242 4242 4241"), ("exp_month", "13"), ("exp_year", "2020"), ("cvc", "98"), ("name", "Ada Typed")],
        )
        .await;
    assert_eq!(res.location(), "/billing/payment-methods");
    let page = decode_html(&app.get("/billing/payment-methods").await.body);
    for message in ["not valid; check it for a typo", "expiry month, 1 to 12", "security code (CVC) is 3 digits"] {
        assert!(page.contains(message), "{message}");
    }
    assert!(page.contains("value=\"Ada Typed\""), "the name typed is kept");
    assert!(!page.contains("4242 4242 4242 4241"), "a card number is never kept, even mistyped");
    assert!(!page.contains("value=\"98\""), "the CVC never comes back");
    // A valid number with a bad expiry: the number is not kept at rest.
    let csrf = extract_csrf(&page);
    app.post_form("/api/add_card", &[("csrf", &csrf), ("number", GOOD), ("exp_month", "1"), ("exp_year", "2020"), ("cvc", "123"), ("name", "Ada")]).await;
    let sessions: Vec<String> = sqlx::query_scalar("SELECT data::text FROM sessions").fetch_all(&db).await.unwrap();
    assert!(sessions.iter().all(|s| !s.contains("4242 4242 4242 4242")));
    // A number that is not a test card.
    let csrf = extract_csrf(&app.get("/billing/payment-methods").await.body);
    app.post_form("/api/add_card", &[("csrf", &csrf), ("number", "4111 1111 1111 1111"), ("exp_month", "1"), ("exp_year", "2030"), ("cvc", "123"), ("name", "Ada")]).await;
    assert!(decode_html(&app.get("/billing/payment-methods").await.body).contains("test cards only"));
    assert_eq!(count(&db, "SELECT count(*) FROM payment_methods WHERE org_id = $1", org).await, 0);
    // Only brand, last 4 and expiry are stored.
    add_card(&mut app, GOOD).await;
    let stored: String = sqlx::query_scalar("SELECT row_to_json(p)::text FROM payment_methods p WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(!stored.contains("424242424242") && !stored.contains("Ada"), "{stored}");
}

#[sqlx::test]
async fn another_organizations_invoices_and_cards_are_out_of_reach(db: PgPool) {
    let (mut ada, _, ada_org) = customer(&db).await;
    add_card(&mut ada, GOOD).await;
    top_up(&mut ada, 1000).await;
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE org_id = $1").bind(ada_org).fetch_one(&db).await.unwrap();
    let card: Uuid = sqlx::query_scalar("SELECT id FROM payment_methods WHERE org_id = $1").bind(ada_org).fetch_one(&db).await.unwrap();

    let mut eve = ada.other_browser();
    eve.sign_up("Eve", "eve@example.com", PASSWORD).await;
    for path in [format!("/billing/invoices/{invoice}"), format!("/billing/invoices/{}", invoice.to_string().to_uppercase())] {
        let res = eve.get(&path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!res.body.contains("TG-"), "{path} shows another organization's invoice");
    }
    let csrf = extract_csrf(&eve.get("/billing/payment-methods").await.body);
    for id in [card.to_string(), format!(" {card} "), card.to_string().to_uppercase()] {
        eve.post_form("/api/remove_card", &[("csrf", &csrf), ("card_id", &id)]).await;
        eve.post_form("/api/set_default_card", &[("csrf", &csrf), ("card_id", &id)]).await;
    }
    let (removed, default): (Option<time::OffsetDateTime>, bool) =
        sqlx::query_as("SELECT removed_at, is_default FROM payment_methods WHERE id = $1").bind(card).fetch_one(&db).await.unwrap();
    assert!(removed.is_none() && default, "Ada's card is untouched");
}

#[sqlx::test]
async fn a_plan_that_needs_approval_waits_then_works_once_an_admin_approves(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    let page = app.get("/billing/plans?plan=enterprise").await.body;
    let csrf = extract_csrf(&page);
    let k = hidden(&page, "idempotency_key");
    app.post_form("/api/choose_plan", &[("csrf", &csrf), ("plan", "enterprise"), ("idempotency_key", &k)]).await;
    assert_eq!(status(&db, org).await, "pending_approval");
    // The Free plan keeps serving its endpoints; Enterprise's wait.
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
    let res = app.call("POST", "/v1/text/summarize", Some(&key), Some(r#"{"text":"a b"}"#), &[]).await;
    assert_eq!(res.status, 402);
    assert_eq!(res.json()["code"], "subscription_pending_approval");
    assert!(app.get("/billing").await.body.contains("data-banner=\"pending_approval\""));

    let mut ops = admin_of(&app).await;
    let queue = ops.get("/admin/approvals").await.body;
    assert!(queue.contains("Enterprise"));
    let csrf = extract_csrf(&queue);
    let request = hidden(&queue, "request");
    ops.post_form("/api/decide_approval", &[("csrf", &csrf), ("org_id", &org.to_string()), ("request", &request), ("decision", "approve"), ("note", "Welcome")]).await;
    assert_eq!(status(&db, org).await, "active");
    let (subject, _) = last_email(&db, "ada@example.com").await.unwrap();
    assert!(subject.contains("approved") || subject.starts_with("Receipt"), "{subject}");
    let res = app.call("POST", "/v1/text/summarize", Some(&key), Some(r#"{"text":"a b"}"#), &[]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let paid = count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND status = 'paid' AND total_minor = 49900", org).await;
    assert_eq!(paid, 1, "approval charged the plan");
}

#[sqlx::test]
async fn a_canceled_plan_expires_at_period_end_and_can_be_renewed(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    let csrf = extract_csrf(&app.get("/billing/plans").await.body);
    app.post_form("/api/cancel_subscription", &[("csrf", &csrf)]).await;
    assert_eq!(status(&db, org).await, "canceled");
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200, "works until the period ends");
    app.clock.advance(time::Duration::days(31));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "expired");
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, 402);
    assert_eq!(res.json()["code"], "subscription_expired");
    let page = app.get("/billing/plans?renew=1").await.body;
    assert!(page.contains("Renew your subscription"));
    let csrf = extract_csrf(&page);
    let k = hidden(&page, "idempotency_key");
    let start = page.find("data-plan=\"pro\"").unwrap();
    let expected = hidden(&page[start..], "expected_minor");
    app.post_form("/api/choose_plan", &[("csrf", &csrf), ("plan", "pro"), ("expected_minor", &expected), ("idempotency_key", &k)]).await;
    assert_eq!(status(&db, org).await, "active");
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
}

#[sqlx::test]
async fn auto_top_up_fires_once_per_crossing_even_from_two_instances(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    let csrf = extract_csrf(&app.get("/billing/limits").await.body);
    app.post_form(
        "/api/save_limits",
        &[("csrf", &csrf), ("spend_cap", ""), ("low_balance_at", "10"), ("auto_enabled", "on"), ("auto_threshold", "500"), ("auto_pack", "1000"), ("auto_max", "3")],
    )
    .await;
    assert!(banner(&mut app, "/billing/limits").await.contains("Limits saved"));
    // The balance (100 included) is below 500: two instances race.
    let other = app.restarted();
    let now = app.clock.now();
    let (a, b) = tokio::join!(
        tollgate::billing::topups::auto_top_up_due(&app.state.billing, now),
        tollgate::billing::topups::auto_top_up_due(&other.state.billing, now)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    for _ in 0..100 {
        if purchased(&db, org).await == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(purchased(&db, org).await, 1000);
    // Back above the threshold: armed again, but nothing to do.
    assert_eq!(tollgate::billing::topups::auto_top_up_due(&app.state.billing, now).await.unwrap(), 0);
    // Bad input keeps what was typed, with the message next to the field.
    let csrf = extract_csrf(&app.get("/billing/limits").await.body);
    app.post_form("/api/save_limits", &[("csrf", &csrf), ("spend_cap", "lots"), ("low_balance_at", "10")]).await;
    let page = decode_html(&app.get("/billing/limits").await.body);
    assert!(page.contains("value=\"lots\"") && page.contains("The spend cap is a whole number"), "{page}");
}

#[sqlx::test]
async fn a_spend_cap_from_the_limits_page_stops_calls_with_402(db: PgPool) {
    let (mut app, key, _) = customer(&db).await;
    let csrf = extract_csrf(&app.get("/billing/limits").await.body);
    app.post_form("/api/save_limits", &[("csrf", &csrf), ("spend_cap", "1"), ("low_balance_at", "10")]).await;
    let body = Some(r#"{"text":"good"}"#);
    assert_eq!(app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await.status, 200);
    let res = app.call("POST", "/v1/text/sentiment", Some(&key), body, &[]).await;
    assert_eq!(res.status, 402);
    assert_eq!(res.json()["code"], "spend_cap_reached");
    assert!(res.json()["resolution"][0]["href"].as_str().unwrap().contains("/billing/limits"));
}

/// Posts the plans page's form for `plan` as the page renders it.
async fn choose(app: &mut TestApp, plan: &str, query: &str) -> TestResponse {
    let page = app.get(&format!("/billing/plans?plan={plan}{query}")).await.body;
    let csrf = extract_csrf(&page);
    // A page that offers no change (past due, say) has no form key.
    let k = if page.contains("name=\"idempotency_key\"") { hidden(&page, "idempotency_key") } else { "0123456789abcdef0123".to_string() };
    let expected = page
        .find(&format!("data-plan=\"{plan}\""))
        .and_then(|i| page[i..].contains("name=\"expected_minor\"").then(|| hidden(&page[i..], "expected_minor")))
        .unwrap_or_default();
    app.post_form("/api/choose_plan", &[("csrf", &csrf), ("plan", plan), ("expected_minor", &expected), ("idempotency_key", &k)])
        .await
}

async fn cancel(app: &mut TestApp) -> TestResponse {
    let csrf = extract_csrf(&app.get("/billing/plans").await.body);
    app.post_form("/api/cancel_subscription", &[("csrf", &csrf)]).await
}

async fn period_end(db: &PgPool, org: Uuid) -> time::OffsetDateTime {
    sqlx::query_scalar("SELECT current_period_end FROM subscriptions WHERE org_id = $1").bind(org).fetch_one(db).await.unwrap()
}

#[sqlx::test]
async fn a_past_due_subscription_cannot_cancel_and_keep_its_way_out_of_dunning(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    add_card(&mut app, ALWAYS_FAILS).await;
    app.clock.advance(period_end(&db, org).await - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    wait_for(&db, org, "past_due").await;

    cancel(&mut app).await;
    assert_eq!(status(&db, org).await, "past_due", "a failed renewal is paid first, not canceled away");
    choose(&mut app, "pro", "").await;
    choose(&mut app, "free", "").await;
    assert_eq!(status(&db, org).await, "past_due");
    app.clock.advance(time::Duration::days(4));
    tollgate::billing::renewals::dunning_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "unpaid");
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 402);
}

#[sqlx::test]
async fn a_canceled_trial_kept_again_is_still_a_trial(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    verify_email(&mut app, "ada@example.com").await;
    let csrf = extract_csrf(&app.get("/billing/plans").await.body);
    app.post_form("/api/start_trial", &[("csrf", &csrf), ("plan", "pro")]).await;
    assert_eq!(status(&db, org).await, "trialing");
    cancel(&mut app).await;
    assert_eq!(status(&db, org).await, "canceled");
    choose(&mut app, "pro", "").await;
    assert_eq!(status(&db, org).await, "trialing", "keeping the plan does not turn a trial into a paid period");
    // Nor is a trial's plan credited as paid when a plan needing approval
    // replaces it.
    add_card(&mut app, GOOD).await;
    choose(&mut app, "enterprise", "").await;
    assert_eq!(status(&db, org).await, "pending_approval");
    let mut ops = admin_of(&app).await;
    let queue = ops.get("/admin/approvals").await.body;
    let (csrf, request) = (extract_csrf(&queue), hidden(&queue, "request"));
    ops.post_form("/api/decide_approval", &[("csrf", &csrf), ("org_id", &org.to_string()), ("request", &request), ("decision", "approve"), ("note", "")]).await;
    let unused = count(
        &db,
        "SELECT count(*) FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.org_id = $1 AND l.description LIKE 'Unused%'",
        org,
    )
    .await;
    assert_eq!(unused, 0, "a trial's days were not paid for");
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND total_minor = 49900", org).await, 1);
    // The approval's period was granted once.
    let grants = count(&db, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND kind = 'grant' AND idempotency_key LIKE '%enterprise'", org).await;
    assert_eq!(grants, 1);
}

#[sqlx::test]
async fn a_plan_needing_approval_cannot_be_bought_by_renewing_after_expiry(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    cancel(&mut app).await;
    app.clock.advance(time::Duration::days(32));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "expired");
    let page = app.get("/billing/plans?renew=1").await.body;
    let csrf = extract_csrf(&page);
    let k = hidden(&page, "idempotency_key");
    app.post_form("/api/choose_plan", &[("csrf", &csrf), ("plan", "enterprise"), ("expected_minor", "49900"), ("idempotency_key", &k)])
        .await;
    let plan: String = sqlx::query_scalar("SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_ne!((plan.as_str(), status(&db, org).await.as_str()), ("enterprise", "active"), "Enterprise is never active without approval");
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND total_minor = 49900", org).await, 0);
}

#[sqlx::test]
async fn two_tabs_upgrading_at_once_charge_once(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    app.clock.advance(time::Duration::days(3));
    // Two tabs, each with its own form key, sent at the same moment.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let page = app.get("/billing/plans?plan=pro").await.body;
        let csrf = extract_csrf(&page);
        let key = hidden(&page, "idempotency_key");
        let start = page.find("data-plan=\"pro\"").unwrap();
        let expected = hidden(&page[start..], "expected_minor");
        bodies.push(
            serde_urlencoded::to_string([("csrf", csrf.as_str()), ("plan", "pro"), ("expected_minor", &expected), ("idempotency_key", &key)])
                .unwrap(),
        );
    }
    assert_ne!(bodies[0], bodies[1]);
    let cookies = app.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let post = |body: String| {
        Request::post("/api/choose_plan")
            .header(header::ACCEPT, "text/html")
            .header(header::REFERER, "http://portal.test/billing/plans")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, "http://portal.test")
            .header(header::COOKIE, cookies.clone())
            .header("x-forwarded-for", "203.0.113.7")
            .body(Body::from(body))
            .unwrap()
    };
    let (a, b) = tokio::join!(app.router.clone().oneshot(post(bodies[0].clone())), app.router.clone().oneshot(post(bodies[1].clone())));
    assert_eq!(a.unwrap().status(), StatusCode::FOUND);
    assert_eq!(b.unwrap().status(), StatusCode::FOUND);
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND purpose = 'proration'", org).await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM charges WHERE org_id = $1 AND status <> 'failed'", org).await, 1);
    let grants = count(&db, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND kind = 'grant'", org).await;
    assert_eq!(grants, 2, "the free plan's grant and the upgrade's, once");
}

#[sqlx::test]
async fn a_request_for_approval_lapses_at_period_end_and_test_keys_wait_like_live_ones(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    let test_key = app.create_key("test", "test", &["*"], "").await;
    choose(&mut app, "enterprise", "").await;
    assert_eq!(status(&db, org).await, "pending_approval");
    let res = app.call("POST", "/v1/text/summarize", Some(&test_key), Some(r#"{"text":"a b"}"#), &[]).await;
    assert_eq!(res.status, 402, "{}", res.body);
    assert_eq!(res.json()["code"], "subscription_pending_approval");
    assert_eq!(app.call("GET", "/v1/ping", Some(&test_key), None, &[]).await.status, 200);

    // Nobody decided before the period ended: the request lapses and the
    // plan it would replace renews.
    app.clock.advance(period_end(&db, org).await - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "active");
    let (plan, end): (String, time::OffsetDateTime) = sqlx::query_as(
        "SELECT p.code, s.current_period_end FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(plan, "free");
    assert!(end > app.clock.now());
    assert!(decode_html(&app.get("/billing").await.body).contains("not decided before your period ended"));
}

#[sqlx::test]
async fn a_charge_the_processor_reports_paid_after_a_failure_is_honoured(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, NO_FUNDS).await;
    let before = purchased(&db, org).await;
    top_up(&mut app, 5000).await;
    let key: String = sqlx::query_scalar("SELECT idempotency_key FROM charges WHERE org_id = $1 AND status = 'failed'")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let event = serde_json::json!({
        "id": "evt_late_success", "type": "charge.succeeded", "created": now,
        "data": {"object": {"id": "ch_late", "idempotency_key": key, "amount": 4500, "currency": "USD",
                            "failure_code": null, "decline_code": null}},
    })
    .to_string();
    let res = deliver(&app, &event, Some(sign("whsec_tests", now, event.as_bytes()))).await;
    assert_eq!(res.status(), 200);
    // The money was taken: the credits it bought arrive, once.
    assert_eq!(purchased(&db, org).await, before + 5000);
    let again = event.replace("evt_late_success", "evt_late_again");
    deliver(&app, &again, Some(sign("whsec_tests", now, again.as_bytes()))).await;
    assert_eq!(purchased(&db, org).await, before + 5000);
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND status = 'paid'", org).await, 1);
}

/// Asking for a plan that needs approval used to drop a downgrade the
/// customer had scheduled; withdrawing the request now puts it back.
#[sqlx::test]
async fn withdrawing_a_request_restores_the_scheduled_downgrade(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    choose(&mut app, "pro", "").await;
    assert_eq!(status(&db, org).await, "active");
    choose(&mut app, "free", "").await;
    let next = "SELECT coalesce((SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.next_plan_id WHERE s.org_id = $1), '-')";
    let next_plan = |db: PgPool| async move { sqlx::query_scalar::<_, String>(next).bind(org).fetch_one(&db).await.unwrap() };
    assert_eq!(next_plan(db.clone()).await, "free", "the downgrade is scheduled");
    choose(&mut app, "enterprise", "").await;
    assert_eq!(status(&db, org).await, "pending_approval");
    choose(&mut app, "pro", "").await;
    assert_eq!(status(&db, org).await, "active");
    assert_eq!(next_plan(db.clone()).await, "free", "withdrawing the request restores the downgrade");
}

/// An admin's decision names the request they saw: approving a page loaded
/// before the customer withdrew and asked again (here for another plan
/// needing approval, or the same one later) is refused, and nothing is
/// charged.
#[sqlx::test]
async fn an_approval_decision_on_a_stale_request_is_refused(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    let mut ops = crate::routes::admin_of(&app).await;
    add_card(&mut app, GOOD).await;
    choose(&mut app, "enterprise", "").await;
    let seen = ops.get("/admin/approvals").await.body;
    let (csrf, stale) = (extract_csrf(&seen), hidden(&seen, "request"));
    // The customer withdraws and asks again a little later.
    choose(&mut app, "free", "").await;
    app.clock.advance(time::Duration::minutes(5));
    choose(&mut app, "enterprise", "").await;
    assert_eq!(status(&db, org).await, "pending_approval");
    for request in [stale.as_str(), "", "enterprise@0"] {
        ops.post_form("/api/decide_approval", &[("csrf", &csrf), ("org_id", &org.to_string()), ("request", request), ("decision", "approve"), ("note", "")]).await;
        assert_eq!(status(&db, org).await, "pending_approval", "{request:?} is not the request waiting");
    }
    assert!(decode_html(&ops.get("/admin/approvals").await.body).contains("This request changed since the page was loaded"));
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1", org).await, 0);
    // The request as it is now can be decided.
    let fresh = ops.get("/admin/approvals").await.body;
    let request = hidden(&fresh, "request");
    assert_ne!(request, stale);
    ops.post_form("/api/decide_approval", &[("csrf", &csrf), ("org_id", &org.to_string()), ("request", &request), ("decision", "approve"), ("note", "")]).await;
    assert_eq!(status(&db, org).await, "active");
}

/// Requesting, withdrawing and requesting again used to e-mail every
/// platform admin each time (with the customer's own text in it): at most
/// one approval e-mail per organization a day.
#[sqlx::test]
async fn requesting_approval_again_and_again_emails_the_admins_once_a_day(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    let _ops = crate::routes::admin_of(&app).await;
    add_card(&mut app, GOOD).await;
    let approval_emails = "SELECT count(*) FROM email_outbox WHERE kind = 'approval_requested' AND $1::uuid IS NOT NULL";
    for _ in 0..3 {
        choose(&mut app, "enterprise", "").await;
        assert_eq!(status(&db, org).await, "pending_approval");
        choose(&mut app, "free", "").await;
        assert_eq!(status(&db, org).await, "active");
    }
    assert_eq!(count(&db, approval_emails, org).await, 1, "one e-mail to the one admin");
    // A day later the next request is news again.
    app.clock.advance(time::Duration::hours(25));
    choose(&mut app, "enterprise", "").await;
    assert_eq!(count(&db, approval_emails, org).await, 2);
}

#[sqlx::test]
async fn a_request_for_approval_can_be_withdrawn_by_staying_on_the_old_plan(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    choose(&mut app, "enterprise", "").await;
    assert_eq!(status(&db, org).await, "pending_approval");
    let page = decode_html(&app.get("/billing/plans").await.body);
    assert!(page.contains("Stay on Free and withdraw the request"), "the page offers it");
    // Choosing another plan is not a way out of the queue.
    choose(&mut app, "pro", "").await;
    assert_eq!(status(&db, org).await, "pending_approval");
    choose(&mut app, "free", "").await;
    assert_eq!(status(&db, org).await, "active");
    let plan: String = sqlx::query_scalar("SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(plan, "free");
    let res = app.call("POST", "/v1/text/summarize", Some(&key), Some(r#"{"text":"a b"}"#), &[]).await;
    assert_eq!(res.json()["code"], "plan_upgrade_required");
    let queue = crate::routes::admin_of(&app).await.get("/admin/approvals").await.body;
    assert!(!queue.contains(&org.to_string()), "nothing waits for a decision");
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1", org).await, 0);
}

/// Lets the outcomes held by `hold_deliveries` go, and delivers them now.
async fn release_outcomes(app: &TestApp) {
    app.state.sandbox.hold_deliveries(false);
    sqlx::query("UPDATE sandbox_events SET next_attempt_at = now() - interval '1 second' WHERE delivered_at IS NULL")
        .execute(&app.db)
        .await
        .unwrap();
    app.state.sandbox.deliver_due().await.unwrap();
}

/// Two tabs whose forms buy different upgrades (here the same plan a day
/// apart, so the invoices are named differently): while the first is being
/// charged, the second is refused. (The earlier two-tabs test passed with
/// this check removed: its tabs named the same invoice.)
#[sqlx::test]
async fn a_second_upgrade_waits_for_the_one_being_charged(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    app.state.sandbox.hold_deliveries(true);
    let (first, _) = upgrade(&mut app, "pro").await;
    assert_eq!(first.status, StatusCode::FOUND);
    app.clock.advance(time::Duration::days(1));
    let (_, _) = upgrade(&mut app, "pro").await;
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND purpose = 'proration'", org).await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM charges WHERE org_id = $1", org).await, 1, "one charge in flight at a time");
    release_outcomes(&app).await;
    wait_for(&db, org, "active").await;
}

/// While a renewal is being charged, cancelling used to succeed, and the
/// failure that arrived next was lost (the subscription was canceled, not
/// active); "keep my plan" then made a plan on a card that always declines
/// active again. A request for approval made meanwhile did the same. The
/// debt now holds: cancel is refused while a renewal is owed, and a
/// failure puts the subscription in dunning whatever it became.
#[sqlx::test]
async fn a_renewal_failure_holds_the_subscription_in_dunning_whatever_the_customer_clicks(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    wait_for(&db, org, "active").await;
    add_card(&mut app, ALWAYS_FAILS).await;
    app.state.sandbox.hold_deliveries(true);
    let end = period_end(&db, org).await;
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM invoices WHERE org_id = $1 AND owed AND status = 'open'", org).await, 1, "the renewal is being charged");

    cancel(&mut app).await;
    assert_ne!(status(&db, org).await, "canceled", "a renewal still owed is not cancelled away");
    choose(&mut app, "enterprise", "").await;
    release_outcomes(&app).await;
    wait_for(&db, org, "past_due").await;
    let plan: String = sqlx::query_scalar("SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(plan, "pro", "a request made while the renewal was owed is withdrawn by its failure");

    // Toggling cancel and keep clears nothing.
    for _ in 0..2 {
        cancel(&mut app).await;
        choose(&mut app, "pro", "").await;
        assert_eq!(status(&db, org).await, "past_due");
    }
    app.clock.advance(time::Duration::days(3) + time::Duration::minutes(1));
    tollgate::billing::renewals::dunning_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "unpaid");
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, 402);
}

/// Renewing one plan in one tab and another in a second tab while the first
/// is being charged used to charge the first and deliver the second (the
/// first's payment then bought nothing: `refund_due`). One renewal at a
/// time: the second finds the first and waits.
#[sqlx::test]
async fn a_second_renewal_finds_the_one_being_charged(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    upgrade(&mut app, "pro").await;
    wait_for(&db, org, "active").await;
    cancel(&mut app).await;
    let end = period_end(&db, org).await;
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(status(&db, org).await, "expired");

    app.state.sandbox.hold_deliveries(true);
    choose(&mut app, "pro", "&renew=1").await;
    choose(&mut app, "free", "&renew=1").await;
    let said = banner(&mut app, "/billing/plans").await;
    assert_eq!(status(&db, org).await, "expired", "the free renewal waited: {said}");
    release_outcomes(&app).await;
    wait_for(&db, org, "active").await;
    let plan: String = sqlx::query_scalar("SELECT p.code FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(plan, "pro", "what was paid for is what runs");
    let refunds: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'billing.refund_due'").fetch_one(&db).await.unwrap();
    assert_eq!(refunds, 0, "nothing was bought twice");
}

/// Approvals, renewals and a trial's end used to open the period with all
/// its included credits before anything was paid: an approved Enterprise on
/// a card that saves but always declines got 250,000 credits for its grace
/// period. Until its charge is paid, a period spends at most what the period
/// before it included (none after a trial); the rest comes with the payment,
/// once.
#[sqlx::test]
async fn a_period_not_paid_yet_spends_at_most_what_the_one_before_included(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    add_card(&mut app, ALWAYS_FAILS).await;
    choose(&mut app, "enterprise", "").await;
    let mut ops = crate::routes::admin_of(&app).await;
    let queue = ops.get("/admin/approvals").await.body;
    let (csrf, request) = (extract_csrf(&queue), hidden(&queue, "request"));
    ops.post_form("/api/decide_approval", &[("csrf", &csrf), ("org_id", &org.to_string()), ("request", &request), ("decision", "approve"), ("note", "")]).await;
    wait_for(&db, org, "past_due").await;
    let included = |db: PgPool| async move { count(&db, "SELECT included FROM org_meters WHERE org_id = $1", org).await };
    assert!(included(db.clone()).await <= 100, "the unpaid Enterprise period has at most Free's 100: {}", included(db.clone()).await);

    // Paid: the rest of the period's credits, exactly once.
    add_card(&mut app, GOOD).await;
    wait_for(&db, org, "active").await;
    assert_eq!(included(db.clone()).await, 250_000);
    tollgate::billing::renewals::retry_owed(&app.state.billing, org, app.clock.now(), Duration::from_secs(2)).await.unwrap();
    assert_eq!(included(db.clone()).await, 250_000, "granted once");
}

/// A trial's end charges the plan; until that is paid the period has none
/// of the plan's included credits (the trial was nobody's payment).
#[sqlx::test]
async fn a_trials_first_paid_period_gets_its_credits_when_paid(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    verify_email(&mut app, "ada@example.com").await;
    let page = app.get("/billing/plans").await.body;
    let csrf = extract_csrf(&page);
    app.post_form("/api/start_trial", &[("csrf", &csrf), ("plan", "pro")]).await;
    assert_eq!(status(&db, org).await, "trialing");
    add_card(&mut app, ALWAYS_FAILS).await;
    let end = period_end(&db, org).await;
    app.clock.advance(end - app.clock.now() + time::Duration::minutes(1));
    tollgate::billing::renewals::renew_due(&app.state.billing, app.clock.now()).await.unwrap();
    wait_for(&db, org, "past_due").await;
    let included = count(&db, "SELECT included FROM org_meters WHERE org_id = $1", org).await;
    assert_eq!(included, 0, "no included credits before the first payment");
    add_card(&mut app, GOOD).await;
    wait_for(&db, org, "active").await;
    assert_eq!(count(&db, "SELECT included FROM org_meters WHERE org_id = $1", org).await, 10_000);
}

#[sqlx::test]
async fn a_card_token_attaches_once_and_no_table_keeps_the_number(db: PgPool) {
    use tollgate::billing::processor::{check_card, CardInput};
    let (app, _, org) = customer(&db).await;
    let user: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'ada@example.com'").fetch_one(&db).await.unwrap();
    let now = app.clock.now();
    let input = CardInput {
        number: "4242 4242 4242 4242".into(),
        exp_month: "12".into(),
        exp_year: "2030".into(),
        cvc: "123".into(),
        name: "Ada Lovelace".into(),
    };
    let card = check_card(&input, now).unwrap();
    let token = app.state.sandbox.tokenize(&card, now).await.unwrap();
    tollgate::billing::cards::add(&app.state.billing, org, user, &token, true, now).await.unwrap();
    let again = tollgate::billing::cards::add(&app.state.billing, org, user, &token, true, now).await.unwrap_err();
    assert!(matches!(again, tollgate::billing::BillingError::State(_)), "a token attaches once: {again:?}");
    let cards: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_methods WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(cards, 1);
    for table in ["sandbox_cards", "payment_methods", "audit_log"] {
        let holds: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} t WHERE row_to_json(t)::text LIKE '%4242424242424242%'"))
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(holds, 0, "{table} keeps no card number");
    }
}
