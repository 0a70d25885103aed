use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;

#[sqlx::test]
async fn a_key_is_shown_once_and_stored_only_as_its_hash(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let key = app.create_key("laptop", "live", &["*"], "never").await;
    assert!(key.starts_with("tg_live_") && key.len() == 40, "{key}");

    // Shown once: the next load of the page does not have it.
    let again = app.get("/account/keys").await;
    assert_eq!(new_key_on(&again.body), None);
    let display = format!("{}…{}", &key[..12], &key[36..]);
    assert!(again.body.contains(&display), "listed as prefix…last4");
    assert!(!again.body.contains(&key));

    let (hashes, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE token_hash = sha256($1::bytea)),
                (SELECT count(*) FROM api_keys WHERE prefix || last4 LIKE '%' || $2 || '%')
         FROM api_keys",
    )
    .bind(key.as_bytes())
    .bind(&key[12..36])
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((hashes, plain), (1, 0));
    let sessions_with_key: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE data::text LIKE '%' || $1 || '%'")
            .bind(&key)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(sessions_with_key, 0, "the key never rests in a session");

    let ping = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(ping.status, StatusCode::OK);
    app.state.gateway.usage.flush().await;
    let used: Option<time::OffsetDateTime> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        used,
        Some(app.clock.now()),
        "last use is recorded with the usage batch"
    );
}

#[sqlx::test]
async fn invalid_key_forms_name_the_field(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let csrf = extract_csrf(&app.get("/account/keys").await.body);
    let res = app
        .post_form(
            "/api/create_api_key",
            &[
                ("csrf", &csrf),
                ("name", " "),
                ("mode", "live"),
                ("expires_in_days", "never"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/account/keys");
    let page = app.get("/account/keys").await;
    assert!(page.body.contains("Give the key a name"));
    assert!(page.body.contains("Choose at least one scope."));
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

#[sqlx::test]
async fn revoking_and_rotating_take_effect_on_the_next_call(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let old = app.create_key("server", "live", &["*"], "never").await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_keys")
        .fetch_one(&db)
        .await
        .unwrap();

    // Rotate with a one-hour overlap: both keys work, then only the new one.
    let csrf = extract_csrf(&app.get("/account/keys").await.body);
    app.post_form(
        "/api/rotate_api_key",
        &[
            ("csrf", &csrf),
            ("key_id", &id.to_string()),
            ("overlap_hours", "1"),
        ],
    )
    .await;
    let new =
        new_key_on(&app.get("/account/keys").await.body).expect("the rotated key is shown once");
    assert_ne!(new, old);
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&old), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&new), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(time::Duration::minutes(61));
    let gone = app.call("GET", "/v1/ping", Some(&old), None, &[]).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gone.json()["code"], "api_key_revoked");

    // Revoke: refused on the very next call.
    let new_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_keys WHERE revoked_at IS NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    let csrf = extract_csrf(&app.get("/account/keys").await.body);
    app.post_form(
        "/api/revoke_api_key",
        &[("csrf", &csrf), ("key_id", &new_id.to_string())],
    )
    .await;
    assert!(app.get("/account/keys").await.body.contains("Key revoked."));
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&new), None, &[])
            .await
            .json()["code"],
        "api_key_revoked"
    );
}

#[sqlx::test]
async fn only_developers_and_up_manage_keys_and_a_removed_members_keys_stop(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@acme.test", PASSWORD).await;
    let mut dev = owner
        .invite_and_join("dev@acme.test", "developer", "Dev")
        .await;
    let mut bill = owner
        .invite_and_join("bill@acme.test", "billing", "Bill")
        .await;

    // Keys are the developers' and up: a billing member gets 403, no list.
    let page = bill.get("/account/keys").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.body.contains("Create a key"));

    let key = dev.create_key("dev box", "live", &["*"], "never").await;
    assert_eq!(
        dev.call("GET", "/v1/ping", Some(&key), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let dev_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'dev@acme.test'")
            .fetch_one(&db)
            .await
            .unwrap();
    let csrf = extract_csrf(&owner.get("/account/members").await.body);
    owner
        .post_form(
            "/api/remove_member",
            &[("csrf", &csrf), ("user_id", &dev_id.to_string())],
        )
        .await;
    let res = owner.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["code"], "api_key_revoked");
}
