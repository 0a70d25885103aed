//! Email verification: a one-time link, sent through the outbox (or SMTP)
//! when an account is made and again on request (at most once a minute and
//! `MAX_PER_DAY` times a day per account), valid for `VALID_FOR`. Following
//! it marks the address verified. A person who signs up through an
//! invitation proved the address already (the invitation came to it).
//!
//! What needs a verified address: a free trial, unless a card is on file
//! (`billing::changes::start_trial`), and, when the operator says so
//! (`TOLLGATE_LIVE_KEYS_NEED_VERIFIED_EMAIL`), live keys.

use super::AccountsError;
use crate::config::Config;
use crate::crypto::{random_token, sha256};
use sqlx::{PgConnection, PgPool};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const VALID_FOR: Duration = Duration::days(2);
pub const RESEND_AFTER: Duration = Duration::minutes(1);
pub const MAX_PER_DAY: i64 = 5;

/// Sends `user` a link that verifies `email`, in the caller's transaction.
pub async fn send(
    conn: &mut PgConnection,
    config: &Config,
    user: Uuid,
    email: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let token = random_token(32);
    sqlx::query("INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(sha256(token.as_bytes()))
        .bind(user)
        .bind(email)
        .bind(now)
        .bind(now + VALID_FOR)
        .execute(&mut *conn)
        .await?;
    let link = config.url(&format!("/verify-email?token={token}"));
    let body = format!(
        "Hello {name},\n\nConfirm that {email} is your address (the link works once, for two days):\n{link}\n\n\
         With a confirmed address you can start a free trial. If you did not sign up for Tollgate, ignore this email.\n"
    );
    crate::email::enqueue(conn, now, email, "Confirm your email address", &body, "email_verification", &[&token]).await?;
    Ok(())
}

/// Marks `user`'s address verified now (an invitation proved it).
pub async fn mark_verified(conn: &mut PgConnection, user: Uuid, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email_verified_at = coalesce(email_verified_at, $2) WHERE id = $1")
        .bind(user)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn is_verified(db: &PgPool, user: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(db)
        .await
        .map(|v| v.unwrap_or(false))
}

/// What a request for another link did.
#[derive(Debug, PartialEq, Eq)]
pub enum Resent {
    Sent,
    AlreadyVerified,
    /// Too soon after the last one, or too many today: seconds to wait.
    Wait(i64),
}

/// Sends another link, unless the address is verified already or links
/// went out too recently. Under the user's row lock: two clicks send one.
pub async fn resend(db: &PgPool, config: &Config, user: Uuid, now: OffsetDateTime) -> Result<Resent, AccountsError> {
    let mut tx = db.begin().await?;
    let row: Option<(String, String, bool)> =
        sqlx::query_as("SELECT email, display_name, email_verified_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((email, name, verified)) = row else {
        return Err(AccountsError::NotFound);
    };
    if verified {
        return Ok(Resent::AlreadyVerified);
    }
    let sent: Vec<OffsetDateTime> = sqlx::query_scalar(
        "SELECT created_at FROM email_verifications WHERE user_id = $1 AND created_at > $2 ORDER BY created_at DESC",
    )
    .bind(user)
    .bind(now - Duration::days(1))
    .fetch_all(&mut *tx)
    .await?;
    if let Some(last) = sent.first() {
        if *last + RESEND_AFTER > now {
            return Ok(Resent::Wait((*last + RESEND_AFTER - now).whole_seconds().max(1)));
        }
    }
    if sent.len() as i64 >= MAX_PER_DAY {
        let oldest = sent.last().copied().unwrap_or(now);
        return Ok(Resent::Wait((oldest + Duration::days(1) - now).whole_seconds().max(1)));
    }
    send(&mut tx, config, user, &email, &name, now).await?;
    tx.commit().await?;
    Ok(Resent::Sent)
}

/// Follows a link: the address it was sent to is verified, if it is still
/// the account's address. Each link works once.
pub async fn confirm(db: &PgPool, token: &str, now: OffsetDateTime) -> Result<Uuid, AccountsError> {
    let mut tx = db.begin().await?;
    let row: Option<(Uuid, String, OffsetDateTime, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT user_id, email, expires_at, used_at FROM email_verifications WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(sha256(token.trim().as_bytes()))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user, email, expires, used)) = row else {
        return Err(AccountsError::InvalidToken);
    };
    if used.is_some() || expires <= now {
        return Err(AccountsError::InvalidToken);
    }
    let current: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(user).fetch_optional(&mut *tx).await?;
    if !current.is_some_and(|c| c.eq_ignore_ascii_case(&email)) {
        return Err(AccountsError::InvalidToken);
    }
    sqlx::query("UPDATE email_verifications SET used_at = $2 WHERE token_hash = $1")
        .bind(sha256(token.trim().as_bytes()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    mark_verified(&mut tx, user, now).await?;
    crate::audit::record(&mut tx, now, Some(user), None, crate::audit::Action::UserEmailVerified, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(user)
}

/// The mailbox an address delivers to, for "one trial per address": the
/// lowercased address without a `+tag`, and for Gmail without the dots it
/// ignores (and `googlemail.com` as `gmail.com`), so `Me.Name+2@gmail.com`
/// and `mename@googlemail.com` are one mailbox.
pub fn mailbox(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let local = local.split('+').next().unwrap_or(local);
    let domain = domain.trim_end_matches('.');
    match domain {
        "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
        _ => format!("{local}@{domain}"),
    }
}

#[cfg(test)]
mod tests {
    use super::mailbox;

    #[test]
    fn tags_and_gmail_dots_name_the_same_mailbox() {
        assert_eq!(mailbox("Ada+trial2@Example.com"), "ada@example.com");
        assert_eq!(mailbox("a.d.a+x@gmail.com"), mailbox("ada@googlemail.com"));
        assert_eq!(mailbox("ada@example.com."), "ada@example.com");
        assert_ne!(mailbox("a.da@example.com"), mailbox("ada@example.com"), "dots matter elsewhere");
    }
}
