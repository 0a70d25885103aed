//! Provider routes: added by an admin in the browser form, proxied over real
//! HTTP to a real upstream server, priced fixed or metered, and released in
//! full when the upstream fails.

use crate::gateway::{assert_ledger_balanced, customer};
use crate::helpers::*;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tollgate::billing::ledger::{Account, Kind, Posting};
use uuid::Uuid;

/// A provider's API on a real port: echoes what reaches it, reports costs,
/// fails and stalls on request.
async fn upstream() -> String {
    async fn echo(req: Request) -> Json<serde_json::Value> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let header = |n: &str| {
            parts
                .headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
        };
        Json(serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "body": String::from_utf8_lossy(&body),
            "authorization": header("authorization"),
            "cookie": header("cookie"),
            "simulate": header("tollgate-simulate"),
            "organization": header("tollgate-organization"),
            "key_mode": header("tollgate-key-mode"),
            "plan": header("tollgate-plan"),
            "request_id": header("tollgate-request-id"),
            "custom": header("x-custom"),
            "hop": header("x-hop"),
            "accept_encoding": header("accept-encoding"),
            "real_ip": header("x-real-ip"),
            "forwarded_for": header("x-forwarded-for"),
        }))
    }
    async fn tokens(Query(q): Query<HashMap<String, i64>>) -> Json<serde_json::Value> {
        Json(serde_json::json!({"choices": [], "usage": {"total_tokens": q["t"]}}))
    }
    async fn cost(Query(q): Query<HashMap<String, String>>) -> Response {
        ([("tollgate-cost", q["c"].clone())], "counted").into_response()
    }
    async fn huge() -> Response {
        let pad = "x".repeat(9 * 1024 * 1024);
        let body = format!(r#"{{"usage":{{"total_tokens":1}},"pad":"{pad}"}}"#);
        ([("content-type", "application/json")], body).into_response()
    }
    async fn stream() -> Response {
        let chunks = (0..50).map(|i| Ok::<_, std::io::Error>(format!("chunk {i}\n")));
        Body::from_stream(futures_util::stream::iter(chunks)).into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Redirects, and headers only the gateway may set.
    let moved = move || async move {
        let headers = [
            ("location", format!("http://{addr}/api/echo/next?x=1")),
            ("set-cookie", "tollgate_session=stolen; Path=/".into()),
            ("request-id", "upstream-made-up".into()),
            ("tollgate-warning", "forged".into()),
            ("ratelimit", "forged".into()),
            // Browser policies on the portal's origin: never the upstream's.
            ("clear-site-data", "\"*\"".into()),
            ("refresh", "0; url=https://evil.example/".into()),
            ("link", "<https://evil.example/x.js>; rel=preload; as=script".into()),
            ("content-security-policy", "default-src *".into()),
            ("access-control-allow-origin", "*".into()),
            ("permissions-policy", "camera=*".into()),
            ("x-frame-options", "ALLOWALL".into()),
            // The API's own data passes.
            ("x-upstream-version", "7".into()),
            ("cache-control", "private, max-age=5".into()),
        ];
        (StatusCode::FOUND, headers)
    };
    let away = move || async move {
        let location = format!("http://{addr}/internal/admin");
        (StatusCode::FOUND, [("location", location)])
    };
    // Scheme-relative locations: elsewhere on the host, and below the route.
    let schemeless = move || async move {
        (
            StatusCode::FOUND,
            [("location", format!("//{addr}/internal/admin"))],
        )
    };
    let schemeless_below = move || async move {
        (
            StatusCode::FOUND,
            [("location", format!("//{addr}/api/echo/y"))],
        )
    };
    let app = Router::new()
        .route("/api/echo/{*rest}", any(echo))
        .route("/api/moved", get(moved))
        .route("/api/away", get(away))
        .route("/api/schemeless", get(schemeless))
        .route("/api/schemeless-below", get(schemeless_below))
        .route("/api/tokens", get(tokens))
        .route("/api/cost", get(cost))
        .route("/api/stream", get(stream))
        .route("/api/test-stream", get(stream))
        .route("/api/huge", get(huge))
        .route(
            "/api/bad",
            get(|| async { (StatusCode::BAD_REQUEST, "no such model") }),
        )
        .route(
            "/api/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api")
}

/// A platform admin signed in, in their own browser.
pub(crate) async fn admin_of(app: &TestApp) -> TestApp {
    std::env::set_var("TOLLGATE_ADMIN_PASSWORD", "operator password");
    tollgate::cli::create_admin(&app.db, "ops@example.com", "Operator")
        .await
        .unwrap();
    let mut ops = app.other_browser();
    ops.sign_in("ops@example.com", "operator password").await;
    ops
}

/// Adds a route through the admin form, as an admin in a browser does.
pub(crate) async fn add_route(ops: &mut TestApp, fields: &[(&str, &str)]) -> TestResponse {
    let csrf = extract_csrf(&ops.get("/admin/routes").await.body);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let res = ops.post_form("/api/save_route", &all).await;
    assert_eq!(res.location(), "/admin/routes");
    ops.get("/admin/routes").await
}

fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

pub(crate) async fn balance(db: &PgPool, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT included + purchased FROM org_meters WHERE org_id = $1")
        .bind(org)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn an_admin_adds_a_route_and_calls_are_proxied_and_charged(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let page = add_route(
        &mut ops,
        &[
            ("path_prefix", "/v1/models"),
            ("upstream_url", &format!("{up}/echo")),
            ("endpoint", "models"),
            ("scope", "models"),
            ("pricing", "fixed"),
            ("price", "3"),
            ("description", "Model inference"),
        ],
    )
    .await;
    assert!(
        page.body.contains("Calls to /v1/models now go to"),
        "{}",
        page.body
    );
    assert!(page.body.contains("3 credits per call"));
    let before = balance(&db, org).await;

    let res = app
        .call(
            "POST",
            "/v1/models/gpt/run?temperature=0",
            Some(&key),
            Some(r#"{"prompt":"hi"}"#),
            &[
                ("x-custom", "kept"),
                ("x-real-ip", "10.0.0.1"),
                ("cookie", "tollgate_session=secret"),
                ("connection", "x-hop"),
                ("x-hop", "this connection only"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let seen = res.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/echo/gpt/run");
    assert_eq!(seen["query"], "temperature=0");
    assert_eq!(seen["body"], r#"{"prompt":"hi"}"#);
    assert_eq!(seen["custom"], "kept");
    assert_eq!(
        seen["hop"],
        serde_json::Value::Null,
        "headers named in Connection stay behind"
    );
    assert!(seen["forwarded_for"].is_string());
    assert_eq!(
        seen["authorization"],
        serde_json::Value::Null,
        "the key never reaches the upstream"
    );
    assert_eq!(seen["cookie"], serde_json::Value::Null);
    assert_eq!(seen["organization"], org.to_string());
    assert_eq!(seen["key_mode"], "live");
    assert_eq!(seen["plan"], "free");
    assert_eq!(
        seen["request_id"].as_str(),
        res.header("request-id").as_deref()
    );
    assert_eq!(res.header("tollgate-credits-charged").as_deref(), Some("3"));
    assert_eq!(
        res.header("tollgate-credits-remaining"),
        Some((before - 3).to_string())
    );
    assert!(res.header("ratelimit").is_some());
    assert_eq!(balance(&db, org).await, before - 3);

    app.state.gateway.usage.flush().await;
    let (endpoint, status, credits): (String, i16, i64) =
        sqlx::query_as("SELECT endpoint, status, credits FROM usage_events WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((endpoint.as_str(), status, credits), ("models", 200, 3));
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'route.created'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(audited, 1);

    // The route is in the OpenAPI document, with its price and problems.
    let openapi: serde_json::Value =
        serde_json::from_str(&app.get("/openapi.json").await.body).unwrap();
    let op = &openapi["paths"]["/v1/models/{path}"]["post"];
    assert_eq!(op["operationId"], "models_post");
    assert!(op["description"]
        .as_str()
        .unwrap()
        .contains("3 credits per call"));
    assert!(
        op["responses"]["502"]["content"]["application/problem+json"]["examples"]
            .get("upstream_failed")
            .is_some()
    );

    // `.` and `..` segments never reach the upstream, however they are spelled.
    for sneaky in [
        "/v1/models/../../admin",
        "/v1/models/%2e%2E/secret",
        "/v1/models/./x",
    ] {
        let res = app.call("GET", sneaky, Some(&key), None, &[]).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{sneaky}");
        assert_eq!(res.json()["code"], "invalid_path", "{sneaky}");
    }

    // A segment that only starts like the prefix is not the route.
    let other = app.call("GET", "/v1/modelsx", Some(&key), None, &[]).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn metered_routes_capture_what_the_upstream_reports_and_release_the_rest(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    for (prefix, path) in [
        ("/v1/llm", "/tokens"),
        ("/v1/counted", "/cost"),
        ("/v1/huge", "/huge"),
    ] {
        add_route(
            &mut ops,
            &[
                ("path_prefix", prefix),
                ("upstream_url", &format!("{up}{path}")),
                ("endpoint", &prefix[4..]),
                ("scope", "ai"),
                ("pricing", "metered"),
                ("price", "20"),
                ("rate_per_1k", "2"),
            ],
        )
        .await;
    }
    let start = balance(&db, org).await;
    // 1,500 tokens at 2 credits per 1,000: 3 credits (rounded up), 17 released.
    let llm = app
        .call("GET", "/v1/llm?t=1500", Some(&key), None, &[])
        .await;
    assert_eq!(llm.status, StatusCode::OK, "{}", llm.body);
    assert_eq!(llm.json()["usage"]["total_tokens"], 1500);
    assert_eq!(llm.header("tollgate-credits-charged").as_deref(), Some("3"));
    assert_eq!(balance(&db, org).await, start - 3);
    // A Tollgate-Cost header is taken as it is, and not passed on.
    let counted = app
        .call("GET", "/v1/counted?c=7", Some(&key), None, &[])
        .await;
    assert_eq!(counted.body, "counted");
    assert_eq!(counted.header("tollgate-cost"), None);
    assert_eq!(
        counted.header("tollgate-credits-charged").as_deref(),
        Some("7")
    );
    // Never more than was reserved.
    let capped = app
        .call("GET", "/v1/counted?c=500", Some(&key), None, &[])
        .await;
    assert_eq!(
        capped.header("tollgate-credits-charged").as_deref(),
        Some("20")
    );
    assert_eq!(balance(&db, org).await, start - 30);
    assert_eq!(
        capped.header("tollgate-credits-remaining"),
        Some((start - 30).to_string())
    );
    // An answer too large to read for its usage is passed on whole, and the
    // reservation is captured.
    let huge = app.call("GET", "/v1/huge", Some(&key), None, &[]).await;
    assert_eq!(huge.status, StatusCode::OK);
    assert!(huge.body.len() > 9 * 1024 * 1024);
    assert!(huge.body.ends_with("xx\"}"));
    assert_eq!(
        huge.header("tollgate-credits-charged").as_deref(),
        Some("20")
    );
    assert_eq!(balance(&db, org).await, start - 50);
    // A reservation the balance cannot cover is refused before the upstream is called.
    let spent: i64 = start - 50;
    let mut conn = db.acquire().await.unwrap();
    tollgate::billing::ledger::post(
        &mut conn,
        Posting {
            org,
            kind: Kind::Adjustment,
            key: "drain",
            entries: &[
                (Account::Included, -(spent - 5)),
                (Account::Adjustments, spent - 5),
            ],
            memo: "test",
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let short = app.call("GET", "/v1/llm?t=1", Some(&key), None, &[]).await;
    assert_eq!(short.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(short.json()["code"], "insufficient_credits");
    assert_eq!(short.json()["required"]["amount"], "20");
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn upstream_failures_are_502_or_504_and_cost_nothing(db: PgPool) {
    let up = upstream().await;
    // A port with nothing listening on it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let routes = [
        ("/v1/boom", format!("{up}/boom")),
        ("/v1/slow", format!("{up}/slow")),
        ("/v1/gone", format!("http://{closed}/api")),
        ("/v1/bad", format!("{up}/bad")),
    ];
    for (prefix, url) in &routes {
        add_route(
            &mut ops,
            &[
                ("path_prefix", prefix),
                ("upstream_url", url),
                ("endpoint", &prefix[4..]),
                ("scope", "ops"),
                ("pricing", "fixed"),
                ("price", "5"),
                ("timeout_ms", "300"),
            ],
        )
        .await;
    }
    let start = balance(&db, org).await;
    for (path, status, code) in [
        ("/v1/boom", StatusCode::BAD_GATEWAY, "upstream_failed"),
        ("/v1/gone", StatusCode::BAD_GATEWAY, "upstream_failed"),
        ("/v1/slow", StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
    ] {
        let res = app.call("GET", path, Some(&key), None, &[]).await;
        assert_eq!(res.status, status, "{path}: {}", res.body);
        assert_eq!(
            res.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        let body = res.json();
        assert_eq!(body["code"], code);
        assert!(body["type"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/docs/errors/{code}")));
        assert_eq!(
            res.header("tollgate-credits-remaining"),
            Some(start.to_string()),
            "{path}: the reservation went back"
        );
        assert_eq!(balance(&db, org).await, start);
        if path != "/v1/gone" {
            let mut snapshot = body.clone();
            snapshot["request_id"] = "[request_id]".into();
            insta::assert_json_snapshot!(code, snapshot);
        }
    }
    // The upstream refused the call itself: passed on, not charged.
    let bad = app.call("GET", "/v1/bad", Some(&key), None, &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body, "no such model");
    assert_eq!(bad.header("tollgate-credits-charged").as_deref(), Some("0"));
    assert_eq!(balance(&db, org).await, start);

    app.state.gateway.usage.flush().await;
    let rows: Vec<(String, i16, Option<String>, i64)> = sqlx::query_as(
        "SELECT endpoint, status, problem_code, credits FROM usage_events WHERE org_id = $1 ORDER BY endpoint",
    )
    .bind(org)
    .fetch_all(&db)
    .await
    .unwrap();
    let rows: Vec<_> = rows
        .iter()
        .map(|(e, s, c, n)| (e.as_str(), *s, c.as_deref(), *n))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("bad", 400, None, 0),
            ("boom", 502, Some("upstream_failed"), 0),
            ("gone", 502, Some("upstream_failed"), 0),
            ("slow", 504, Some("upstream_timeout"), 0),
        ]
    );
    // Each reservation and its release are in the ledger, and cancel out.
    let net: Option<i64> = sqlx::query_scalar(
        "SELECT sum(amount)::bigint FROM ledger_entries WHERE org_id = $1 AND account = 'revenue'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(net, Some(0));
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn routes_honour_plans_scopes_test_keys_and_streaming(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    add_route(
        &mut ops,
        &[
            ("path_prefix", "/v1/premium"),
            ("upstream_url", &format!("{up}/echo")),
            ("endpoint", "premium"),
            ("scope", "premium"),
            ("pricing", "fixed"),
            ("price", "1"),
            ("plans[0]", "pro"),
        ],
    )
    .await;
    add_route(
        &mut ops,
        &[
            ("path_prefix", "/v1/feed"),
            ("upstream_url", &format!("{up}/stream")),
            // Test keys go here, never to the live upstream.
            ("test_upstream_url", &format!("{up}/test-stream")),
            ("endpoint", "feed"),
            ("scope", "feed"),
            ("pricing", "fixed"),
            ("price", "1"),
        ],
    )
    .await;
    let upgrade = app
        .call("GET", "/v1/premium/x", Some(&key), None, &[])
        .await;
    assert_eq!(upgrade.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(upgrade.json()["code"], "plan_upgrade_required");
    assert_eq!(upgrade.json()["required_plan"], "pro");

    // The keys page offers the routes' scopes; a key with only `premium` cannot call /v1/feed.
    let keys = app.get("/account/keys").await;
    assert!(keys.body.contains("/v1/feed"), "{}", keys.body);
    let narrow = app
        .create_key("narrow", "test", &["premium"], "never")
        .await;
    let forbidden = app.call("GET", "/v1/feed", Some(&narrow), None, &[]).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json()["code"], "scope_forbidden");

    // Test keys spend the sandbox; Tollgate-Simulate answers without calling the upstream.
    let test_key = app.create_key("sandbox", "test", &["feed"], "never").await;
    let sandbox = |db: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT sandbox FROM org_meters WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let before = sandbox(db.clone()).await;
    let streamed = app
        .call("GET", "/v1/feed", Some(&test_key), None, &[])
        .await;
    assert_eq!(streamed.status, StatusCode::OK);
    let expected: String = (0..50).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(streamed.body, expected, "the whole streamed body arrives");
    assert_eq!(sandbox(db.clone()).await, before - 1);
    let simulated = app
        .call(
            "GET",
            "/v1/feed",
            Some(&test_key),
            None,
            &[("tollgate-simulate", "upstream_timeout")],
        )
        .await;
    assert_eq!(simulated.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(simulated.json()["code"], "upstream_timeout");
    assert_eq!(sandbox(db.clone()).await, before - 1);

    // Turned off, the route answers 404 at once.
    let page = ops.get("/admin/routes").await;
    let id: Uuid = sqlx::query_scalar("SELECT id FROM routes WHERE path_prefix = '/v1/feed'")
        .fetch_one(&db)
        .await
        .unwrap();
    let csrf = extract_csrf(&page.body);
    let off = ops
        .post_form(
            "/api/set_route_active",
            &[
                ("csrf", &csrf),
                ("route_id", &id.to_string()),
                ("active", "false"),
            ],
        )
        .await;
    assert_eq!(off.location(), "/admin/routes");
    assert!(ops
        .get("/admin/routes")
        .await
        .body
        .contains("its calls now answer 404"));
    let gone = app
        .call("GET", "/v1/feed", Some(&test_key), None, &[])
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn the_route_form_explains_bad_input_and_keeps_it(db: PgPool) {
    let (app, _, _) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let page = add_route(
        &mut ops,
        &[
            ("path_prefix", "/v1/text"),
            ("upstream_url", "ftp://files.internal"),
            ("endpoint", "Chat Bot"),
            ("scope", "chat"),
            ("pricing", "fixed"),
            ("price", "-1"),
            ("plans[0]", "platinum"),
        ],
    )
    .await;
    let body = decode_html(&page.body);
    assert!(
        body.contains("/v1/text/sentiment is a built-in endpoint"),
        "{body}"
    );
    assert!(body.contains("Give an http:// or https:// URL"));
    assert!(body.contains("Use up to 40 lowercase letters"));
    assert!(body.contains("A whole number of credits from 0 to 1000000."));
    assert!(body.contains("There is no plan \"platinum\"."));
    assert!(
        body.contains("value=\"ftp://files.internal\""),
        "what was typed is kept"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM routes")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);

    // Customers cannot add routes, nor see the page.
    let mut customer = app;
    assert_eq!(
        customer.get("/admin/routes").await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = customer.csrf().await;
    let res = customer
        .post_form(
            "/api/save_route",
            &[
                ("csrf", &csrf),
                ("path_prefix", "/v1/mine"),
                ("upstream_url", "http://127.0.0.1:1"),
                ("endpoint", "mine"),
                ("scope", "mine"),
                ("pricing", "fixed"),
                ("price", "0"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/admin/routes");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM routes")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn a_route_added_elsewhere_reaches_a_running_instance(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, _) = customer(&db).await;
    let shutdown = tollgate::shutdown::Shutdown::default();
    let follower = tokio::spawn(tollgate::gateway::routes::follow(
        db.clone(),
        app.state.gateway.routes.clone(),
        shutdown.clone(),
    ));
    // Added by the command line (another process, as far as this instance knows).
    let input = tollgate::gateway::routes::NewRoute {
        path_prefix: "/v1/elsewhere".into(),
        upstream_url: format!("{up}/echo"),
        endpoint: "elsewhere".into(),
        scope: "elsewhere".into(),
        pricing: "fixed".into(),
        price: "0".into(),
        ..Default::default()
    };
    tollgate::gateway::routes::create(&db, None, input, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let mut status = StatusCode::NOT_FOUND;
    for _ in 0..100 {
        status = app
            .call("GET", "/v1/elsewhere/x", Some(&key), None, &[])
            .await
            .status;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "the notification reloaded the route table"
    );
    shutdown.trigger();
    follower.await.unwrap();
}

#[sqlx::test]
async fn upstream_redirects_and_headers_cannot_speak_for_the_gateway(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, _) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    add_route(
        &mut ops,
        &[
            ("path_prefix", "/v1/up"),
            ("upstream_url", &up),
            ("endpoint", "up"),
            ("scope", "up"),
            ("pricing", "metered"),
            ("price", "1"),
        ],
    )
    .await;
    let moved = app.call("GET", "/v1/up/moved", Some(&key), None, &[]).await;
    assert_eq!(moved.status, StatusCode::FOUND);
    assert_eq!(
        moved.header("location").as_deref(),
        Some("http://portal.test/v1/up/echo/next?x=1"),
        "a redirect below the upstream URL goes through the gateway"
    );
    assert_eq!(
        moved.header("set-cookie"),
        None,
        "no cookies on the portal's domain"
    );
    assert!(moved.header("request-id").unwrap().starts_with("req_"));
    assert_eq!(moved.header("tollgate-warning"), None);
    for policy in ["clear-site-data", "refresh", "link", "access-control-allow-origin", "permissions-policy"] {
        assert_eq!(moved.header(policy), None, "{policy} is never the upstream's to set");
    }
    assert_ne!(moved.header("content-security-policy").as_deref(), Some("default-src *"));
    assert_eq!(moved.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(moved.header("x-upstream-version").as_deref(), Some("7"), "the API's own headers pass");
    assert_eq!(moved.header("cache-control").as_deref(), Some("private, max-age=5"));
    let ratelimit = moved
        .header("ratelimit")
        .expect("the gateway's own RateLimit");
    assert!(ratelimit.starts_with("\"plan\";r="), "{ratelimit}");
    let schemeless = app
        .call("GET", "/v1/up/schemeless", Some(&key), None, &[])
        .await;
    assert_eq!(schemeless.status, StatusCode::FOUND);
    assert_eq!(
        schemeless.header("location"),
        None,
        "a scheme-relative location to the upstream's other paths is dropped too"
    );
    let below = app
        .call("GET", "/v1/up/schemeless-below", Some(&key), None, &[])
        .await;
    assert_eq!(
        below.header("location").as_deref(),
        Some("http://portal.test/v1/up/echo/y")
    );
    let away = app.call("GET", "/v1/up/away", Some(&key), None, &[]).await;
    assert_eq!(away.status, StatusCode::FOUND);
    assert_eq!(
        away.header("location"),
        None,
        "the upstream's other paths stay hidden"
    );
    // A metered route asks for an uncompressed answer, to read its usage.
    let echo = app
        .call(
            "GET",
            "/v1/up/echo/x",
            Some(&key),
            None,
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(echo.json()["accept_encoding"], "identity");
}

#[sqlx::test]
async fn an_admin_edits_a_route_and_the_next_calls_use_it(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    for (prefix, name) in [("/v1/first", "first"), ("/v1/second", "second")] {
        add_route(
            &mut ops,
            &[
                ("path_prefix", prefix),
                // Upstreams never lie within one another.
                ("upstream_url", &format!("{up}/echo/{name}")),
                ("endpoint", name),
                ("scope", "edits"),
                ("pricing", "fixed"),
                ("price", "1"),
                ("description", "before"),
            ],
        )
        .await;
    }
    let id: Uuid = sqlx::query_scalar("SELECT id FROM routes WHERE path_prefix = '/v1/first'")
        .fetch_one(&db)
        .await
        .unwrap();
    // The edit form shows the route's settings.
    let form = ops.get(&format!("/admin/routes?edit={id}")).await;
    assert!(
        form.body.contains("Edit the route /v1/first"),
        "{}",
        form.body
    );
    assert!(form.body.contains("value=\"before\""));
    let csrf = extract_csrf(&form.body);
    let edit = |prefix: &str, url: String, price: &str| -> Vec<(String, String)> {
        [
            ("csrf", csrf.clone()),
            ("route_id", id.to_string()),
            ("path_prefix", prefix.into()),
            ("upstream_url", url),
            ("endpoint", "first".into()),
            ("scope", "edits".into()),
            ("pricing", "fixed".into()),
            ("price", price.into()),
            ("description", "after".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    // Taking another route's prefix is refused next to the field, in the edit form.
    let fields = edit("/v1/second", format!("{up}/echo"), "4");
    let res = ops.post_form("/api/save_route", &pairs(&fields)).await;
    assert_eq!(res.location(), format!("/admin/routes?edit={id}"));
    let page = decode_html(&ops.get(res.location()).await.body);
    assert!(
        page.contains("Another route already uses this prefix."),
        "{page}"
    );
    assert!(
        page.contains("value=\"/v1/second\""),
        "what was typed is kept"
    );

    let fields = edit("/v1/first", format!("{up}/echo/v2"), "4");
    let res = ops.post_form("/api/save_route", &pairs(&fields)).await;
    assert_eq!(res.location(), "/admin/routes");
    assert!(ops
        .get("/admin/routes")
        .await
        .body
        .contains("with the new settings"));
    let before: i64 =
        sqlx::query_scalar("SELECT included + purchased FROM org_meters WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    let res = app.call("GET", "/v1/first/x", Some(&key), None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["path"], "/api/echo/v2/x");
    assert_eq!(res.header("tollgate-credits-charged").as_deref(), Some("4"));
    assert_eq!(balance(&db, org).await, before - 4);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'route.updated'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

/// A route's key reaches everything below its upstream URL: a second route
/// whose upstream lies within the first's (or contains it) on the same host
/// would be reachable through the first at its price, with its scope. Such a
/// route is refused when saved.
#[sqlx::test]
async fn a_route_whose_upstream_lies_within_another_routes_is_refused(db: PgPool) {
    let up = upstream().await;
    let (app, _, _) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    async fn save(ops: &mut TestApp, prefix: &str, url: &str) -> String {
        let page = add_route(
            ops,
            &[("path_prefix", prefix), ("upstream_url", url), ("endpoint", &prefix[4..]), ("scope", "up"), ("pricing", "fixed"), ("price", "1")],
        )
        .await;
        decode_html(&page.body)
    }
    let count = |db: PgPool| async move { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM routes").fetch_one(&db).await.unwrap() };
    save(&mut ops, "/v1/cheap", &format!("{up}/echo")).await;
    assert_eq!(count(db.clone()).await, 1);
    for (prefix, url) in [("/v1/admin", format!("{up}/echo/admin")), ("/v1/whole", up.clone()), ("/v1/same", format!("{up}/echo/"))] {
        let page = save(&mut ops, prefix, &url).await;
        assert_eq!(count(db.clone()).await, 1, "{url} is within, or contains, /v1/cheap's upstream");
        assert!(page.contains("lies within, the upstream of the route /v1/cheap"), "{url}: the message is next to the field");
    }
    // A sibling path is its own API.
    save(&mut ops, "/v1/other", &format!("{up}/echo2")).await;
    assert_eq!(count(db.clone()).await, 2);
}

/// Test keys spend a sandbox anyone can refill, so they used to reach a
/// route's real upstream for free (even with the subscription expired). A
/// test key now gets the route's example answer, or goes to its test
/// upstream; never to the live one.
#[sqlx::test]
async fn test_keys_get_the_example_answer_or_the_test_upstream_never_the_live_one(db: PgPool) {
    let up = upstream().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let example = r#"{"choices": [{"text": "an example"}]}"#;
    add_route(
        &mut ops,
        &[("path_prefix", "/v1/chat"), ("upstream_url", &format!("{up}/echo/live")), ("endpoint", "chat"), ("scope", "chat"),
          ("pricing", "fixed"), ("price", "2"), ("test_example", example)],
    )
    .await;
    add_route(
        &mut ops,
        &[("path_prefix", "/v1/staged"), ("upstream_url", &format!("{up}/echo/prod")), ("endpoint", "staged"), ("scope", "chat"),
          ("pricing", "fixed"), ("price", "1"), ("test_upstream_url", &format!("{up}/echo/staging"))],
    )
    .await;
    let test_key = app.create_key("sandbox", "test", &["chat"], "never").await;
    let sandbox = |db: PgPool| async move { sqlx::query_scalar::<_, i64>("SELECT sandbox FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap() };
    let before = sandbox(db.clone()).await;

    let res = app.call("POST", "/v1/chat/completions", Some(&test_key), Some("{}"), &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), serde_json::from_str::<serde_json::Value>(example).unwrap(), "the route's example, not the upstream's echo");
    assert_eq!(res.header("tollgate-example").as_deref(), Some("true"));
    assert_eq!(sandbox(db.clone()).await, before - 2, "at the route's price, from the sandbox");
    // A live key reaches the live upstream.
    let live = app.call("POST", "/v1/chat/completions", Some(&key), Some("{}"), &[]).await;
    assert_eq!(live.json()["path"], "/api/echo/live/completions");

    let staged = app.call("GET", "/v1/staged/x", Some(&test_key), None, &[]).await;
    assert_eq!(staged.json()["path"], "/api/echo/staging/x", "the test upstream");
    assert_eq!(staged.json()["key_mode"], "test");
    let prod = app.call("GET", "/v1/staged/x", Some(&key), None, &[]).await;
    assert_eq!(prod.json()["path"], "/api/echo/prod/x");

    // A test upstream within the live one is refused when saved.
    let page = add_route(
        &mut ops,
        &[("path_prefix", "/v1/leaky"), ("upstream_url", &format!("{up}/echo/leaky")), ("endpoint", "leaky"), ("scope", "chat"),
          ("pricing", "fixed"), ("price", "1"), ("test_upstream_url", &format!("{up}/echo/leaky/test"))],
    )
    .await;
    assert!(decode_html(&page.body).contains("Test keys must not reach the live upstream"));
    let leaky: i64 = sqlx::query_scalar("SELECT count(*) FROM routes WHERE path_prefix = '/v1/leaky'").fetch_one(&db).await.unwrap();
    assert_eq!(leaky, 0);
    // Nor within another route's live upstream.
    let page = add_route(
        &mut ops,
        &[("path_prefix", "/v1/sneaky"), ("upstream_url", &format!("{up}/echo/sneaky")), ("endpoint", "sneaky"), ("scope", "chat"),
          ("pricing", "fixed"), ("price", "1"), ("test_upstream_url", &format!("{up}/echo/live/inside"))],
    )
    .await;
    assert!(decode_html(&page.body).contains("lies within, the upstream of the route /v1/chat"), "another route's live upstream");
    let sneaky: i64 = sqlx::query_scalar("SELECT count(*) FROM routes WHERE path_prefix = '/v1/sneaky'").fetch_one(&db).await.unwrap();
    assert_eq!(sneaky, 0);
}
