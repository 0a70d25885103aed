use crate::helpers::*;
use sqlx::PgPool;

const THROTTLED: &str = "Too many failed sign-ins.";
const WRONG: &str = "Wrong email or password.";

async fn attempt(app: &mut TestApp, email: &str, password: &str) -> String {
    let res = app.sign_in(email, password).await;
    if res.location() == "/account" {
        return "signed in".into();
    }
    app.get("/login").await.body
}

#[sqlx::test]
async fn the_tenth_wrong_password_in_a_row_is_refused_with_a_throttling_message(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    app.sign_out().await;
    for i in 1..=9 {
        let page = attempt(&mut app, "ada@example.com", "wrong password!").await;
        assert!(page.contains(WRONG), "attempt {i}");
        assert!(!page.contains(THROTTLED), "attempt {i}");
    }
    let tenth = attempt(&mut app, "ada@example.com", "wrong password!").await;
    assert!(tenth.contains(THROTTLED), "{tenth}");
    assert!(tenth.contains("try again in 15 minutes"), "{tenth}");
    // While locked, even the right password is refused…
    let locked = attempt(&mut app, "ada@example.com", PASSWORD).await;
    assert!(locked.contains(THROTTLED));
    // …from any address.
    let mut elsewhere = app.other_browser();
    assert!(attempt(&mut elsewhere, "ada@example.com", PASSWORD)
        .await
        .contains(THROTTLED));

    // When the window has passed, the right password works again.
    app.clock.advance(time::Duration::minutes(15));
    assert_eq!(
        attempt(&mut app, "ada@example.com", PASSWORD).await,
        "signed in"
    );
}

#[sqlx::test]
async fn a_successful_sign_in_ends_the_run_of_failures(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    app.sign_out().await;
    for _ in 0..8 {
        attempt(&mut app, "ada@example.com", "wrong password!").await;
    }
    assert_eq!(
        attempt(&mut app, "ada@example.com", PASSWORD).await,
        "signed in"
    );
    app.sign_out().await;
    for _ in 0..8 {
        assert!(attempt(&mut app, "ada@example.com", "wrong password!")
            .await
            .contains(WRONG));
    }
    assert_eq!(
        attempt(&mut app, "ada@example.com", PASSWORD).await,
        "signed in"
    );
}

#[sqlx::test]
async fn one_address_guessing_many_accounts_is_throttled(db: PgPool) {
    let mut app = TestApp::new(db).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    app.sign_out().await;
    // 30 failures spread over many accounts, from one address.
    for i in 0..30 {
        let page = attempt(
            &mut app,
            &format!("user{i}@example.com"),
            "guess guess guess",
        )
        .await;
        assert!(page.contains(WRONG), "attempt {i}");
    }
    assert!(attempt(&mut app, "ada@example.com", PASSWORD)
        .await
        .contains(THROTTLED));
    // Another address is not affected.
    let mut other = app.other_browser();
    assert_eq!(
        attempt(&mut other, "ada@example.com", PASSWORD).await,
        "signed in"
    );
}

/// The throttles used to check, then hash, then record: a burst of attempts
/// at once all passed the check. Each attempt is now checked and recorded
/// in one step under the account's and the address's locks, so a burst gets
/// exactly the limit.
#[sqlx::test]
async fn a_concurrent_burst_gets_exactly_the_limit_of_attempts(db: PgPool) {
    use tollgate::accounts::{signin, throttle};
    let mut app = TestApp::new(db.clone()).await;
    app.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let now = time::OffsetDateTime::now_utc();
    let attempts = (0..20).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            signin::sign_in(&db, "ada@example.com", format!("wrong password {i}"), "198.51.100.9", now).await
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    let throttled = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(tollgate::accounts::AccountsError::Throttled { .. })))
        .count();
    let checked: i64 = sqlx::query_scalar("SELECT count(*) FROM login_attempts WHERE email = 'ada@example.com'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(checked, throttle::ACCOUNT_LIMIT, "passwords checked: exactly the limit");
    assert_eq!(throttled as i64, 20 - throttle::ACCOUNT_LIMIT);

    // Sign-ups from one address: exactly the limit reach the hashing.
    let ups = (0..15).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            let form = signin::SignUp {
                display_name: format!("Burst {i}"),
                email: format!("burst{i}@example.com"),
                password: PASSWORD.into(),
                organization: String::new(),
                invitation: None,
            };
            signin::sign_up(&db, &tollgate::config::Config::for_tests(), form, "198.51.100.10", now).await
        })
    });
    let created = futures_util::future::join_all(ups).await.into_iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert_eq!(created as i64, throttle::Action::SignUp.limit());
}
