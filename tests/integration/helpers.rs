//! `TestApp`: the real router on a fresh `#[sqlx::test]` database, driven
//! with `tower::ServiceExt::oneshot`, with a cookie jar like a browser's.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sqlx::PgPool;
use std::collections::BTreeMap;
use time::macros::datetime;
use tollgate::clock::Clock;
use tollgate::config::Config;
use tollgate::state::AppState;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub db: PgPool,
    pub state: AppState,
    pub clock: Clock,
    pub router: Router,
    pub cookies: BTreeMap<String, String>,
    /// Sent as X-Forwarded-For (the test config trusts one proxy).
    pub ip: String,
    /// Audits the ledger when dropped (the first app of a test does).
    audits: bool,
    /// The loopback server, stopped when the app drops (it holds the
    /// database pools, which must be closed before the test database is).
    server: Option<tokio::task::AbortHandle>,
    /// Where the loopback server listens.
    pub addr: std::net::SocketAddr,
}

/// At the end of every test, the ledger is audited: every transaction
/// balances and every organization's balances equal its ledger accounts.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if !self.audits || std::thread::panicking() {
            return;
        }
        let options = (*self.db.connect_options()).clone();
        let audit = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?;
                let audit = tollgate::billing::ledger::audit(&pool).await;
                pool.close().await;
                audit
            })
        })
        .join()
        .expect("the ledger audit ran");
        match audit {
            Ok(a) => assert!(a.is_sound(), "the ledger and the balances disagree: {a:?}"),
            Err(e) => panic!("could not audit the ledger: {e}"),
        }
    }
}

/// Serves the router on a loopback port, as the server does, so the sandbox
/// processor's webhooks reach it over real HTTP.
pub fn listen(state: &AppState, router: &Router) -> (tokio::task::AbortHandle, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let addr = listener.local_addr().unwrap();
    state
        .processor
        .listening_at(format!("http://{addr}/webhooks/{}", state.processor.name()).parse().unwrap());
    let app = router
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
    .abort_handle();
    (handle, addr)
}

/// The Stripe emulator the tests run against (`localstripe`, started by
/// `bash .ci/test`; README, "Tests").
pub fn localstripe() -> String {
    std::env::var("TOLLGATE_TEST_STRIPE_URL").unwrap_or_else(|_| {
        panic!("TOLLGATE_TEST_STRIPE_URL is not set: run the tests with `bash .ci/test`, which starts localstripe, or start it with `bash .ci/localstripe`")
    })
}

