//! The Stripe processor, end to end against a Stripe emulator
//! (`localstripe`, started by `bash .ci/test`): the browser's part (what
//! Stripe.js does) is played here with the same requests its fake Stripe.js
//! sends, so no card number ever goes to Tollgate's server.

use super::billing::{hidden, top_up};
use super::helpers::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

const VISA: &str = "4242424242424242";
/// Saved, then every charge is declined.
const DECLINED_CHARGE: &str = "4000000000000341";
/// Declined when saved.
const NO_FUNDS: &str = "4000000000009995";
/// The bank wants every payment confirmed (3-D Secure).
const THREE_D: &str = "4000002500003155";

async fn stripe_customer(db: &PgPool) -> (TestApp, String, Uuid, String) {
    let (mut app, secret) = TestApp::with_stripe(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let key = app.create_key("server", "live", &["*"], "never").await;
    let org = app.org_of("ada@example.com").await;
    (app, key, org, secret)
}

fn data(html: &str, name: &str) -> String {
    let marker = format!("{name}=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in the page")) + marker.len();
    let end = html[start..].find('"').unwrap();
    decode_html(&html[start..start + end])
}

async fn emulator(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", localstripe()));
    req = match body {
        Some(b) => req.header("content-type", "application/json").body(b.to_string()),
        None => req.basic_auth("sk_test_tollgate", Some("")),
    };
    let res = req.send().await.expect("localstripe answers");
    let status = res.status().as_u16();
    let body = res.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// What Stripe.js does on the payment-methods page: confirms the page's
/// SetupIntent with the card (and, for a card that asks, completes 3-D
/// Secure). Returns the SetupIntent's id, or the error Stripe.js reports.
async fn stripe_js_confirms_card(page: &str, number: &str) -> Result<String, Value> {
    let key = data(page, "data-key");
    let secret = data(page, "data-secret");
    let seti = secret.split("_secret_").next().unwrap().to_string();
    let (status, body) = emulator(
        reqwest::Method::POST,
        &format!("/v1/setup_intents/{seti}/confirm"),
        Some(json!({
            "key": key, "use_stripe_sdk": true, "client_secret": secret,
            "payment_method_data": {"type": "card", "card": {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"},
                                    "billing_details": {"name": "Ada Lovelace"}},
        })),
    )
    .await;
    if status != 200 {
        return Err(body["error"].clone());
    }
    if body["status"] == "requires_action" {
        let (_, body) = emulator(
            reqwest::Method::POST,
            &format!("/v1/setup_intents/{seti}/confirm"),
            Some(json!({"key": key, "use_stripe_sdk": true, "client_secret": secret})),
        )
        .await;
        assert_eq!(body["status"], "succeeded", "{body}");
    }
    Ok(seti)
}

async fn save_card(app: &mut TestApp, number: &str) -> TestResponse {
    let page = app.get("/billing/payment-methods").await.body;
    let seti = stripe_js_confirms_card(&page, number).await.expect("Stripe.js saved the card");
    let csrf = extract_csrf(&page);
    app.post_form("/api/save_card", &[("csrf", &csrf), ("token", &seti), ("make_default", "on")]).await
}

async fn scalar(db: &PgPool, sql: &str, org: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(org).fetch_one(db).await.unwrap()
}

async fn purchased(db: &PgPool, org: Uuid) -> i64 {
    scalar(db, "SELECT purchased FROM org_meters WHERE org_id = $1", org).await
}

/// Waits until the emulator's webhook for `kind` has reached the app.
async fn webhook_arrives(db: &PgPool, kind: &str) {
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE processor = 'stripe' AND type = $1")
            .bind(kind)
            .fetch_one(db)
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {kind} webhook arrived");
}

#[sqlx::test]
async fn a_card_from_stripe_js_is_saved_and_a_top_up_is_paid_through_stripe(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    let page = app.get("/billing/payment-methods").await.body;
    // Stripe.js and its field, not the sandbox's card number inputs.
    assert!(page.contains("/js.stripe.com/v3/"), "{page}");
    assert!(page.contains("data-testid=\"card-element\"") && !page.contains("name=\"number\""));
    assert!(page.contains("/processor.js"));
    // Showing the page again makes no second SetupIntent.
    let again = app.get("/billing/payment-methods").await.body;
    assert_eq!(data(&page, "data-secret"), data(&again, "data-secret"));
    let res = app.get("/billing/payment-methods").await;
    let csp = res.header("content-security-policy").unwrap();
    assert!(csp.contains(&format!("script-src 'self' 'nonce-")) && csp.contains(&localstripe()), "{csp}");
    // Other pages do not let the processor in.
    let other = app.get("/billing/top-up").await.header("content-security-policy").unwrap();
    assert!(!other.contains(&localstripe()), "{other}");

    let res = save_card(&mut app, VISA).await;
    assert_eq!(res.location(), "/billing/payment-methods");
    let page = app.get("/billing/payment-methods").await.body;
    assert!(page.contains("Card added"), "{page}");
    assert!(page.contains("data-card=\"4242\""));
    let (processor, reference): (String, String) =
        sqlx::query_as("SELECT processor, processor_ref FROM payment_methods WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(processor, "stripe");
    assert!(reference.starts_with("pm_"), "{reference}");
    // The same SetupIntent posted again (a replay) saves nothing more.
    let seti = sqlx::query_scalar::<_, String>("SELECT setup_intent FROM stripe_setups WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    let csrf = extract_csrf(&page);
    app.post_form("/api/save_card", &[("csrf", &csrf), ("token", &seti)]).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM payment_methods WHERE org_id = $1", org).await, 1);

    let before = purchased(&db, org).await;
    let res = top_up(&mut app, 5000).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(purchased(&db, org).await, before + 5000);
    let (status, pi, key): (String, String, String) =
        sqlx::query_as("SELECT status, processor_ref, idempotency_key FROM charges WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "succeeded");
    // At Stripe: a PaymentIntent of the customer, with the charge's key.
    let (_, at_stripe) = emulator(reqwest::Method::GET, &format!("/v1/payment_intents/{pi}"), None).await;
    assert_eq!(at_stripe["status"], "succeeded");
    assert_eq!(at_stripe["amount"], 4500);
    assert_eq!(at_stripe["metadata"]["tollgate_key"], key.as_str());
    let customer: String = sqlx::query_scalar("SELECT customer_id FROM stripe_customers WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(at_stripe["customer"], customer.as_str());
    // Its webhook arrives signed with Stripe's scheme and changes nothing more.
    webhook_arrives(&db, "payment_intent.succeeded").await;
    assert_eq!(purchased(&db, org).await, before + 5000);
    // No card number is kept anywhere.
    let rows: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(t::text, ' '), '') FROM (
             SELECT row_to_json(p) AS t FROM payment_methods p UNION ALL SELECT row_to_json(s) FROM stripe_customers s
             UNION ALL SELECT row_to_json(s) FROM stripe_setups s UNION ALL SELECT row_to_json(c) FROM charges c) x",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(!rows.contains("42424242"), "{rows}");
}

#[sqlx::test]
async fn a_card_declined_by_stripe_adds_nothing_and_a_declined_charge_says_why(db: PgPool) {
    let (mut app, key, org, _) = stripe_customer(&db).await;
    // Declined while Stripe.js saves it: its sentence is the page's.
    let page = app.get("/billing/payment-methods").await.body;
    let error = stripe_js_confirms_card(&page, NO_FUNDS).await.expect_err("declined");
    assert_eq!(error["code"], "card_declined");
    let sentences: Value = serde_json::from_str(&data(&page, "data-sentences")).unwrap();
    assert_eq!(sentences["card_declined"], "Your card was declined.");
    assert_eq!(sentences["insufficient_funds"], "Your card has insufficient funds.");
    // The declined SetupIntent posted anyway saves nothing.
    let seti = data(&page, "data-secret").split("_secret_").next().unwrap().to_string();
    let csrf = extract_csrf(&page);
    let res = app.post_form("/api/save_card", &[("csrf", &csrf), ("token", &seti)]).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(scalar(&db, "SELECT count(*) FROM payment_methods WHERE org_id = $1", org).await, 0);
    assert!(app.get("/billing/payment-methods").await.body.contains("This card form expired"));

    // A card saved fine whose charges are declined.
    save_card(&mut app, DECLINED_CHARGE).await;
    let before = purchased(&db, org).await;
    top_up(&mut app, 5000).await;
    assert_eq!(purchased(&db, org).await, before, "a declined charge buys nothing");
    let page = app.get("/billing/top-up").await.body;
    assert!(page.contains("Your card was declined."), "{page}");
    let (status, code): (String, Option<String>) = sqlx::query_as("SELECT status, failure_code FROM invoices WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((status.as_str(), code.as_deref()), ("failed", Some("card_declined")));
    webhook_arrives(&db, "payment_intent.payment_failed").await;
    let _ = key;
}

#[sqlx::test]
async fn a_renewal_declined_by_stripe_ends_in_a_402_with_its_decline_and_a_new_card_pays_it(db: PgPool) {
    let (mut app, key, org, _) = stripe_customer(&db).await;
    save_card(&mut app, VISA).await;
    super::billing::upgrade(&mut app, "pro").await;
    super::billing::wait_for(&db, org, "active").await;
    save_card(&mut app, DECLINED_CHARGE).await;
    super::billing::renew_past_period_end(&mut app, org).await;
    super::billing::wait_for(&db, org, "past_due").await;
    app.clock.advance(time::Duration::days(3) + time::Duration::minutes(1));
    tollgate::billing::renewals::dunning_due(&app.state.billing, app.clock.now()).await.unwrap();
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, 402);
    let body = res.json();
    assert_eq!(body["code"], "subscription_past_due");
    assert_eq!(body["payment_error"]["code"], "card_declined");

    let res = save_card(&mut app, VISA).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(app.get("/billing/payment-methods").await.body.contains("access is restored"));
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
}

#[sqlx::test]
async fn a_stripe_webhook_is_verified_deduplicated_and_safe_out_of_order(db: PgPool) {
    let (mut app, _, org, secret) = stripe_customer(&db).await;
    save_card(&mut app, VISA).await;
    top_up(&mut app, 5000).await;
    let (charge, pi, key): (Uuid, String, String) =
        sqlx::query_as("SELECT id, processor_ref, idempotency_key FROM charges WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    let balance = purchased(&db, org).await;
    let post = |body: String, signature: Option<String>, path: &'static str| {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(s) = signature {
            req = req.header("stripe-signature", s);
        }
        req.body(Body::from(body)).unwrap()
    };
    let event = |id: &str, kind: &str, status: &str| {
        json!({"id": id, "type": kind, "created": 1, "data": {"object": {
            "id": pi, "status": status, "amount": 4500, "currency": "usd", "metadata": {"tollgate_key": key},
            "last_payment_error": if status == "succeeded" { Value::Null } else { json!({"code": "card_declined", "decline_code": "generic_decline"}) },
        }}})
        .to_string()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign = |secret: &str, t: i64, body: &str| tollgate::billing::webhooks::sign(secret, t, body.as_bytes());

    // A forged failure: a wrong secret, an old or future timestamp, no
    // signature, or a signature for another body is refused and changes nothing.
    let failed = event("evt_forged", "payment_intent.payment_failed", "requires_payment_method");
    for signature in [
        Some(sign("whsec_wrong", now, &failed)),
        Some(sign(&secret, now - 301, &failed)),
        Some(sign(&secret, now + 301, &failed)),
        Some(sign(&secret, now, &event("evt_other", "payment_intent.succeeded", "succeeded"))),
        None,
    ] {
        let res = app.router.clone().oneshot(post(failed.clone(), signature, "/webhooks/stripe")).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    // The sandbox's endpoint is nobody's while Stripe takes the payments.
    let res = app.router.clone().oneshot(post(failed.clone(), Some(sign(&secret, now, &failed)), "/webhooks/sandbox")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let status: String = sqlx::query_scalar("SELECT status FROM charges WHERE id = $1").bind(charge).fetch_one(&db).await.unwrap();
    assert_eq!(status, "succeeded");
    assert_eq!(scalar(&db, "SELECT count(*) FROM webhook_events WHERE event_id = 'evt_forged' AND $1 = $1", org).await, 0);

    // Signed right, a failure after the success (out of order) is recorded
    // and changes nothing; the same event twice is a duplicate.
    for expected in ["already settled", "duplicate"] {
        let res = app.router.clone().oneshot(post(failed.clone(), Some(sign(&secret, now, &failed)), "/webhooks/stripe")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains(expected), "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(purchased(&db, org).await, balance);
    let invoice: String = sqlx::query_scalar("SELECT status FROM invoices WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(invoice, "paid");

    // A dispute is recorded in the audit log, for the organization.
    let dispute = json!({"id": "evt_dispute", "type": "charge.dispute.created", "created": 1, "data": {"object": {
        "id": "dp_1", "payment_intent": pi, "charge": "ch_1", "amount": 4500, "currency": "usd",
        "reason": "fraudulent", "status": "needs_response"}}})
    .to_string();
    let res = app.router.clone().oneshot(post(dispute.clone(), Some(sign(&secret, now, &dispute)), "/webhooks/stripe")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let details: Value = sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'billing.dispute' AND org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(details["reason"], "fraudulent");
    assert_eq!(details["amount_minor"], 4500);

    // A second payment Stripe says it took for the same charge buys
    // nothing and is refunded by itself; one that cannot be refunded (here
    // a payment Stripe has no record of) is listed by reconciliation.
    let twice = json!({"id": "evt_twice", "type": "payment_intent.succeeded", "created": 1, "data": {"object": {
        "id": "pi_second0payment", "status": "succeeded", "amount": 4500, "currency": "usd", "metadata": {"tollgate_key": key}}}})
    .to_string();
    let res = app.router.clone().oneshot(post(twice.clone(), Some(sign(&secret, now, &twice)), "/webhooks/stripe")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(purchased(&db, org).await, balance);
    tollgate::billing::refunds::send_pending(&app.state.billing, app.clock.now()).await.unwrap();
    let (status, reason): (String, String) = sqlx::query_as("SELECT status, reason FROM refunds WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("failed", "charged twice for one attempt"));
    // A dispute the bank decides for the customer, then a late event of
    // its opening: it stays lost, and reconciliation lists it.
    for (id, kind, status) in [("evt_lost", "charge.dispute.closed", "lost"), ("evt_late", "charge.dispute.updated", "under_review")] {
        let e = json!({"id": id, "type": kind, "created": 1, "data": {"object": {
            "id": "dp_1", "payment_intent": pi, "amount": 4500, "currency": "usd", "reason": "fraudulent", "status": status}}})
        .to_string();
        let res = app.router.clone().oneshot(post(e.clone(), Some(sign(&secret, now, &e)), "/webhooks/stripe")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let clock = app.clock.now();
    let report = tollgate::billing::reconcile::compare(&app.state.billing, clock - time::Duration::days(1), clock + time::Duration::days(30), clock)
        .await
        .unwrap();
    let kinds: Vec<_> = report.differences.iter().filter(|d| d.org == Some(org)).map(|d| d.kind).collect();
    use tollgate::billing::reconcile::Kind;
    assert!(kinds.contains(&Kind::RefundNotSent) && kinds.contains(&Kind::DisputeLost), "{kinds:?}");
    // Admins see it on the organization's page.
    let mut ops = super::routes::admin_of(&app).await;
    let page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    assert!(page.contains("data-dispute-status=\"lost\"") && page.contains("fraudulent"), "{page}");

    // A reissued card's new expiry reaches the saved card.
    let pm: String = sqlx::query_scalar("SELECT processor_ref FROM payment_methods WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let updated = json!({"id": "evt_card", "type": "payment_method.automatically_updated", "created": 1, "data": {"object": {
        "id": pm, "card": {"brand": "visa", "last4": "4242", "exp_month": 3, "exp_year": 2033}}}})
    .to_string();
    let res = app.router.clone().oneshot(post(updated.clone(), Some(sign(&secret, now, &updated)), "/webhooks/stripe")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let expiry: (i16, i16) = sqlx::query_as("SELECT exp_month, exp_year FROM payment_methods WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(expiry, (3, 2033));
}

#[sqlx::test]
async fn a_payment_the_bank_wants_confirmed_is_confirmed_in_the_browser_or_given_up(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    save_card(&mut app, THREE_D).await;
    let before = purchased(&db, org).await;
    top_up(&mut app, 5000).await;
    assert_eq!(purchased(&db, org).await, before, "nothing is bought before the bank confirms");
    assert!(app.get("/billing/top-up").await.body.contains("Your bank wants you to confirm this payment"));
    let invoices = app.get("/billing/invoices").await.body;
    assert!(invoices.contains("data-testid=\"needs-confirmation\""), "{invoices}");
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let page = app.get(&format!("/billing/invoices/{invoice}")).await;
    assert!(page.header("content-security-policy").unwrap().contains(&localstripe()));
    let page = page.body;
    assert!(page.contains("data-testid=\"confirm-payment\""), "{page}");
    // What Stripe.js does when the customer completes 3-D Secure.
    let secret = data(&page, "data-secret");
    let pi = secret.split("_secret_").next().unwrap().to_string();
    let (status, body) = emulator(
        reqwest::Method::POST,
        &format!("/v1/payment_intents/{pi}/_authenticate?success=true"),
        Some(json!({"key": data(&page, "data-key"), "client_secret": secret})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let csrf = extract_csrf(&page);
    let charge = hidden(&page, "charge");
    // Another organization's charge id confirms nothing of theirs.
    let (mut other, _) = TestApp::with_stripe(db.clone()).await;
    other.sign_up("Eve", "eve@example.com", PASSWORD).await;
    let eve_csrf = extract_csrf(&other.get("/billing/payment-methods").await.body);
    other.post_form("/api/confirm_payment", &[("csrf", &eve_csrf), ("charge", &charge), ("invoice", &invoice.to_string())]).await;
    assert_eq!(purchased(&db, org).await, before);

    app.post_form("/api/confirm_payment", &[("csrf", &csrf), ("charge", &charge), ("invoice", &invoice.to_string())]).await;
    assert_eq!(purchased(&db, org).await, before + 5000);
    let page = app.get(&format!("/billing/invoices/{invoice}")).await.body;
    assert!(page.contains("Payment confirmed"), "{page}");
    assert!(!page.contains("data-testid=\"confirm-payment\""));

    // Another that is never confirmed is given up after a day: canceled at
    // Stripe, failed here, nothing bought.
    top_up(&mut app, 5000).await;
    let (charge, pi): (Uuid, String) = sqlx::query_as(
        "SELECT id, processor_ref FROM charges WHERE org_id = $1 AND status = 'pending' AND action_required_at IS NOT NULL",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    app.clock.advance(time::Duration::hours(24));
    let given_up = tollgate::billing::payments::abandon_unconfirmed(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(given_up, 1);
    let (status, code): (String, Option<String>) = sqlx::query_as("SELECT status, failure_code FROM charges WHERE id = $1")
        .bind(charge)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert!(code.is_some());
    let (_, at_stripe) = emulator(reqwest::Method::GET, &format!("/v1/payment_intents/{pi}"), None).await;
    assert_eq!(at_stripe["status"], "canceled");
    assert_eq!(purchased(&db, org).await, before + 5000);
}

#[sqlx::test]
async fn an_off_session_payment_that_needs_confirming_emails_the_link(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    save_card(&mut app, THREE_D).await;
    // An automatic top-up runs while the customer is away.
    sqlx::query("UPDATE org_meters SET auto_top_up_threshold = 1000000000, auto_top_up_pack = 5000 WHERE org_id = $1")
        .bind(org)
        .execute(&db)
        .await
        .unwrap();
    let before = purchased(&db, org).await;
    let fired = tollgate::billing::topups::auto_top_up_due(&app.state.billing, app.clock.now()).await.unwrap();
    assert_eq!(fired, 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM charges WHERE org_id = $1 AND action_required_at IS NOT NULL", org).await, 1);
    assert_eq!(purchased(&db, org).await, before);
    let (subject, body) = last_email(&db, "ada@example.com").await.unwrap();
    assert_eq!(subject, "Confirm your payment with your bank");
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert!(body.contains(&format!("http://portal.test/billing/invoices/{invoice}")), "{body}");
}

/// The admin's refund form on the organization's page, sent as a browser
/// sends it.
async fn refund(ops: &mut TestApp, org: Uuid, invoice: Uuid, amount: &str, reason: &str) -> (TestResponse, String) {
    let page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    let csrf = extract_csrf(&page);
    let key = hidden(&page, "idempotency_key");
    let start = page.find("action=\"/api/refund_invoice\"").expect("a refund form");
    let refund_key = hidden(&page[start..], "idempotency_key");
    let _ = key;
    let res = ops
        .post_form(
            "/api/refund_invoice",
            &[("csrf", &csrf), ("org_id", &org.to_string()), ("invoice_id", &invoice.to_string()), ("amount", amount), ("reason", reason), ("idempotency_key", &refund_key)],
        )
        .await;
    (res, refund_key)
}

/// Refunds through either processor: shown on the invoice, audited, never
/// more than was paid, once per form.
async fn refunds_work(db: PgPool, mut app: TestApp, org: Uuid, processor: &str) {
    top_up(&mut app, 5000).await;
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE org_id = $1 AND status = 'paid'").bind(org).fetch_one(&db).await.unwrap();
    let mut ops = super::routes::admin_of(&app).await;
    let balance = purchased(&db, org).await;

    // A reason is required, and the amount is at most what was paid.
    let (res, _) = refund(&mut ops, org, invoice, "4.00", "  ").await;
    assert_eq!(res.status, StatusCode::FOUND);
    let page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    assert!(page.contains("Say why"), "{page}");
    let (_, _) = refund(&mut ops, org, invoice, "45.01", "too much").await;
    assert!(ops.get(&format!("/admin/orgs/{org}")).await.body.contains("Refund between $0.01 and $45.00."));
    let (_, _) = refund(&mut ops, org, invoice, "4,0x", "bad").await;
    assert!(ops.get(&format!("/admin/orgs/{org}")).await.body.contains("An amount is money such as 10"));
    assert_eq!(scalar(&db, "SELECT count(*) FROM refunds WHERE org_id = $1", org).await, 0);

    // $4.00 back, with a reason; the same form again moves nothing twice.
    let (res, key) = refund(&mut ops, org, invoice, "4.00", "the customer was charged for a failed batch").await;
    assert_eq!(res.status, StatusCode::FOUND);
    let page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    assert!(page.contains("Refunded $4.00"), "{page}");
    let csrf = extract_csrf(&page);
    ops.post_form(
        "/api/refund_invoice",
        &[("csrf", &csrf), ("org_id", &org.to_string()), ("invoice_id", &invoice.to_string()), ("amount", "4.00"), ("reason", "again"), ("idempotency_key", &key)],
    )
    .await;
    assert!(ops.get(&format!("/admin/orgs/{org}")).await.body.contains("nothing moved twice"));
    let (status, reference, by): (String, Option<String>, Option<Uuid>) =
        sqlx::query_as("SELECT status, processor_ref, requested_by FROM refunds WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "succeeded");
    assert!(reference.as_deref().is_some_and(|r| r.starts_with("re_")), "{reference:?}");
    assert!(by.is_some());
    // The processor sent it back.
    let payment: String = sqlx::query_scalar("SELECT processor_ref FROM charges WHERE invoice_id = $1").bind(invoice).fetch_one(&db).await.unwrap();
    let refunded_there = app.state.billing.processor.payments(
        time::OffsetDateTime::now_utc() - time::Duration::days(30),
        time::OffsetDateTime::now_utc() + time::Duration::days(30),
    )
    .await
    .unwrap()
    .into_iter()
    .find(|p| p.reference == payment)
    .map(|p| p.refunded_minor);
    assert_eq!(refunded_there, Some(400), "{processor}");
    // Shown on the invoice, told to the customer, audited with before and after.
    let page = app.get(&format!("/billing/invoices/{invoice}")).await.body;
    assert!(page.contains("Refunded <strong>$4.00</strong>"), "{page}");
    assert!(page.contains("the customer was charged for a failed batch"));
    let (subject, _) = last_email(&db, "ada@example.com").await.unwrap();
    assert!(subject.starts_with("Refund for invoice"), "{subject}");
    let (before, after): (Value, Value) = sqlx::query_as(
        "SELECT before, after FROM audit_log WHERE org_id = $1 AND action = 'billing.refund_requested'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((before["refunded_minor"].as_i64(), after["refunded_minor"].as_i64()), (Some(0), Some(400)));
    assert_eq!(scalar(&db, "SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'billing.refunded'", org).await, 1);
    // Money back leaves the credits as they were.
    assert_eq!(purchased(&db, org).await, balance);

    // The rest, then nothing more.
    refund(&mut ops, org, invoice, "", "the rest").await;
    assert_eq!(scalar(&db, "SELECT sum(amount_minor)::bigint FROM refunds WHERE org_id = $1 AND status = 'succeeded'", org).await, 4500);
    let page = ops.get(&format!("/admin/orgs/{org}")).await.body;
    assert!(page.contains("data-testid=\"nothing-to-refund\""), "{page}");

    // Reconciled: the charges and refunds here equal the processor's.
    let now = app.clock.now();
    let report = tollgate::billing::reconcile::compare(&app.state.billing, now - time::Duration::days(40), now + time::Duration::days(40), now)
        .await
        .unwrap();
    let ours: Vec<_> = report.differences.iter().filter(|d| d.org == Some(org)).collect();
    assert!(ours.is_empty(), "{ours:?}");
}

#[sqlx::test]
async fn an_admin_refunds_an_invoice_through_stripe(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    save_card(&mut app, VISA).await;
    refunds_work(db, app, org, "stripe").await;
}

#[sqlx::test]
async fn an_admin_refunds_an_invoice_through_the_sandbox(db: PgPool) {
    let (mut app, _, org) = super::gateway::customer(&db).await;
    super::billing::add_card(&mut app, super::billing::GOOD).await;
    refunds_work(db, app, org, "sandbox").await;
}

#[sqlx::test]
async fn reconciliation_lists_every_difference_with_stripe(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    save_card(&mut app, VISA).await;
    top_up(&mut app, 5000).await;
    let (pi, customer): (String, String) = sqlx::query_as(
        "SELECT c.processor_ref, s.customer_id FROM charges c JOIN stripe_customers s ON s.org_id = c.org_id WHERE c.org_id = $1",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    let pm: String = sqlx::query_scalar("SELECT processor_ref FROM payment_methods WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (from, to) = (app.clock.now() - time::Duration::days(1), now + time::Duration::days(1));
    // An amount of this run's own (the emulator holds other tests' payments).
    let odd = 1000 + (Uuid::new_v4().as_u128() % 8999) as i64;
    let odd_money = tollgate::billing::format_money(odd, "USD");
    let mine = |r: &tollgate::billing::reconcile::Report| {
        r.differences
            .iter()
            .filter(|d| d.org == Some(org) || d.reference.as_deref() == Some(pi.as_str()) || d.theirs.starts_with(&format!("{odd_money} ")))
            .map(|d| d.kind)
            .collect::<Vec<_>>()
    };
    let clean = tollgate::billing::reconcile::compare(&app.state.billing, from, to, now).await.unwrap();
    assert!(mine(&clean).is_empty(), "{:?}", clean.differences);

    // Money taken at Stripe outside Tollgate, and a refund made there.
    let form = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let post = |path: String, body: String| async move {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", localstripe()))
            .basic_auth("sk_test_tollgate", Some(""))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap_or_default());
    };
    post(
        "/v1/payment_intents".into(),
        form(&[("amount", &odd.to_string()), ("currency", "usd"), ("customer", &customer), ("payment_method", &pm), ("confirm", "true")]),
    )
    .await;
    post("/v1/refunds".into(), form(&[("payment_intent", &pi), ("amount", "100")])).await;
    let report = tollgate::billing::reconcile::compare(&app.state.billing, from, to, now).await.unwrap();
    let kinds = mine(&report);
    use tollgate::billing::reconcile::Kind;
    assert!(kinds.contains(&Kind::UnknownToTollgate), "{:?}", report.differences);
    assert!(kinds.contains(&Kind::RefundsDiffer), "{:?}", report.differences);

    // The console shows the same, and the command line fails on it.
    let mut ops = super::routes::admin_of(&app).await;
    let page = ops.get("/admin/reconcile?since=2026-11-01&until=2027-01-01").await.body;
    assert!(page.contains("data-kind=\"unknown_to_tollgate\"") && page.contains("data-kind=\"refunds_differ\""), "{page}");
    let page = ops.get("/admin/reconcile?since=2026-13-01").await.body;
    assert!(page.contains("A date such as 2026-11-01."), "{page}");
    let mut url: url::Url = std::env::var("DATABASE_URL").unwrap().parse().unwrap();
    url.set_path(&format!("/{}", db.connect_options().get_database().unwrap()));
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["reconcile", "--since", "2026-11-01"])
        .env("DATABASE_URL", url.as_str())
        .env("TOLLGATE_STRIPE_SECRET_KEY", "sk_test_tollgate")
        .env("TOLLGATE_STRIPE_PUBLISHABLE_KEY", "pk_test_tollgate")
        .env("TOLLGATE_STRIPE_WEBHOOK_SECRET", "whsec_cli")
        .env("TOLLGATE_STRIPE_API_URL", localstripe())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(!cli.status.success(), "{out}");
    assert!(out.contains("refunds differ") && out.contains(&pi), "{out}");
}

#[sqlx::test]
async fn another_organizations_card_setup_saves_nothing(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    let page = app.get("/billing/payment-methods").await.body;
    let seti = stripe_js_confirms_card(&page, VISA).await.unwrap();
    // Eve, in another organization, posts Ada's confirmed SetupIntent.
    let mut eve = app.other_browser();
    eve.sign_up("Eve", "eve@example.com", PASSWORD).await;
    let eve_org = eve.org_of("eve@example.com").await;
    let csrf = extract_csrf(&eve.get("/billing/payment-methods").await.body);
    for token in [seti.clone(), format!("{seti}/../x"), format!("{seti}%2f..")] {
        eve.post_form("/api/save_card", &[("csrf", &csrf), ("token", &token)]).await;
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM payment_methods WHERE org_id = $1", eve_org).await, 0);
    // Ada's own post still saves it.
    let csrf = extract_csrf(&page);
    app.post_form("/api/save_card", &[("csrf", &csrf), ("token", &seti)]).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM payment_methods WHERE org_id = $1", org).await, 1);
}

#[sqlx::test]
async fn a_new_default_card_replaces_a_payment_waiting_for_the_bank(db: PgPool) {
    let (mut app, _, org, _) = stripe_customer(&db).await;
    save_card(&mut app, THREE_D).await;
    top_up(&mut app, 5000).await;
    let (invoice, charge, pi): (Uuid, Uuid, String) = sqlx::query_as(
        "SELECT invoice_id, id, processor_ref FROM charges WHERE org_id = $1 AND action_required_at IS NOT NULL",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    let before = purchased(&db, org).await;
    // The customer gives up on that card: a new default one pays the same
    // invoice at once, and the waiting payment is canceled at Stripe.
    save_card(&mut app, VISA).await;
    let paid = tollgate::billing::payments::collect(&app.state.billing, invoice, app.clock.now(), tollgate::billing::payments::WAIT)
        .await
        .unwrap();
    assert_eq!(paid, tollgate::billing::payments::Collected::Paid);
    assert_eq!(purchased(&db, org).await, before + 5000);
    let status: String = sqlx::query_scalar("SELECT status FROM charges WHERE id = $1").bind(charge).fetch_one(&db).await.unwrap();
    assert_eq!(status, "failed");
    let (_, at_stripe) = emulator(reqwest::Method::GET, &format!("/v1/payment_intents/{pi}"), None).await;
    assert_eq!(at_stripe["status"], "canceled");
}

#[sqlx::test]
async fn cards_saved_with_the_sandbox_are_not_charged_once_stripe_takes_payments(db: PgPool) {
    let (mut sandbox, _, org) = super::gateway::customer(&db).await;
    super::billing::add_card(&mut sandbox, super::billing::GOOD).await;
    let (mut app, _) = TestApp::with_stripe(db.clone()).await;
    app.sign_in("ada@example.com", PASSWORD).await;
    let page = app.get("/billing/payment-methods").await.body;
    assert!(page.contains("No cards yet."), "{page}");
    let before = purchased(&db, org).await;
    top_up(&mut app, 5000).await;
    assert_eq!(purchased(&db, org).await, before);
    assert_eq!(scalar(&db, "SELECT count(*) FROM charges WHERE org_id = $1", org).await, 0, "nothing was charged on the sandbox card");
    // Stripe's card is the default then, though a sandbox card was one.
    let page = app.get("/billing/payment-methods").await.body;
    let seti = stripe_js_confirms_card(&page, VISA).await.unwrap();
    app.post_form("/api/save_card", &[("csrf", &extract_csrf(&page)), ("token", &seti)]).await;
    let default: String = sqlx::query_scalar("SELECT processor FROM payment_methods WHERE org_id = $1 AND is_default AND processor = 'stripe'")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(default, "stripe");
}

#[sqlx::test]
async fn a_renewal_waiting_for_the_bank_is_paid_at_once_by_a_new_card_without_a_failure_told(db: PgPool) {
    let (mut app, key, org, _) = stripe_customer(&db).await;
    save_card(&mut app, VISA).await;
    super::billing::upgrade(&mut app, "pro").await;
    super::billing::wait_for(&db, org, "active").await;
    save_card(&mut app, THREE_D).await;
    super::billing::renew_past_period_end(&mut app, org).await;
    let waiting = scalar(&db, "SELECT count(*) FROM charges WHERE org_id = $1 AND status = 'pending' AND action_required_at IS NOT NULL", org).await;
    assert_eq!(waiting, 1, "the renewal waits for the bank");
    let (subject, _) = last_email(&db, "ada@example.com").await.unwrap();
    assert_eq!(subject, "Confirm your payment with your bank");
    // A new default card pays the renewal before the page answers.
    let started = std::time::Instant::now();
    let res = save_card(&mut app, VISA).await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(started.elapsed() < Duration::from_secs(6), "the waiting charge was not waited for: {:?}", started.elapsed());
    let renewal: String = sqlx::query_scalar("SELECT status FROM invoices WHERE org_id = $1 AND purpose = 'renewal'")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(renewal, "paid");
    assert_eq!(super::billing::status(&db, org).await, "active");
    let told: i64 = sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE to_address = 'ada@example.com' AND subject = 'Your payment did not go through'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(told, 0, "setting the waiting charge aside is no failure to tell");
    assert_eq!(app.call("GET", "/v1/ping", Some(&key), None, &[]).await.status, 200);
}

#[sqlx::test]
async fn a_charge_the_previous_processor_was_making_fails_so_its_invoice_is_paid_anew(db: PgPool) {
    let (mut sandbox, _, org) = super::gateway::customer(&db).await;
    super::billing::add_card(&mut sandbox, super::billing::GOOD).await;
    // The sandbox's outcome never arrives (its webhook is held), then the
    // installation switches to Stripe.
    sandbox.state.sandbox.hold_deliveries(true);
    top_up(&mut sandbox, 5000).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM charges WHERE org_id = $1 AND status = 'pending'", org).await, 1);
    let (app, _) = TestApp::with_stripe(db.clone()).await;
    let failed = tollgate::billing::payments::fail_other_processors(&app.state.billing, app.clock.now()).await.unwrap();
    assert!(failed >= 1);
    let (status, code): (String, Option<String>) = sqlx::query_as("SELECT status, failure_code FROM charges WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((status.as_str(), code.as_deref()), ("failed", Some("processor_changed")));
    let invoice: String = sqlx::query_scalar("SELECT status FROM invoices WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(invoice, "failed");
}
