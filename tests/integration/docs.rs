//! Docs, search, personal docs, the endpoint reference and the explorer's
//! sending end, through real HTTP requests to the router.

use crate::gateway::customer;
use crate::helpers::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sqlx::PgPool;
use tollgate::gateway::catalogue::ALL;

#[sqlx::test]
async fn every_type_url_in_the_catalogue_answers_200_with_its_page(db: PgPool) {
    let mut app = TestApp::new(db).await;
    for code in ALL {
        let body = tollgate::sample_api::openapi::example(code, &app.state.config, "/v1/ping");
        let url = body["type"].as_str().unwrap();
        let path = url.strip_prefix("http://portal.test").unwrap_or_else(|| panic!("{url} is not on the portal"));
        let page = app.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{url}");
        let html = decode_html(&page.body);
        assert!(html.contains(code.title()), "{url}: its title");
        assert!(html.contains("How to fix it"), "{url}: its fix");
        assert!(html.contains(&format!("\"code\": \"{}\"", code.as_str())) || html.contains(&format!("&quot;{}&quot;", code.as_str())) || page.body.contains(code.as_str()), "{url}: an example body");
        assert!(page.body.contains("id=\"example\""), "{url}: an example body section");
    }
}

#[sqlx::test]
async fn search_ranks_the_error_page_first_with_and_without_javascript(db: PgPool) {
    let mut app = TestApp::new(db).await;
    let page = app.get("/docs/search?q=insufficient+credits").await;
    assert_eq!(page.status, StatusCode::OK);
    let first = page.body.find("class=\"search-hit\"").map(|i| &page.body[i..]).unwrap();
    assert!(first.starts_with("class=\"search-hit\"><a href=\"/docs/errors/insufficient_credits"), "{}", &first[..200.min(first.len())]);
    assert!(first.contains("<mark>"), "the matched words are marked");
    let json: serde_json::Value = serde_json::from_str(&app.get("/docs/search.json?q=insufficient%20credits").await.body).unwrap();
    assert!(json[0]["href"].as_str().unwrap().starts_with("/docs/errors/insufficient_credits"));
    // Hostile queries come back escaped.
    let page = app.get("/docs/search?q=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert!(!page.body.contains("<script>alert(1)"));
    let empty = app.get("/docs/search?q=").await;
    assert_eq!(empty.status, StatusCode::OK);
}

#[sqlx::test]
async fn docs_have_navigation_a_table_of_contents_and_previous_next(db: PgPool) {
    let mut app = TestApp::new(db).await;
    let page = app.get("/docs/quickstart").await.body;
    for want in ["aria-label=\"Documentation\"", "aria-label=\"On this page\"", "rel=\"prev\" href=\"/docs/index\"", "rel=\"next\"", "href=\"#plans\"", "class=\"tok-", "data-copy"] {
        assert!(page.contains(want), "{want}");
    }
    // No wasm on docs pages; the explorer loads it.
    assert!(!page.contains("/pkg/tollgate.js"), "a docs page loads no wasm");
    assert!(app.get("/explorer").await.body.contains("/pkg/tollgate"), "the explorer does");
    // The reference comes from the OpenAPI document.
    let reference = app.get("/docs/reference").await.body;
    for op in ["ping", "sentiment", "summarize"] {
        assert!(reference.contains(&format!("href=\"/docs/reference/{op}\"")), "{op}");
        let page = app.get(&format!("/docs/reference/{op}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains(&format!("href=\"/explorer?endpoint={op}\"")), "Try it");
    }
    let summarize = decode_html(&app.get("/docs/reference/summarize").await.body);
    assert!(summarize.contains("Plans that include it:</strong> Pro, Enterprise"), "plans");
    assert!(summarize.contains("href=\"/docs/errors/plan_upgrade_required\""), "an example of each problem");
    assert_eq!(app.get("/docs/reference/nope").await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn signed_in_docs_show_the_readers_key_and_what_their_plan_includes(db: PgPool) {
    let mut anon = TestApp::new(db.clone()).await;
    assert!(anon.get("/docs/quickstart").await.body.contains("tg_test_YOUR_KEY"));
    let (mut app, _, _) = customer(&db).await;
    let test_key = app.create_key("docs", "test", &["*"], "never").await;
    let page = app.get("/docs/quickstart").await.body;
    assert!(page.contains(&format!("{}…", &test_key[..12])), "the reader's own key prefix");
    assert!(!page.contains(&test_key), "never the key itself");
    let summarize = decode_html(&app.get("/docs/reference/summarize").await.body);
    assert!(summarize.contains("Your Free plan does not include this endpoint"), "{summarize}");
    assert!(summarize.contains("href=\"/billing/plans?plan=pro&return_to=/docs/reference/summarize\""));
    let sentiment = decode_html(&app.get("/docs/reference/sentiment").await.body);
    assert!(sentiment.contains("Your Free plan includes this endpoint: it costs you 1 credit(s) per call"), "{sentiment}");
}

async fn explorer_send(app: &TestApp, payload: serde_json::Value, origin: &str) -> TestResponse {
    let req = Request::post("/explorer/send")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, origin)
        .header(header::COOKIE, app.cookie_header())
        .header("x-forwarded-for", "203.0.113.9")
        .body(Body::from(payload.to_string()))
        .unwrap();
    let mut app = app.other_browser();
    app.send(req).await
}

#[sqlx::test]
async fn the_explorer_sends_with_a_members_key_by_id_and_never_with_another_organizations(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    let key_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_keys WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let csrf = app.csrf().await;
    let call = |key: String, path: &str, body: Option<&str>, simulate: Option<&str>| {
        serde_json::json!({"csrf": csrf, "key_id": key, "method": if body.is_some() {"POST"} else {"GET"}, "path": path, "body": body, "simulate": simulate})
    };
    let ok = explorer_send(&app, call(key_id.to_string(), "/v1/ping", None, None), "http://portal.test").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains("\"pong\":true"));
    // A charged call is charged, through the same pipeline.
    let before: i64 = sqlx::query_scalar("SELECT included FROM org_meters WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let res = explorer_send(&app, call(key_id.to_string(), "/v1/text/sentiment", Some(r#"{"text":"great"}"#), None), "http://portal.test").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("tollgate-credits-remaining").as_deref(), Some(&*(before - 1).to_string()));
    // A live key ignores a simulation; the gateway decides as for any call.
    let res = explorer_send(&app, call(key_id.to_string(), "/v1/ping", None, Some("insufficient_credits")), "http://portal.test").await;
    assert_eq!(res.status, StatusCode::OK);

    // Another organization's key, in every spelling: not found.
    let mut eve = TestApp::new(db.clone()).await;
    eve.sign_up("Eve", "eve@example.com", PASSWORD).await;
    let eve_csrf = eve.csrf().await;
    for id in [key_id.to_string(), key_id.to_string().to_uppercase(), format!(" {key_id} "), key_id.simple().to_string()] {
        let payload = serde_json::json!({"csrf": eve_csrf, "key_id": id, "method": "GET", "path": "/v1/ping"});
        let res = explorer_send(&eve, payload, "http://portal.test").await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}");
    }
    // No session token, a wrong one, another site, a path off the API, odd methods.
    let mut bad = call(key_id.to_string(), "/v1/ping", None, None);
    bad["csrf"] = "nope".into();
    assert_eq!(explorer_send(&app, bad, "http://portal.test").await.status, StatusCode::FORBIDDEN);
    assert_eq!(explorer_send(&app, call(key_id.to_string(), "/v1/ping", None, None), "https://evil.example").await.status, StatusCode::FORBIDDEN);
    // Off the API: the explorer's own check refuses it, before any key is used.
    for path in ["/account/keys", "//evil.example/v1/ping", "/v1", "v1/ping"] {
        let res = explorer_send(&app, call(key_id.to_string(), path, None, None), "http://portal.test").await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(res.body.contains("a path under /v1/"), "{path}: refused by the explorer itself: {}", res.body);
    }
    // Under /v1/ but leaving it: the gateway's path check, as for any call.
    for path in ["/v1/../account", "/v1/%2e%2e/account", "/v1/..\\account", "/v1/%2faccount"] {
        let res = explorer_send(&app, call(key_id.to_string(), path, None, None), "http://portal.test").await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(res.json()["code"], "invalid_path", "{path}");
        assert!(!res.body.contains("tg_live_"), "{path}");
    }
    let mut head = call(key_id.to_string(), "/v1/ping", None, None);
    head["method"] = "CONNECT".into();
    assert_eq!(explorer_send(&app, head, "http://portal.test").await.status, StatusCode::BAD_REQUEST);
    // Signed out, with this (signed-out) session's own valid token: the
    // session check itself refuses, not a token mismatch.
    app.sign_out().await;
    let fresh = app.csrf().await;
    let mut signed_out = call(key_id.to_string(), "/v1/ping", None, None);
    signed_out["csrf"] = fresh.into();
    let res = explorer_send(&app, signed_out, "http://portal.test").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert!(res.body.contains("Sign in"));
}

