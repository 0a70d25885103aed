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
