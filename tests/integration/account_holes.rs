//! Holes in accounts, sessions and keys: a rotated key that could not be
//! revoked, sessions that came back, made-up client addresses, unthrottled
//! hashing, tokens at rest and in logs, and a key that outlived its
//! creator's removal.

use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate::accounts::sessions::PgSessionStore;
use tollgate::config::{Config, SmtpConfig};
use tower_sessions::session::Id;
use tower_sessions::SessionStore;

async fn key_id(db: &PgPool, revoked: bool) -> uuid::Uuid {
    let sql = if revoked {
        "SELECT id FROM api_keys WHERE revoked_at IS NOT NULL"
    } else {
        "SELECT id FROM api_keys WHERE revoked_at IS NULL"
    };
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

#[sqlx::test]
async fn a_rotated_key_can_be_revoked_during_its_overlap(db: PgPool) {
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let leaked = app.create_key("server", "live", &["*"], "never").await;
    let id = key_id(&db, false).await;
    let csrf = extract_csrf(&app.get("/account/keys").await.body);
    app.post_form(
        "/api/rotate_api_key",
        &[
            ("csrf", &csrf),
            ("key_id", &id.to_string()),
            ("overlap_hours", "168"),
        ],
    )
    .await;
    let page = app.get("/account/keys").await.body;
    // The page offers Revoke on the key still working during its overlap.
    let row = page
        .split("<tr")
        .find(|r| r.contains("expiring"))
        .expect("the old key's row");
    assert!(row.contains("/api/revoke_api_key"), "{row}");
    assert!(row.contains(&id.to_string()), "{row}");
    assert_eq!(
        app.call("GET", "/v1/ping", Some(&leaked), None, &[])
            .await
            .status,
        StatusCode::OK
    );

    let csrf = extract_csrf(&page);
    let res = app
        .post_form(
            "/api/revoke_api_key",
            &[("csrf", &csrf), ("key_id", &id.to_string())],
        )
        .await;
    assert_eq!(res.location(), "/account/keys");
    assert!(app.get("/account/keys").await.body.contains("Key revoked."));
    let refused = app.call("GET", "/v1/ping", Some(&leaked), None, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "ended at once");
    assert_eq!(refused.json()["code"], "api_key_revoked");
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'api_key.revoked'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(audit, 1);
}

#[sqlx::test]
async fn a_session_ended_while_a_request_was_in_flight_stays_ended(db: PgPool) {
    let store = PgSessionStore::new(db.clone());
    for ending in ["sign-out", "password reset"] {
        let mut app = TestApp::new(db.clone()).await;
        let email = format!("ada-{}@example.com", ending.len());
        app.sign_up("Ada", &email, PASSWORD).await;
        let stolen = app.session_cookie().unwrap();
        let id: Id = stolen.parse().unwrap();
        // A request with the cookie (an attacker's) has loaded the session …
        let in_flight = store.load(&id).await.unwrap().expect("a live session");
        // … when the session is ended …
        match ending {
            "sign-out" => {
                app.sign_out().await;
            }
            _ => {
                let mut other = app.other_browser();
                let csrf = other.csrf().await;
                other
                    .post_form(
                        "/api/password_forgot",
                        &[("csrf", &csrf), ("email", &email)],
                    )
                    .await;
                let (_, body) = last_email(&db, &email).await.unwrap();
                let link = link_path(&body);
                assert!(link.contains("token="), "{body}");
                let token = link.split("token=").nth(1).unwrap().to_string();
                let csrf = extract_csrf(&other.get(&link).await.body);
                let res = other
                    .post_form(
                        "/api/password_reset",
                        &[
                            ("csrf", &csrf),
                            ("token", &token),
                            ("password", "a brand new password"),
                        ],
                    )
                    .await;
                assert_eq!(res.location(), "/account", "{ending}");
            }
        }
        assert!(
            store.load(&id).await.unwrap().is_none(),
            "{ending} ended it"
        );
        // … and then finishes, saving what it loaded.
        store.save(&in_flight).await.unwrap();
        assert!(
            store.load(&id).await.unwrap().is_none(),
            "a late save after {ending} does not bring the session back"
        );
        let mut thief = app.other_browser();
        thief
            .cookies
            .insert(tollgate::startup::SESSION_COOKIE.into(), stolen);
        assert_eq!(thief.signed_in_as().await, None, "{ending}");
    }
}

#[sqlx::test]
async fn made_up_forwarded_addresses_do_not_dodge_the_address_lock(db: PgPool) {
    let mut app = TestApp::new(db).await;
    // Behind one trusted proxy, the client writes what it likes left of the
    // address the proxy appends: a new address for every attempt.
    for i in 0..30 {
        app.ip = format!("10.66.{}.{}, 203.0.113.7", i / 200, i % 200);
        app.sign_in(&format!("nobody{i}@example.com"), "wrong password!")
            .await;
    }
    app.ip = "10.66.9.9, 203.0.113.7".into();
    app.sign_in("someone@example.com", "wrong password!").await;
    let page = app.get("/login").await.body;
    assert!(page.contains("Too many failed sign-ins."), "{page}");
}

async fn flash_after(app: &mut TestApp, res: TestResponse) -> String {
    let back = res.location().to_string();
    assert!(
        !back.is_empty(),
        "{} {:?} {}",
        res.status,
        res.headers,
        res.body
    );
    app.get(&back).await.body
}

#[sqlx::test]
async fn sign_ups_and_password_resets_are_throttled_per_address(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    const SLOW: &str = "from your network";
    for i in 0..10 {
        let mut visitor = app.other_browser();
        visitor.ip = "192.0.2.50".into();
        let res = visitor
            .sign_up("Eve", &format!("eve{i}@example.com"), PASSWORD)
            .await;
        assert_eq!(res.location(), "/account", "sign-up {i}");
    }
    let mut visitor = app.other_browser();
    visitor.ip = "192.0.2.50".into();
    let res = visitor
        .sign_up("Eve", "eve-more@example.com", PASSWORD)
        .await;
    let page = flash_after(&mut visitor, res).await;
    assert!(page.contains("Too many sign-ups"), "{page}");
    assert!(page.contains(SLOW), "{page}");
    assert!(
        page.contains("eve-more@example.com"),
        "what was typed is kept"
    );
    let none: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'eve-more@example.com'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(none, 0);
    // Another address is not affected.
    let mut elsewhere = app.other_browser();
    elsewhere.ip = "192.0.2.51".into();
    assert_eq!(
        elsewhere
            .sign_up("Fay", "fay@example.com", PASSWORD)
            .await
            .location(),
        "/account"
    );

    // Resets: asking for links and trying made-up tokens count alike.
    let mut asker = app.other_browser();
    asker.ip = "192.0.2.60".into();
    for i in 0..5 {
        let csrf = asker.csrf().await;
        asker
            .post_form(
                "/api/password_forgot",
                &[("csrf", &csrf), ("email", &format!("x{i}@example.com"))],
            )
            .await;
        let csrf = asker.csrf().await;
        let res = asker
            .post_form(
                "/api/password_reset",
                &[
                    ("csrf", &csrf),
                    ("token", "made-up-token"),
                    ("password", "a brand new password"),
                ],
            )
            .await;
        let page = flash_after(&mut asker, res).await;
        assert!(page.contains("invalid, already used, or expired"), "{page}");
    }
    let csrf = asker.csrf().await;
    let res = asker
        .post_form(
            "/api/password_forgot",
            &[("csrf", &csrf), ("email", "eve0@example.com")],
        )
        .await;
    let page = flash_after(&mut asker, res).await;
    assert!(page.contains("Too many password reset attempts"), "{page}");
    let resets: i64 = sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE to_address = 'eve0@example.com' AND kind = 'password_reset'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(resets, 0, "no reset email sent");
}

/// An SMTP server on a real port that accepts every message and keeps it.
async fn smtp_sink() -> (String, Arc<Mutex<String>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let received = Arc::new(Mutex::new(String::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = received.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let keep = keep.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            write.write_all(b"250 kept\r\n").await.unwrap();
                        } else {
                            let mut k = keep.lock().unwrap();
                            k.push_str(&line);
                            k.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (format!("smtp://{addr}"), received)
}

#[sqlx::test]
async fn a_sent_emails_token_cannot_be_read_back(db: PgPool) {
    let (url, received) = smtp_sink().await;
    let smtp = SmtpConfig {
        url,
        from: "Tollgate <no-reply@portal.test>".into(),
    };
    let config = Config {
        smtp: Some(smtp.clone()),
        ..Config::for_tests()
    };
    let mut app = TestApp::with_config(db.clone(), config).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let csrf = extract_csrf(&app.get("/account/members").await.body);
    app.post_form(
        "/api/invite_member",
        &[
            ("csrf", &csrf),
            ("email", "bo@example.com"),
            ("role", "developer"),
        ],
    )
    .await;
    let shutdown = tollgate::shutdown::Shutdown::default();
    let sender = tokio::spawn(tollgate::email::run_sender(
        db.clone(),
        smtp,
        shutdown.clone(),
    ));
    for _ in 0..300 {
        let unsent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE sent_at IS NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        if unsent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.trigger();
    sender.await.unwrap();
    // The invitation went out with its link …
    let mail = received.lock().unwrap().clone();
    let start = mail.find("/invitations/").expect("the link was sent");
    let token: String = mail[start + "/invitations/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.len() >= 40, "{mail}");
    // … and the outbox no longer holds it anywhere.
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_outbox WHERE body_text LIKE '%' || $1 || '%' OR body_secret LIKE '%' || $1 || '%' OR subject LIKE '%' || $1 || '%'",
    )
    .bind(&token)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(kept, 0);
    let (body, secret): (String, Option<String>) =
        sqlx::query_as("SELECT body_text, body_secret FROM email_outbox WHERE kind = 'invitation'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(body.contains("/invitations/[removed once sent]"), "{body}");
    assert_eq!(secret, None);
    // The link still works for its reader.
    let mut bo = app.other_browser();
    let page = bo.get(&format!("/invitations/{token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("developer"), "{}", page.body);
}

/// Log lines written while `f` runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[sqlx::test]
async fn invitation_tokens_stay_out_of_the_request_log(db: PgPool) {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@example.com", PASSWORD).await;
    let joiner = owner
        .invite_and_join("bo@example.com", "developer", "Bo")
        .await;
    drop(joiner);
    let token: String = {
        let (_, body) = last_email(&db, "bo@example.com").await.unwrap();
        link_path(&body)
            .trim_start_matches("/invitations/")
            .to_string()
    };
    let mut visitor = owner.other_browser();
    visitor.get(&format!("/invitations/{token}")).await;
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("path=/invitations/[token]"),
        "the request was logged: {text}"
    );
    assert!(!text.contains(&token), "the token never is");
}

#[sqlx::test]
async fn behind_https_the_new_key_cookie_is_secure(db: PgPool) {
    // Secure cookies on (as behind https); the portal's address stays the
    // tests' own so their forms pass the origin check.
    let config = Config {
        secure_cookies: true,
        ..Config::for_tests()
    };
    let mut app = TestApp::with_config(db, config).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let csrf = extract_csrf(&app.get("/account/keys").await.body);
    let res = app
        .post_form(
            "/api/create_api_key",
            &[
                ("csrf", &csrf),
                ("name", "server"),
                ("mode", "live"),
                ("expires_in_days", "never"),
                ("scopes[0]", "*"),
            ],
        )
        .await;
    let cookie = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_new_key="))
        .expect("the key's cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let shown = app.get("/account/keys").await;
    let cleared = shown
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_new_key="))
        .expect("the cookie is cleared");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("; Secure"),
        "{cleared}"
    );
}

#[sqlx::test]
async fn a_key_created_during_its_creators_removal_does_not_survive_it(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@example.com", PASSWORD).await;
    let mut dev = owner
        .invite_and_join("dev@example.com", "developer", "Dev")
        .await;
    let dev_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'dev@example.com'")
            .fetch_one(&db)
            .await
            .unwrap();
    let org = owner.org_of("olive@example.com").await;
    let csrf = extract_csrf(&dev.get("/account/keys").await.body);
    // The removal is under way: the membership is gone and the member's keys
    // are being revoked, in a transaction that has not committed yet.
    let mut removal = db.begin().await.unwrap();
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org)
        .bind(dev_id)
        .execute(&mut *removal)
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL")
        .bind(org)
        .bind(dev_id)
        .execute(&mut *removal)
        .await
        .unwrap();
    // Meanwhile the member submits the key form.
    let fields: Vec<(String, String)> = [
        ("csrf", csrf.as_str()),
        ("name", "late key"),
        ("mode", "live"),
        ("expires_in_days", "never"),
        ("scopes[0]", "*"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let creating = tokio::spawn(async move {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        dev.post_form("/api/create_api_key", &pairs).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    removal.commit().await.unwrap();
    creating.await.unwrap();
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE created_by = $1 AND (revoked_at IS NULL OR revoked_at > now())",
    )
    .bind(dev_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(live, 0, "no key of the removed member works");
}