#[sqlx::test]
async fn a_test_key_in_the_explorer_simulates_a_code(db: PgPool) {
    let (mut app, _, org) = customer(&db).await;
    let secret = app.create_key("test", "test", &["*"], "never").await;
    let key_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_keys WHERE org_id = $1 AND mode = 'test'").bind(org).fetch_one(&db).await.unwrap();
    let csrf = app.csrf().await;
    let payload = serde_json::json!({"csrf": csrf, "key_id": key_id, "method": "POST", "path": "/v1/text/summarize",
                                     "body": "{\"text\":\"a b\"}", "simulate": "plan_upgrade_required"});
    let res = explorer_send(&app, payload, "http://portal.test").await;
    assert_eq!(res.status.as_u16(), 402, "{}", res.body);
    assert_eq!(res.header("tollgate-problem").as_deref(), Some("plan_upgrade_required"), "the gateway marks its own problems");
    let body = res.json();
    assert_eq!(body["code"], "plan_upgrade_required");
    assert!(body["resolution"][0]["href"].as_str().unwrap().contains("/billing/plans?plan=pro"));
    let page = app.get("/explorer").await.body;
    assert!(page.contains("leptos-island"), "the explorer is an island");
    assert!(!page.contains(&secret), "the key's secret is never on the page");
    assert!(page.contains(&key_id.to_string()), "it names the key by id");
}

#[sqlx::test]
async fn a_billing_member_cannot_spend_with_the_organizations_keys(db: PgPool) {
    let (mut ada, _, org) = customer(&db).await;
    let key_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_keys WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    let mut bill = ada.other_browser();
    bill.sign_up("Bill", "bill@example.com", PASSWORD).await;
    let bill_user: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'bill@example.com'").fetch_one(&db).await.unwrap();
    // Bill is a billing member of Ada's organization only.
    sqlx::query("DELETE FROM memberships WHERE user_id = $1").bind(bill_user).execute(&db).await.unwrap();
    sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, 'billing', now())")
        .bind(org)
        .bind(bill_user)
        .execute(&db)
        .await
        .unwrap();
    let csrf = bill.csrf().await;
    let payload = serde_json::json!({"csrf": csrf, "key_id": key_id, "method": "GET", "path": "/v1/ping"});
    let res = explorer_send(&bill, payload, "http://portal.test").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(!bill.get("/explorer").await.body.contains(&key_id.to_string()), "nor are the keys listed for them");
    let _ = &mut ada;
}
