//! Holes found by reading billing and the portal as an attacker would
//! (issue 16): each test here failed on the code before its fix.

use crate::helpers::*;
use sqlx::PgPool;
use std::time::Duration;

/// A signature header of ~95,000 empty `v1=` values over a 60 KiB body used
/// to cost one HMAC of the whole body per value, on an async worker: a few
/// such requests stalled every route. Now it is refused before it is parsed,
/// and the server keeps answering meanwhile.
#[sqlx::test]
async fn a_flood_of_signature_values_is_refused_fast_and_the_server_keeps_answering(db: PgPool) {
    let app = TestApp::new(db).await;
    let url = app.state.sandbox_target().expect("the test app listens").to_string();
    let base = url.trim_end_matches("/webhooks/sandbox").to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = format!("t={now}{}", ",v1=".repeat(95_000));
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(60 * 1024));
    let client = reqwest::Client::new();
    let floods: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, header, body) = (client.clone(), url.clone(), header.clone(), body.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let res = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("tollgate-signature", header)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (res.status(), started.elapsed())
            })
        })
        .collect();
    let health = tokio::time::timeout(Duration::from_secs(5), client.get(format!("{base}/healthz")).send())
        .await
        .expect("/healthz answers while the floods are in flight")
        .unwrap();
    assert_eq!(health.status(), 200);
    for flood in floods {
        let (status, took) = tokio::time::timeout(Duration::from_secs(10), flood)
            .await
            .expect("a flood of signature values is refused within seconds")
            .unwrap();
        assert_eq!(status, 400, "refused by the signature check itself");
        assert!(took < Duration::from_secs(10));
    }
}

