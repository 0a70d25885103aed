use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;

#[sqlx::test]
async fn sign_up_creates_a_user_an_owned_organization_and_a_free_subscription(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    let res = app
        .sign_up("Ada Lovelace", "Ada@Example.com", PASSWORD)
        .await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.body);
    assert_eq!(res.location(), "/account");

    let (hash, admin): (String, bool) = sqlx::query_as(
        "SELECT password_hash, is_platform_admin FROM users WHERE email = 'Ada@Example.com'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
    assert!(!admin);

    let (role, org, plan, status): (String, String, String, String) = sqlx::query_as(
        "SELECT m.role, o.name, p.code, s.status FROM memberships m
         JOIN organizations o ON o.id = m.org_id
         JOIN subscriptions s ON s.org_id = o.id JOIN plans p ON p.id = s.plan_id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (role.as_str(), plan.as_str(), status.as_str()),
        ("owner", "free", "active")
    );
    assert_eq!(org, "Ada Lovelace's organization");

    let account = app.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(account
        .body
        .contains("Welcome to Tollgate! Your account is ready."));
    assert!(decode_html(&account.body).contains("Ada Lovelace's organization"));
    assert_eq!(app.signed_in_as().await.as_deref(), Some("Ada Lovelace"));

    let billing = app.get("/billing").await;
    assert!(
        billing.body.contains("data-testid=\"plan-name\">Free<"),
        "{}",
        billing.body
    );
}

