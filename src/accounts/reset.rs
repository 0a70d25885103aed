//! Password reset by a one-time link that expires after `VALID_FOR`. The
//! request always looks the same to the requester, whether or not the address
//! has an account, so it cannot be used to find out who has one.

use super::throttle::{self, Action};
use super::{password, sessions, users, AccountsError, Email, NewPassword};
use crate::config::Config;
use crate::crypto::{random_token, sha256};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const VALID_FOR: Duration = Duration::hours(1);

pub async fn request(
    db: &PgPool,
    config: &Config,
    email: &str,
    ip: &str,
    now: OffsetDateTime,
) -> Result<(), AccountsError> {
    let email = Email::parse(email).map_err(|e| AccountsError::field("email", e))?;
    throttle::admit_address(db, Action::PasswordReset, ip, now).await?;
    let Some(user) = users::by_email(db, &email).await? else {
        tracing::info!("password reset requested for an unknown address");
        return Ok(());
    };
    let token = random_token(32);
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sha256(token.as_bytes()))
        .bind(user.id)
        .bind(now)
        .bind(now + VALID_FOR)
        .execute(&mut *tx)
        .await?;
    let link = config.url(&format!("/password/reset?token={token}"));
    let body = format!(
        "Hello {name},\n\nSomeone asked to reset the password of your Tollgate account.\n\
         Choose a new password here (the link works once, for one hour):\n{link}\n\n\
         If it was not you, ignore this email; your password stays as it is.\n",
        name = user.display_name
    );
    crate::email::enqueue(
        &mut tx,
        now,
        &user.email,
        "Reset your Tollgate password",
        &body,
        "password_reset",
        &[&token],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets the new password, uses up the link, and ends every session the user
/// had. Returns the user, to sign them in on this browser.
///
/// The link is checked before the password is hashed, so a made-up token
/// costs no hash; attempts count against the address's reset throttle.
pub async fn reset(
    db: &PgPool,
    token: &str,
    new_password: String,
    ip: &str,
    now: OffsetDateTime,
) -> Result<Uuid, AccountsError> {
    let password =
        NewPassword::parse(new_password).map_err(|e| AccountsError::field("password", e))?;
    throttle::admit_address(db, Action::PasswordReset, ip, now).await?;
    let usable: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2)",
    )
    .bind(sha256(token.as_bytes()))
    .bind(now)
    .fetch_one(db)
    .await?;
    if !usable {
        return Err(AccountsError::InvalidToken);
    }
    let hash = password::hash(password.expose().to_string()).await?;
    let mut tx = db.begin().await?;
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE password_resets SET used_at = $2
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
         RETURNING user_id",
    )
    .bind(sha256(token.as_bytes()))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let user = user.ok_or(AccountsError::InvalidToken)?;
    users::set_password(&mut tx, user, &hash, now).await?;
    // Other links for the same user die with this one.
    sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    crate::audit::record(
        &mut tx,
        now,
        Some(user),
        None,
        crate::audit::Action::UserPasswordReset,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    sessions::revoke_all_for_user(db, user).await?;
    Ok(user)
}
