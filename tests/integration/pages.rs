use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;

#[sqlx::test]
async fn health_and_readiness(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    let alive = app.get("/healthz").await;
    assert_eq!(alive.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(ready.body.contains("\"database\":\"ok\""));
    db.close().await;
    let down = app.get("/readyz").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test]
async fn every_response_carries_a_request_id(db: PgPool) {
    let mut app = TestApp::new(db).await;
    for path in ["/", "/healthz", "/nope"] {
        let res = app.get(path).await;
        let id = res
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(id.starts_with("req_") && id.len() == 36, "{path}: {id:?}");
    }
}

#[sqlx::test]
async fn unknown_pages_get_a_friendly_404(db: PgPool) {
    let mut app = TestApp::new(db).await;
    let res = app.get("/no/such/page").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.contains("Page not found"));
    assert!(
        res.body.contains("href=\"/docs\""),
        "the shell's navigation is there"
    );
    assert_eq!(
        app.get("/docs/no-such-doc").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/docs/..%2Fsecret").await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn pages_render_complete_on_the_server(db: PgPool) {
    let mut app = TestApp::new(db).await;
    let home = app.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    for link in [
        "/docs",
        "/explorer",
        "/account",
        "/billing",
        "/login",
        "/signup",
    ] {
        assert!(
            home.body.contains(&format!("href=\"{link}\"")),
            "nav link {link}"
        );
    }
    let quickstart = app.get("/docs/quickstart").await;
    assert_eq!(quickstart.status, StatusCode::OK);
    assert!(quickstart.body.contains("<h1 id=\"quickstart\">Quickstart <a class=\"anchor\""));
    assert!(quickstart.body.contains("<table>"));
    let plans = app.get("/billing/plans").await;
    for plan in ["Free", "Pro", "Enterprise", "$29.00", "$499.00"] {
        assert!(plans.body.contains(plan), "{plan}");
    }
}

#[sqlx::test]
async fn signed_in_pages_send_visitors_to_sign_in(db: PgPool) {
    let mut app = TestApp::new(db).await;
    for path in ["/account", "/account/members", "/billing", "/admin"] {
        let res = app.get(path).await;
        assert_eq!(res.status, StatusCode::FOUND, "{path}");
        assert!(
            res.location().starts_with("/login?return_to="),
            "{path}: {}",
            res.location()
        );
    }
}

#[sqlx::test]
async fn demo_data_seeds_plans_an_admin_and_a_customer(db: PgPool) {
    let now = time::OffsetDateTime::now_utc();
    tollgate::demo::seed(&db, now).await.unwrap();
    tollgate::demo::seed(&db, now).await.unwrap(); // idempotent
    let (plans, users, admins): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM plans), (SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE is_platform_admin)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((plans, users, admins), (3, 2, 1));
    let mut app = TestApp::new(db).await;
    let res = app
        .sign_in(
            tollgate::demo::CUSTOMER_EMAIL,
            tollgate::demo::CUSTOMER_PASSWORD,
        )
        .await;
    assert_eq!(res.location(), "/account");
    assert!(app.get("/account").await.body.contains("Demo Co"));
    // Two weeks of calls that moved no credits, once.
    let config = tollgate::config::Config::for_tests();
    tollgate::demo::seed_usage(&app.db, &config, app.clock.now()).await.unwrap();
    tollgate::demo::seed_usage(&app.db, &config, app.clock.now()).await.unwrap();
    let (events, credits, refused): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(credits), 0)::int8, count(*) FILTER (WHERE status = 402) FROM usage_events",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(events > 500 && refused > 10, "{events} {refused}");
    assert_eq!(credits, 0);
    let usage = app.get("/account/usage?span=30d").await;
    assert!(usage.body.contains("data-testid=\"calls-chart\""));
    let log = app.get("/account/logs?class=402").await;
    assert!(log.body.contains("plan_upgrade_required"));
    assert!(tollgate::billing::ledger::audit(&app.db).await.unwrap().is_sound());
}

#[sqlx::test]
async fn every_page_forbids_framing_sniffing_and_injected_script(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    for path in ["/", "/login", "/signup", "/docs", "/no/such/page"] {
        let res = app.get(path).await;
        for (name, value) in [
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
        ] {
            assert_eq!(res.header(name).as_deref(), Some(value), "{path}: {name}");
        }
        assert_eq!(res.header("strict-transport-security"), None, "plain http");
        let csp = res.header("content-security-policy").expect("a policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        // The page's own inline scripts carry the policy's nonce, so they
        // run; script without it does not.
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .unwrap_or_else(|| panic!("{path}: no nonce in {csp}"));
        assert!(nonce.len() >= 16, "{nonce}");
        let scripts = res.body.matches("<script").count();
        let nonced = res.body.matches(&format!("nonce=\"{nonce}\"")).count();
        assert!(scripts > 0, "{path} hydrates");
        assert!(
            nonced >= scripts,
            "{path}: every inline script has the nonce"
        );
    }
    let again = app
        .get("/")
        .await
        .header("content-security-policy")
        .unwrap();
    let first = app
        .get("/")
        .await
        .header("content-security-policy")
        .unwrap();
    assert_ne!(again, first, "a new nonce for every page");
    // API answers and files get the fallback policy.
    let api = app.call("GET", "/v1/ping", None, None, &[]).await;
    assert_eq!(
        api.header("content-security-policy").as_deref(),
        Some(tollgate::http::security::FALLBACK_CSP)
    );
    assert_eq!(api.header("x-frame-options").as_deref(), Some("DENY"));

    let https = tollgate::config::Config {
        public_url: "https://portal.test".parse().unwrap(),
        secure_cookies: true,
        ..tollgate::config::Config::for_tests()
    };
    let mut secure = TestApp::with_config(db, https).await;
    assert!(secure
        .get("/login")
        .await
        .header("strict-transport-security")
        .is_some_and(|v| v.starts_with("max-age=")));
}