#[sqlx::test]
async fn invalid_sign_up_names_each_field_and_keeps_what_was_typed(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    let csrf = app.csrf().await;
    let res = app
        .post_form(
            "/api/sign_up",
            &[
                ("csrf", &csrf),
                ("display_name", "  "),
                ("email", "ada@nowhere"),
                ("password", "short"),
                ("organization", "Acme"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/signup");
    let page = app.get("/signup").await;
    assert!(page.body.contains("Enter your name."), "{}", page.body);
    assert!(page
        .body
        .contains("Enter an email address like name@example.com."));
    assert!(page.body.contains("Use at least 10 characters."));
    assert!(
        page.body.contains("value=\"ada@nowhere\""),
        "typed email is kept"
    );
    assert!(
        page.body.contains("value=\"Acme\""),
        "typed organization is kept"
    );
    assert!(
        !page.body.contains("short"),
        "a password is never echoed back"
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(users, 0);

    // The message is shown once.
    let again = app.get("/signup").await;
    assert!(!again.body.contains("Enter your name."));
}

#[sqlx::test]
async fn an_email_can_hold_one_account_whatever_its_case(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let mut other = app.other_browser();
    let res = other.sign_up("Imposter", "ADA@example.com", PASSWORD).await;
    assert_eq!(res.location(), "/signup");
    let page = other.get("/signup").await;
    assert!(
        page.body
            .contains("An account with this email already exists."),
        "{}",
        page.body
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[sqlx::test]
async fn sign_in_accepts_the_right_password_only(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    app.sign_out().await;
    assert_eq!(app.signed_in_as().await, None);

    let wrong = app.sign_in("ada@example.com", "not the password").await;
    assert_eq!(wrong.location(), "/login");
    let page = app.get("/login").await;
    assert!(page.body.contains("Wrong email or password."));
    assert!(page.body.contains("value=\"ada@example.com\""));

    let unknown = app.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.location(), "/login");
    assert!(app
        .get("/login")
        .await
        .body
        .contains("Wrong email or password."));

    let ok = app.sign_in("ADA@example.com", PASSWORD).await;
    assert_eq!(ok.location(), "/account");
    assert_eq!(app.signed_in_as().await.as_deref(), Some("Ada"));
}

#[sqlx::test]
async fn sign_in_returns_to_the_page_that_asked_but_never_off_site(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    app.sign_out().await;
    let gate = app.get("/account/members").await;
    assert_eq!(gate.status, StatusCode::FOUND);
    assert_eq!(gate.location(), "/login?return_to=%2Faccount%2Fmembers");

    let csrf = app.csrf().await;
    let res = app
        .post_form(
            "/api/sign_in",
            &[
                ("csrf", &csrf),
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("return_to", "/account/members"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/account/members");

    app.sign_out().await;
    let csrf = app.csrf().await;
    let res = app
        .post_form(
            "/api/sign_in",
            &[
                ("csrf", &csrf),
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("return_to", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/account");
}

#[sqlx::test]
async fn forms_without_the_session_token_are_refused(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.csrf().await;
    let res = app
        .post_form(
            "/api/sign_up",
            &[
                ("csrf", "forged"),
                ("display_name", "Eve"),
                ("email", "eve@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.location(), "/signup");
    assert!(app
        .get("/signup")
        .await
        .body
        .contains("This form expired. Please send it again."));
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[sqlx::test]
async fn posts_from_another_site_are_refused(db: PgPool) {
    use axum::body::Body;
    use axum::http::{header, Request};
    let mut app = TestApp::new(db).await;
    let csrf = app.csrf().await;
    let req = Request::post("/api/sign_in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://evil.example")
        .header(
            header::COOKIE,
            format!("tollgate_session={}", app.session_cookie().unwrap()),
        )
        .body(Body::from(format!("csrf={csrf}&email=a%40b.co&password=x")))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::FORBIDDEN);
    let req = Request::post("/api/sign_out")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn password_reset_by_a_one_time_expiring_link(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let mut laptop = app.other_browser();
    laptop.sign_in("ada@example.com", PASSWORD).await;
    assert!(laptop.signed_in_as().await.is_some());
    app.sign_out().await;

    let csrf = app.csrf().await;
    let res = app
        .post_form(
            "/api/password_forgot",
            &[("csrf", &csrf), ("email", "ada@example.com")],
        )
        .await;
    assert_eq!(res.location(), "/password/forgot");
    assert!(app
        .get("/password/forgot")
        .await
        .body
        .contains("If an account exists for that address"));
    let (subject, body) = last_email(&db, "ada@example.com")
        .await
        .expect("a reset email in the outbox");
    assert_eq!(subject, "Reset your Tollgate password");
    let path = link_path(&body);
    assert!(path.starts_with("/password/reset?token="), "{path}");
    let token = path
        .trim_start_matches("/password/reset?token=")
        .to_string();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM password_resets WHERE token_hash = sha256($1::bytea)",
    )
    .bind(token.as_bytes())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(stored, 1, "only the token's hash is stored");

    let csrf = extract_csrf(&app.get(&path).await.body);
    let res = app
        .post_form(
            "/api/password_reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/account");
    assert_eq!(app.signed_in_as().await.as_deref(), Some("Ada"));
    assert_eq!(
        laptop.signed_in_as().await,
        None,
        "other sessions end with a reset"
    );

    // The link works once.
    let csrf = app.csrf().await;
    app.post_form(
        "/api/password_reset",
        &[
            ("csrf", &csrf),
            ("token", &token),
            ("password", "yet another password"),
        ],
    )
    .await;
    assert!(app
        .get(&path)
        .await
        .body
        .contains("This link is invalid, already used, or expired."));

    app.sign_out().await;
    assert_eq!(
        app.sign_in("ada@example.com", PASSWORD).await.location(),
        "/login"
    );
    assert_eq!(
        app.sign_in("ada@example.com", "a brand new password")
            .await
            .location(),
        "/account"
    );
}

#[sqlx::test]
async fn reset_links_expire_after_an_hour(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let csrf = app.csrf().await;
    app.post_form(
        "/api/password_forgot",
        &[("csrf", &csrf), ("email", "ada@example.com")],
    )
    .await;
    let (_, body) = last_email(&db, "ada@example.com").await.unwrap();
    let token = link_path(&body)
        .trim_start_matches("/password/reset?token=")
        .to_string();
    app.clock.advance(time::Duration::minutes(61));
    let csrf = app.csrf().await;
    let res = app
        .post_form(
            "/api/password_reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", "a brand new password"),
            ],
        )
        .await;
    assert!(res.location().starts_with("/password/reset?token="));
    assert!(app
        .get(res.location())
        .await
        .body
        .contains("This link is invalid, already used, or expired."));
}

#[sqlx::test]
async fn reset_requests_do_not_reveal_who_has_an_account(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    let csrf = app.csrf().await;
    let res = app
        .post_form(
            "/api/password_forgot",
            &[("csrf", &csrf), ("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(res.location(), "/password/forgot");
    assert!(app
        .get("/password/forgot")
        .await
        .body
        .contains("If an account exists for that address"));
    assert!(last_email(&db, "nobody@example.com").await.is_none());
}

#[sqlx::test]
async fn create_admin_makes_a_platform_admin_who_sees_the_console(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Cust", "cust@example.com", PASSWORD).await;
    assert_eq!(app.get("/admin").await.status, StatusCode::FORBIDDEN);

    std::env::set_var("TOLLGATE_ADMIN_PASSWORD", "operator password");
    tollgate::cli::create_admin(&db, "ops@example.com", "Operator")
        .await
        .unwrap();
    let mut ops = app.other_browser();
    assert_eq!(
        ops.sign_in("ops@example.com", "operator password")
            .await
            .location(),
        "/account"
    );
    let admin = ops.get("/admin").await;
    assert_eq!(admin.status, StatusCode::OK);
    assert!(admin.body.contains("Admin console"));
    assert!(
        ops.get("/").await.body.contains("href=\"/admin\""),
        "admins get the Admin link"
    );
    assert!(
        !app.get("/").await.body.contains("href=\"/admin\""),
        "customers do not"
    );
    let outbox = ops.get("/admin/outbox").await;
    assert_eq!(outbox.status, StatusCode::OK);
}

/// A name goes into e-mails to platform admins and onto pages: control
/// characters, line breaks and invisible direction overrides are refused
/// next to the field, and nothing is created.
#[sqlx::test]
async fn names_with_control_or_invisible_characters_are_refused(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    for (field, value) in [
        ("organization", "Acme\r\nBcc: everyone"),
        ("organization", "Acme\u{202E}gnp.exe"),
        ("organization", "Acme\u{0007}"),
        ("display_name", "Ada\nLovelace"),
        ("display_name", "Ada\u{200B}"),
    ] {
        let csrf = app.csrf().await;
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("display_name", "Ada"),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("organization", "Acme"),
        ];
        fields.retain(|(k, _)| *k != field);
        fields.push((field, value));
        let res = app.post_form("/api/sign_up", &fields).await;
        assert_eq!(res.location(), "/signup", "{field}: {value:?}");
        let page = decode_html(&app.get("/signup").await.body);
        assert!(page.contains("no control characters or line breaks"), "{field}: {value:?}");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&db).await.unwrap();
    assert_eq!(users, 0);
}
