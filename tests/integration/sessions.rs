use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;
use tollgate::config::Config;

#[sqlx::test]
async fn the_session_cookie_is_http_only_and_same_site_lax(db: PgPool) {
    let mut app = TestApp::new(db).await;
    let page = app.get("/login").await;
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http in tests: {cookie}");
}

#[sqlx::test]
async fn behind_https_the_cookie_is_secure(db: PgPool) {
    let config = Config {
        public_url: "https://portal.test".parse().unwrap(),
        secure_cookies: true,
        ..Config::for_tests()
    };
    let mut app = TestApp::with_config(db, config).await;
    let page = app.get("/login").await;
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_session="))
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[sqlx::test]
async fn sessions_live_in_postgres_keyed_by_a_hash_of_the_cookie(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let id = app.session_cookie().unwrap();
    let (by_hash, with_user): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE id_hash = sha256($1::bytea)), count(*) FILTER (WHERE user_id IS NOT NULL) FROM sessions",
    )
    .bind(id.as_bytes())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((by_hash, with_user), (1, 1));
    // The id, as text or as the bytes of any text column, is nowhere in the table.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions s
          WHERE position(convert_to($1, 'UTF8') IN s.id_hash) > 0
             OR s.data::text LIKE '%' || $1 || '%'
             OR s.user_id::text = $1",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(plain, 0, "the session id itself is not stored");
}

#[sqlx::test]
async fn sign_in_rotates_the_session_id(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    app.sign_out().await;
    app.csrf().await;
    let before = app.session_cookie().expect("an anonymous session");
    app.sign_in("ada@example.com", PASSWORD).await;
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after);

    // A browser still holding the pre-sign-in id (say, one planted by an
    // attacker) is not signed in.
    let mut planted = app.other_browser();
    planted.cookies.insert("tollgate_session".into(), before);
    assert_eq!(planted.signed_in_as().await, None);
    assert_eq!(app.signed_in_as().await.as_deref(), Some("Ada"));
}

#[sqlx::test]
async fn sign_out_revokes_the_session_on_the_server(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let id = app.session_cookie().unwrap();
    let res = app.sign_out().await;
    assert_eq!(res.location(), "/login");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE id_hash = sha256($1::bytea)")
            .bind(id.as_bytes())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(rows, 0);
    // Replaying the old cookie does not sign anyone in.
    let mut replay = app.other_browser();
    replay.cookies.insert("tollgate_session".into(), id);
    assert_eq!(replay.signed_in_as().await, None);
    assert_eq!(replay.get("/account").await.status, StatusCode::FOUND);
}

#[sqlx::test]
async fn a_session_survives_a_server_restart(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let mut restarted = app.restarted();
    assert_eq!(restarted.signed_in_as().await.as_deref(), Some("Ada"));
}