/// Static files used to go out uncompressed and uncached (the explorer's
/// script and wasm: 426 KB on every visit). A digest-named file is sent
/// precompressed and cached for a year; a plain name is revalidated; pages
/// stay uncached.
#[sqlx::test]
async fn static_files_go_out_compressed_and_cached_by_their_names(db: PgPool) {
    let site = std::env::temp_dir().join(format!("tollgate-site-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    let script = "export function hello() { return 'hello from the explorer'; }\n".repeat(20);
    let digest = "0123456789abcdef0123";
    for (name, body) in [(format!("pkg/tollgate.{digest}.js"), script.as_str()), ("docs.js".to_string(), script.as_str())] {
        std::fs::write(site.join(&name), body).unwrap();
        // The build's precompressed copies (stand-ins with known bytes).
        std::fs::write(site.join(format!("{name}.br")), b"brotli bytes").unwrap();
        std::fs::write(site.join(format!("{name}.gz")), b"gzip bytes").unwrap();
    }
    std::fs::write(site.join("hash.txt"), format!("js: {digest}\nwasm: {digest}\n")).unwrap();
    let mut config = tollgate::config::Config::for_tests();
    config.site_root = site.to_str().unwrap().to_string();
    let mut app = TestApp::with_config(db, config).await;

    let get = |path: &str, encoding: &str| {
        axum::http::Request::get(path)
            .header("accept-encoding", encoding)
            .header("x-forwarded-for", "203.0.113.7")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let res = app.send(get(&format!("/pkg/tollgate.{digest}.js"), "gzip, deflate, br")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-encoding").as_deref(), Some("br"));
    assert_eq!(res.body, "brotli bytes");
    assert_eq!(res.header("cache-control").as_deref(), Some("public, max-age=31536000, immutable"));
    assert!(res.header("content-type").unwrap().contains("javascript"));
    assert!(res.header("vary").unwrap().to_ascii_lowercase().contains("accept-encoding"));
    let res = app.send(get(&format!("/pkg/tollgate.{digest}.js"), "gzip")).await;
    assert_eq!(res.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(res.body, "gzip bytes");
    let res = app.send(get(&format!("/pkg/tollgate.{digest}.js"), "identity")).await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.body, script);

    // A name without a digest may change: revalidated on every use.
    let res = app.send(get("/docs.js", "br")).await;
    assert_eq!(res.header("content-encoding").as_deref(), Some("br"));
    assert_eq!(res.header("cache-control").as_deref(), Some("no-cache"));

    // The explorer asks for the digest-named files the build listed.
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let explorer = app.get("/explorer").await;
    assert!(explorer.body.contains(&format!("/pkg/tollgate.{digest}.js")), "the page names the digest-named script");
    assert!(explorer.body.contains(&format!("/pkg/tollgate.{digest}.wasm")));
    // Pages stay uncached; a missing file is the 404 page, not cached.
    assert!(!explorer.header("cache-control").unwrap_or_default().contains("immutable"));
    let missing = app.send(get("/pkg/tollgate.ffffffffffffffff.js", "br")).await;
    assert_eq!(missing.status, 404);
    assert!(!missing.header("cache-control").unwrap_or_default().contains("immutable"));
    // No way out of the site's root.
    for path in ["/pkg/..%2f..%2fCargo.toml", "/%2e%2e/Cargo.toml", "/pkg/%5c..%5cCargo.toml"] {
        let res = app.send(get(path, "br")).await;
        assert!(res.status == 404 || res.status == 400, "{path}: {}", res.status);
    }
    std::fs::remove_dir_all(site).ok();
}

/// A panic used to drop the connection: now it answers 500 with the
/// request id (a problem body on the API, a page in the browser), and the
/// server goes on serving.
#[sqlx::test]
async fn a_panic_answers_500_with_the_request_id_and_the_server_goes_on(db: PgPool) {
    let app = TestApp::new(db).await;
    let base = app.state.sandbox_target().unwrap().to_string().replace("/webhooks/sandbox", "");
    let client = reqwest::Client::new();

    let page = client.get(format!("{base}/__tests/panic")).send().await.expect("an answer, not a dropped connection");
    assert_eq!(page.status(), 500);
    let id = page.headers()["request-id"].to_str().unwrap().to_string();
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"), "the security headers still apply");
    let html = page.text().await.unwrap();
    assert!(html.contains("Something went wrong") && html.contains(&id), "{html}");
    assert!(!html.contains("a test handler panics"), "the panic itself stays in the log");

    let api = client.get(format!("{base}/v1/__tests/panic")).send().await.unwrap();
    assert_eq!(api.status(), 500);
    let id = api.headers()["request-id"].to_str().unwrap().to_string();
    assert_eq!(api.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = serde_json::from_str(&api.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], 500);
    assert_eq!(body["request_id"], id);

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A page whose data loading panicked (on a task of its own) never finishes
/// rendering: after the page timeout it answers 500 with the request id
/// rather than leave the browser waiting.
#[sqlx::test]
async fn a_page_that_never_finishes_answers_500_after_the_page_timeout(db: PgPool) {
    let mut config = tollgate::config::Config::for_tests();
    config.page_timeout = Duration::from_millis(300);
    let app = TestApp::with_config(db, config).await;
    let base = app.state.sandbox_target().unwrap().to_string().replace("/webhooks/sandbox", "");
    let res = tokio::time::timeout(Duration::from_secs(10), reqwest::get(format!("{base}/__tests/never")))
        .await
        .expect("an answer, not a wait")
        .unwrap();
    assert_eq!(res.status(), 500);
    let id = res.headers()["request-id"].to_str().unwrap().to_string();
    assert!(res.text().await.unwrap().contains(&id));
}

/// The text of the element whose `data-testid` is `id`.
fn testid(html: &str, id: &str) -> String {
    let marker = format!("data-testid=\"{id}\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {id}")) + marker.len();
    let end = html[start..].find('<').unwrap();
    html[start..start + end].trim().to_string()
}

/// After a period ends and before anything moves the lapsed credits, the
/// keys page used to show included credits that /billing showed as lapsed.
/// One function (`ledger::spendable`) says what can be spent now; the pages
/// and the gateway agree with it.
#[sqlx::test]
async fn the_pages_and_the_gateway_agree_on_what_can_be_spent_after_a_period_ends(db: PgPool) {
    let (mut app, key, org) = crate::gateway::customer(&db).await;
    let before = tollgate::billing::ledger::spendable(&db, org, app.clock.now()).await.unwrap();
    assert_eq!(before.included, 100, "the Free plan's credits");
    let expires: time::OffsetDateTime = sqlx::query_scalar("SELECT included_expires_at FROM org_meters WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    app.clock.advance(expires - app.clock.now() + time::Duration::seconds(1));
    let now = tollgate::billing::ledger::spendable(&db, org, app.clock.now()).await.unwrap();
    assert_eq!(now.included, 0, "lapsed at the period's end");
    let keys = app.get("/account/keys").await.body;
    assert_eq!(testid(&keys, "live-credits"), now.live().to_string(), "the keys page");
    let billing = app.get("/billing").await.body;
    assert!(testid(&billing, "included-credits").starts_with(&now.included.to_string()), "the billing page");
    // The gateway agrees: a free call reports the same balance.
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.header("tollgate-credits-remaining"), Some(now.live().to_string()));
}

/// The explorer's keys and the docs' samples judged keys by the database's
/// clock, not the server's (which the gateway uses): a rotated key still in
/// its overlap by the server's clock was hidden.
#[sqlx::test]
async fn the_explorer_lists_keys_by_the_servers_clock(db: PgPool) {
    let (mut app, _, org) = crate::gateway::customer(&db).await;
    // A key valid for a day by the server's clock (the tests' clock is days
    // behind the database's).
    let until = app.clock.now() + time::Duration::days(1);
    sqlx::query("UPDATE api_keys SET expires_at = $2 WHERE org_id = $1")
        .bind(org)
        .bind(until)
        .execute(&db)
        .await
        .unwrap();
    let db_now: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(&db).await.unwrap();
    assert!(db_now > until, "the database's clock is past the key's end; the server's is not");
    let explorer = app.get("/explorer").await.body;
    assert!(explorer.contains("server (tg_live_"), "the explorer offers the key the gateway still takes");
}

/// The sandbox used to refill without limit, whatever the subscription's
/// state. Refills are a few a day, and only in good standing.
#[sqlx::test]
async fn sandbox_refills_are_limited_and_need_a_subscription_in_good_standing(db: PgPool) {
    use tollgate::billing::topups::{refill_sandbox, Refill};
    let (app, _, org) = crate::gateway::customer(&db).await;
    let drain = |db: PgPool| async move {
        // Spend the sandbox through the ledger, as test calls do.
        let mut conn = db.acquire().await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT sandbox FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&mut *conn).await.unwrap();
        tollgate::billing::ledger::post(
            &mut conn,
            tollgate::billing::ledger::Posting {
                org,
                kind: tollgate::billing::ledger::Kind::SandboxUsage,
                key: &format!("test-drain:{}", uuid::Uuid::now_v7()),
                entries: &[(tollgate::billing::ledger::Account::Sandbox, -left), (tollgate::billing::ledger::Account::SandboxSink, left)],
                memo: "test calls",
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    };
    let now = app.clock.now();
    assert_eq!(refill_sandbox(&db, org, None, now).await.unwrap(), Refill::Full);
    for _ in 0..tollgate::billing::policy::SANDBOX_REFILLS_PER_DAY {
        drain(db.clone()).await;
        assert!(matches!(refill_sandbox(&db, org, None, now).await.unwrap(), Refill::Added(_)));
    }
    drain(db.clone()).await;
    assert!(matches!(refill_sandbox(&db, org, None, now).await.unwrap(), Refill::Limit(_)), "a few a day");
    assert!(matches!(refill_sandbox(&db, org, None, now + time::Duration::hours(25)).await.unwrap(), Refill::Added(_)), "and again the next day");
    // Not while unpaid.
    drain(db.clone()).await;
    sqlx::query("UPDATE subscriptions SET status = 'unpaid' WHERE org_id = $1").bind(org).execute(&db).await.unwrap();
    assert_eq!(refill_sandbox(&db, org, None, now + time::Duration::days(3)).await.unwrap(), Refill::NotInGoodStanding);
}

/// Every sign-up used to get a 14-day Pro trial with no card and no
/// confirmed address, as often as it liked. A trial needs a confirmed
/// address or a card, and each address and each card gets one trial.
#[sqlx::test]
async fn a_trial_needs_a_confirmed_address_or_a_card_and_each_gets_one(db: PgPool) {
    let status = |db: PgPool, org: uuid::Uuid| async move {
        sqlx::query_scalar::<_, String>("SELECT status FROM subscriptions WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap()
    };
    async fn start_trial(app: &mut TestApp) -> String {
        let csrf = extract_csrf(&app.get("/billing/plans").await.body);
        app.post_form("/api/start_trial", &[("csrf", &csrf), ("plan", "pro")]).await;
        decode_html(&app.get("/billing/plans").await.body)
    }
    let mut ada = TestApp::new(db.clone()).await;
    ada.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let org = ada.org_of("ada@example.com").await;
    // Signed up: the link is in the outbox; the account page asks for it.
    let account = ada.get("/account").await.body;
    assert!(account.contains("data-testid=\"verify-email\""), "the account page asks to confirm the address");
    let page = start_trial(&mut ada).await;
    assert!(page.contains("Confirm your email address first"), "no trial without a confirmed address or a card");
    assert_eq!(status(db.clone(), org).await, "active");

    // A second link at once is throttled; a minute later it goes.
    let csrf = extract_csrf(&ada.get("/account").await.body);
    ada.post_form("/api/resend_verification", &[("csrf", &csrf)]).await;
    assert!(decode_html(&ada.get("/account").await.body).contains("you can ask for another in"));
    ada.clock.advance(time::Duration::minutes(2));
    ada.post_form("/api/resend_verification", &[("csrf", &csrf)]).await;
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE kind = 'email_verification'").fetch_one(&db).await.unwrap();
    assert_eq!(links, 2, "the sign-up's link and one more");

    // The link confirms, once; the trial starts.
    let (_, body) = last_email(&db, "ada@example.com").await.unwrap();
    let link = link_path(&body);
    let confirmed = decode_html(&ada.get(&link).await.body);
    assert!(confirmed.contains("Your email address is confirmed"), "{confirmed}");
    let again = decode_html(&ada.get(&link).await.body);
    assert!(again.contains("This link is invalid, used already or expired"));
    assert!(!ada.get("/account").await.body.contains("data-testid=\"verify-email\""));
    start_trial(&mut ada).await;
    assert_eq!(status(db.clone(), org).await, "trialing");

    // The same mailbox under a `+tag`, in an organization of its own: one
    // trial per mailbox.
    let mut tagged = ada.other_browser();
    tagged.sign_up("Ada Again", "ada+again@example.com", PASSWORD).await;
    let tagged_org = tagged.org_of("ada+again@example.com").await;
    verify_email(&mut tagged, "ada+again@example.com").await;
    let page = start_trial(&mut tagged).await;
    assert!(page.contains("This email address has had a free trial already"), "a +tag is the same mailbox");
    assert_eq!(status(db.clone(), tagged_org).await, "active");
    // Another person with the same card: one trial per card.
    let mut bob = ada.other_browser();
    bob.sign_up("Bob", "bob@example.com", PASSWORD).await;
    let bob_org = bob.org_of("bob@example.com").await;
    let csrf = extract_csrf(&bob.get("/billing/payment-methods").await.body);
    let card = [("csrf", csrf.as_str()), ("number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "2030"), ("cvc", "123"), ("name", "Bob"), ("make_default", "on")];
    bob.post_form("/api/add_card", &card).await;
    start_trial(&mut bob).await;
    assert_eq!(status(db.clone(), bob_org).await, "trialing", "a card stands for a confirmed address");
    let mut cy = ada.other_browser();
    cy.sign_up("Cy", "cy@example.com", PASSWORD).await;
    let cy_org = cy.org_of("cy@example.com").await;
    let csrf = extract_csrf(&cy.get("/billing/payment-methods").await.body);
    let card = [("csrf", csrf.as_str()), ("number", "4242424242424242"), ("exp_month", "11"), ("exp_year", "2031"), ("cvc", "999"), ("name", "Cy"), ("make_default", "on")];
    cy.post_form("/api/add_card", &card).await;
    let page = start_trial(&mut cy).await;
    assert!(page.contains("This card has had a free trial already"), "one trial per card");
    assert_eq!(status(db.clone(), cy_org).await, "active");
}

/// Whether live keys need a confirmed address is the operator's setting.
#[sqlx::test]
async fn live_keys_can_be_made_to_wait_for_a_confirmed_address(db: PgPool) {
    let mut config = tollgate::config::Config::for_tests();
    config.live_keys_need_verified_email = true;
    let mut app = TestApp::with_config(db.clone(), config).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let csrf = extract_csrf(&app.get("/account/keys").await.body);
    app.post_form("/api/create_api_key", &[("csrf", &csrf), ("name", "server"), ("mode", "live"), ("scopes[0]", "*"), ("expires_in_days", "never")]).await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys").fetch_one(&db).await.unwrap();
    assert_eq!(keys, 0);
    assert!(decode_html(&app.get("/account/keys").await.body).contains("Confirm your email address before creating a live key"));
    app.post_form("/api/create_api_key", &[("csrf", &csrf), ("name", "sandbox"), ("mode", "test"), ("scopes[0]", "*"), ("expires_in_days", "never")]).await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys").fetch_one(&db).await.unwrap();
    assert_eq!(keys, 1, "test keys work at once");
    verify_email(&mut app, "ada@example.com").await;
    app.post_form("/api/create_api_key", &[("csrf", &csrf), ("name", "server"), ("mode", "live"), ("scopes[0]", "*"), ("expires_in_days", "never")]).await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE mode = 'live'").fetch_one(&db).await.unwrap();
    assert_eq!(keys, 1);
}

/// A built-in call whose `gateway_authorize` committed but whose answer
/// never arrived (the connection dropped) used to answer "not charged" and
/// keep the charge. It is reconciled: the charge goes back, once; a call
/// that charged nothing gets nothing back.
#[sqlx::test]
async fn a_charge_whose_answer_was_lost_goes_back_once(db: PgPool) {
    let (app, key, org) = crate::gateway::customer(&db).await;
    let hash: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_keys WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let live = |db: PgPool| async move { tollgate::billing::ledger::balances(&db, org).await.unwrap().live() };
    let before = live(db.clone()).await;
    let now = app.clock.now();
    // The charge commits, as for a call whose connection then dropped.
    sqlx::query("SELECT * FROM gateway_authorize($1, 'sentiment', 'text', 1, $2, 'req_lost', NULL, NULL)")
        .bind(&hash)
        .bind(now)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(live(db.clone()).await, before - 1);
    let quick = [std::time::Duration::ZERO];
    let back = tollgate::gateway::reconcile_unanswered(db.clone(), "req_lost".into(), 1, now, &quick).await;
    assert_eq!(back, Some(before));
    assert_eq!(live(db.clone()).await, before);
    // Again (another instance, a retry): nothing more moves.
    tollgate::gateway::reconcile_unanswered(db.clone(), "req_lost".into(), 1, now, &quick).await;
    assert_eq!(live(db.clone()).await, before);
    // A call that never charged gets nothing.
    assert_eq!(tollgate::gateway::reconcile_unanswered(db.clone(), "req_never".into(), 5, now, &quick).await, None);
    assert_eq!(live(db.clone()).await, before);

    // Durably: a charged built-in call is held until its answer's usage
    // event is written. An answered call's hold goes with its event ...
    let mut app = app;
    let res = app.call("POST", "/v1/text/sentiment", Some(&key), Some(r#"{"text":"great"}"#), &[]).await;
    assert_eq!(res.status, 200);
    app.state.gateway.usage.flush().await;
    let holds = |db: PgPool| async move { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM gateway_holds").fetch_one(&db).await.unwrap() };
    assert_eq!(holds(db.clone()).await, 0, "answered: settled with its usage event");
    let served = live(db.clone()).await;
    assert_eq!(served, before - 1, "and charged");
    // ... and one whose answer never went out (the instance stopped) is given
    // back by the holds job once its deadline has passed.
    sqlx::query("SELECT * FROM gateway_authorize($1, 'sentiment', 'text', 1, $2, 'req_crashed', NULL, $3)")
        .bind(&hash)
        .bind(now)
        .bind(now + time::Duration::minutes(2))
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(live(db.clone()).await, served - 1);
    assert_eq!(tollgate::gateway::holds::settle_lapsed(&db, now).await.unwrap(), 0, "not before its deadline");
    sqlx::query("UPDATE gateway_holds SET settle_after = clock_timestamp() - interval '1 second'").execute(&db).await.unwrap();
    assert_eq!(tollgate::gateway::holds::settle_lapsed(&db, now).await.unwrap(), 1);
    assert_eq!(live(db.clone()).await, served);
}