/// A configuration with Stripe (the emulator) taking the payments, and the
/// webhook endpoint's signing secret.
pub fn stripe_config() -> (Config, String) {
    let base = localstripe();
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::for_tests();
    config.stripe = Some(tollgate::config::StripeConfig {
        secret_key: tollgate::config::SecretKey("sk_test_tollgate".into()),
        publishable_key: "pk_test_tollgate".into(),
        webhook_secret: tollgate::config::WebhookSecret(secret.clone()),
        api_base: base.parse().unwrap(),
        js_url: format!("{base}/js.stripe.com/v3/").parse().unwrap(),
    });
    (config, secret)
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

impl TestApp {
    pub async fn new(db: PgPool) -> Self {
        Self::with_config(db, Config::for_tests()).await
    }

    pub async fn with_config(db: PgPool, config: Config) -> Self {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    std::env::var("TEST_LOG").unwrap(),
                ))
                .with_thread_names(true)
                .with_test_writer()
                .try_init();
        }
        tollgate::billing::plans::ensure_defaults(&db)
            .await
            .unwrap();
        let clock = Clock::manual(datetime!(2026-11-21 12:00 UTC));
        let state = AppState::start(db.clone(), config, clock.clone());
        let router = tollgate::startup::router(state.clone());
        let (server, addr) = listen(&state, &router);
        Self {
            db,
            state,
            clock,
            router,
            cookies: BTreeMap::new(),
            ip: "203.0.113.7".into(),
            audits: true,
            server: Some(server),
            addr,
        }
    }

    /// An app with Stripe (the emulator) taking the payments, its webhooks
    /// registered with the emulator; the webhook signing secret beside it.
    pub async fn with_stripe(db: PgPool) -> (Self, String) {
        let (config, secret) = stripe_config();
        let app = Self::with_config(db, config).await;
        let res = reqwest::Client::new()
            .post(format!("{}/_config/webhooks/{}", localstripe(), uuid::Uuid::new_v4().simple()))
            .form(&[("url", format!("http://{}/webhooks/stripe", app.addr)), ("secret", secret.clone())])
            .send()
            .await
            .expect("localstripe answers");
        assert!(res.status().is_success(), "localstripe took the webhook: {}", res.status());
        (app, secret)
    }

    /// The same database and cookies behind a freshly built router, as after
    /// a restart of the server.
    pub fn restarted(&self) -> Self {
        // Its own connection pool, as a separate process would have.
        let pool = PgPool::connect_lazy_with((*self.db.connect_options()).clone());
        let state = AppState::start(pool, Config::for_tests(), self.clock.clone());
        let router = tollgate::startup::router(state.clone());
        let (server, addr) = listen(&state, &router);
        Self {
            server: Some(server),
            addr,
            db: self.db.clone(),
            state,
            clock: self.clock.clone(),
            router,
            cookies: self.cookies.clone(),
            ip: self.ip.clone(),
            audits: false,
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits until this instance's decisions in memory have seen every
    /// change committed so far (a real instance sees it within
    /// milliseconds; a test changes the database and calls at once).
    pub async fn synced(&self) {
        assert!(self.state.gateway.cache.sync(&self.db).await, "the gateway's listener answers");
    }

    pub async fn send(&mut self, req: Request<Body>) -> TestResponse {
        self.synced().await;
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        for c in headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = c.to_ascii_lowercase().contains("max-age=0");
            if expired || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> TestResponse {
        let req = Request::get(path)
            .header(header::ACCEPT, "text/html")
            .header(header::COOKIE, self.cookie_header())
            .header("x-forwarded-for", self.ip.clone())
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    /// Posts a form as a browser does from a page of the portal.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let req = Request::post(path)
            .header(header::ACCEPT, "text/html")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, "http://portal.test")
            .header(header::REFERER, "http://portal.test/")
            .header(header::COOKIE, self.cookie_header())
            .header("x-forwarded-for", self.ip.clone())
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    /// The anti-forgery token of this browser's session (loads a page).
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/password/forgot").await;
        extract_csrf(&page.body)
    }

    pub async fn sign_up(&mut self, name: &str, email: &str, password: &str) -> TestResponse {
        let csrf = self.csrf().await;
        self.post_form(
            "/api/sign_up",
            &[
                ("csrf", &csrf),
                ("display_name", name),
                ("email", email),
                ("password", password),
                ("organization", ""),
            ],
        )
        .await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> TestResponse {
        let csrf = self.csrf().await;
        self.post_form(
            "/api/sign_in",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    pub async fn sign_out(&mut self) -> TestResponse {
        let csrf = self.csrf().await;
        self.post_form("/api/sign_out", &[("csrf", &csrf)]).await
    }

    /// A second browser on the same server and database.
    pub fn other_browser(&self) -> Self {
        Self {
            db: self.db.clone(),
            state: self.state.clone(),
            clock: self.clock.clone(),
            router: self.router.clone(),
            cookies: BTreeMap::new(),
            ip: "198.51.100.20".into(),
            audits: false,
            server: None,
            addr: self.addr,
        }
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies.get(tollgate::startup::SESSION_COOKIE).cloned()
    }

    /// The display name in the header when signed in, else None.
    pub async fn signed_in_as(&mut self) -> Option<String> {
        let page = self.get("/").await;
        let start = page.body.find("class=\"nav-user\"")?;
        let rest = &page.body[start..];
        let open = rest.find('>')? + 1;
        let close = rest[open..].find('<')?;
        Some(rest[open..open + close].to_string())
    }
}

pub fn extract_csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in page: {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_string()
}

/// The newest email in the outbox to `to`: (subject, body).
pub async fn last_email(db: &PgPool, to: &str) -> Option<(String, String)> {
    sqlx::query_as("SELECT subject, coalesce(body_secret, body_text) FROM email_outbox WHERE to_address = $1 ORDER BY created_at DESC, id DESC LIMIT 1")
        .bind(to)
        .fetch_optional(db)
        .await
        .unwrap()
}

/// The path of the first link to this portal in an email body.
/// Follows the email-verification link last sent to `email`.
pub async fn verify_email(app: &mut TestApp, email: &str) -> TestResponse {
    let (subject, body) = last_email(&app.db, email).await.expect("a verification email");
    assert_eq!(subject, "Confirm your email address");
    let path = link_path(&body);
    app.get(&path).await
}

pub fn link_path(body: &str) -> String {
    let start = body.find("http://portal.test").expect("a portal link");
    let link = body[start..].split_whitespace().next().unwrap();
    link.trim_start_matches("http://portal.test").to_string()
}

pub fn decode_html(s: &str) -> String {
    s.replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&#39;", "'")
}

impl TestApp {
    /// Creates a key through the keys page and reads it off the page, once.
    pub async fn create_key(
        &mut self,
        name: &str,
        mode: &str,
        scopes: &[&str],
        expires: &str,
    ) -> String {
        let csrf = extract_csrf(&self.get("/account/keys").await.body);
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("name", name),
            ("mode", mode),
            ("expires_in_days", expires),
        ];
        // As the page's checkboxes post them: `scopes[i]=<scope>`.
        let names: Vec<String> = (0..scopes.len()).map(|i| format!("scopes[{i}]")).collect();
        for (name, s) in names.iter().zip(scopes) {
            fields.push((name.as_str(), s));
        }
        let res = self.post_form("/api/create_api_key", &fields).await;
        assert_eq!(res.location(), "/account/keys");
        let page = self.get("/account/keys").await;
        new_key_on(&page.body).unwrap_or_else(|| panic!("the new key is shown: {}", page.body))
    }

    /// Calls the metered API with a key, as an API client would (no cookies).
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Body::from(body.unwrap_or("").to_string()))
            .unwrap();
        self.synced().await;
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn org_of(&self, email: &str) -> uuid::Uuid {
        sqlx::query_scalar("SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = $1")
            .bind(email)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

pub fn new_key_on(html: &str) -> Option<String> {
    let marker = "data-testid=\"new-key\">";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('<')?;
    Some(html[start..start + end].to_string())
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl TestApp {
    /// Invites `email` as `role` from this (owner's) browser, and signs them
    /// up through the emailed link in a browser of their own.
    pub async fn invite_and_join(&mut self, email: &str, role: &str, name: &str) -> TestApp {
        let csrf = extract_csrf(&self.get("/account/members").await.body);
        self.post_form(
            "/api/invite_member",
            &[("csrf", &csrf), ("email", email), ("role", role)],
        )
        .await;
        let (_, body) = last_email(&self.db, email)
            .await
            .expect("an invitation email");
        let token = link_path(&body)
            .trim_start_matches("/invitations/")
            .to_string();
        let mut joiner = self.other_browser();
        let csrf = joiner.csrf().await;
        let res = joiner
            .post_form(
                "/api/sign_up",
                &[
                    ("csrf", &csrf),
                    ("display_name", name),
                    ("email", email),
                    ("password", PASSWORD),
                    ("invitation", &token),
                ],
            )
            .await;
        assert_eq!(res.location(), "/account", "{email} joined");
        joiner
    }
}
