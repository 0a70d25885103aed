//! Sign-in throttling, per account and per client address, and throttling
//! of sign-ups and password resets per client address, counted in
//! PostgreSQL so it holds across app instances.
//!
//! An account is locked once `ACCOUNT_LIMIT` sign-ins in a row have failed
//! within `WINDOW` (a success ends the run): the next attempt — the tenth — is
//! refused without checking the password, until the oldest of those failures
//! leaves the window. An address is locked after `IP_LIMIT` failures within
//! `WINDOW`, whichever accounts they were for. Each attempt is checked and
//! recorded (as a failure, before the password is hashed) in one
//! transaction that holds the account's and the address's advisory locks,
//! so a concurrent burst, on any number of instances, gets exactly the
//! limit and no more; a success then marks its own attempt.

use sqlx::{PgConnection, PgPool};
use time::{Duration, OffsetDateTime};

pub const ACCOUNT_LIMIT: i64 = 9;
pub const IP_LIMIT: i64 = 30;
pub const WINDOW: Duration = Duration::minutes(15);

/// Takes the transaction-scoped advisory lock named `name` (keys of one
/// kind never meet another kind's: the name carries its kind).
async fn lock(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(name)
        .execute(conn)
        .await
        .map(|_| ())
}

/// One sign-in attempt: refused (`Err(seconds to wait)`) while the account
/// or the address is locked, else recorded as a failure at once and its id
/// returned, for `succeeded` to mark it if the password is right.
pub async fn begin_sign_in(
    db: &PgPool,
    email: &str,
    ip: &str,
    now: OffsetDateTime,
) -> Result<Result<i64, i64>, sqlx::Error> {
    let key = crate::http::proxies::throttle_key(ip);
    let ip = key.as_str();
    let mut tx = db.begin().await?;
    // Always the account's lock first, then the address's: no cycles.
    lock(&mut tx, &format!("sign-in account {email}")).await?;
    lock(&mut tx, &format!("sign-in address {ip}")).await?;
    if let Some(wait) = locked_for(&mut tx, email, ip, now).await? {
        return Ok(Err(wait));
    }
    let id: i64 = sqlx::query_scalar("INSERT INTO login_attempts (email, ip, succeeded, at) VALUES ($1, $2, false, $3) RETURNING id")
        .bind(email)
        .bind(ip)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(id))
}

/// Marks a sign-in attempt that `begin_sign_in` recorded as a success.
pub async fn succeeded(db: &PgPool, attempt: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE login_attempts SET succeeded = true WHERE id = $1")
        .bind(attempt)
        .execute(db)
        .await
        .map(|_| ())
}

/// `Some(seconds)` to wait when sign-in is locked for this email or address.
pub async fn locked_for(
    db: &mut PgConnection,
    email: &str,
    ip: &str,
    now: OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    let since = now - WINDOW;
    let (account_failures, account_oldest): (i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*), min(at) FROM (
             SELECT at FROM login_attempts
             WHERE email = $1 AND NOT succeeded AND at > $2
               AND at > coalesce((SELECT max(at) FROM login_attempts WHERE email = $1 AND succeeded), '-infinity')
             ORDER BY at DESC LIMIT $3
         ) recent",
    )
    .bind(email)
    .bind(since)
    .bind(ACCOUNT_LIMIT)
    .fetch_one(&mut *db)
    .await?;
    let (ip_failures, ip_oldest): (i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*), min(at) FROM (
             SELECT at FROM login_attempts WHERE ip = $1 AND NOT succeeded AND at > $2
             ORDER BY at DESC LIMIT $3
         ) recent",
    )
    .bind(ip)
    .bind(since)
    .bind(IP_LIMIT)
    .fetch_one(&mut *db)
    .await?;

    let wait = |oldest: Option<OffsetDateTime>| {
        oldest.map(|t| ((t + WINDOW) - now).whole_seconds().max(1))
    };
    let account = (account_failures >= ACCOUNT_LIMIT)
        .then(|| wait(account_oldest))
        .flatten();
    let address = (ip_failures >= IP_LIMIT).then(|| wait(ip_oldest)).flatten();
    Ok(account.max(address))
}

/// What else is throttled per client address: each attempt costs a
/// password hash or sends an email.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SignUp,
    /// Asking for a reset link, or choosing a new password with one.
    PasswordReset,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::SignUp => "sign_up",
            Action::PasswordReset => "password_reset",
        }
    }

    /// Attempts allowed per address within [`ADDRESS_WINDOW`].
    pub fn limit(self) -> i64 {
        match self {
            Action::SignUp => 10,
            Action::PasswordReset => 10,
        }
    }

    /// As people read it: "Too many {} from your network".
    pub fn label(self) -> &'static str {
        match self {
            Action::SignUp => "sign-ups",
            Action::PasswordReset => "password reset attempts",
        }
    }
}

pub const ADDRESS_WINDOW: Duration = Duration::hours(1);

/// `Some(seconds)` to wait when `action` is locked for this address.
pub async fn address_locked_for(
    db: &mut PgConnection,
    action: Action,
    ip: &str,
    now: OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    let (count, oldest): (i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*), min(at) FROM (
             SELECT at FROM address_attempts WHERE action = $1 AND ip = $2 AND at > $3
             ORDER BY at DESC LIMIT $4
         ) recent",
    )
    .bind(action.as_str())
    .bind(ip)
    .bind(now - ADDRESS_WINDOW)
    .bind(action.limit())
    .fetch_one(db)
    .await?;
    Ok((count >= action.limit())
        .then(|| oldest.map(|t| ((t + ADDRESS_WINDOW) - now).whole_seconds().max(1)))
        .flatten())
}

/// Counts an attempt that was allowed.
pub async fn record_address(
    db: &mut PgConnection,
    action: Action,
    ip: &str,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO address_attempts (action, ip, at) VALUES ($1, $2, $3)")
        .bind(action.as_str())
        .bind(ip)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Refuses when `action` is locked for `ip`, else counts the attempt: both
/// under the address's advisory lock, so a concurrent burst gets exactly
/// the limit.
pub async fn admit_address(
    db: &PgPool,
    action: Action,
    ip: &str,
    now: OffsetDateTime,
) -> Result<(), super::AccountsError> {
    let key = crate::http::proxies::throttle_key(ip);
    let ip = key.as_str();
    let mut tx = db.begin().await?;
    lock(&mut tx, &format!("{} address {ip}", action.as_str())).await?;
    if let Some(retry_after_secs) = address_locked_for(&mut tx, action, ip, now).await? {
        tracing::warn!(ip, ?action, "refused: too many attempts from this address");
        return Err(super::AccountsError::AddressThrottled {
            action: action.label(),
            retry_after_secs,
        });
    }
    record_address(&mut tx, action, ip, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets attempts older than the windows; run periodically.
pub async fn prune(db: &PgPool, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM login_attempts WHERE at < $1")
        .bind(now - WINDOW - Duration::hours(1))
        .execute(db)
        .await?;
    let a = sqlx::query("DELETE FROM address_attempts WHERE at < $1")
        .bind(now - ADDRESS_WINDOW - Duration::hours(1))
        .execute(db)
        .await?;
    Ok(r.rows_affected() + a.rows_affected())
}
