//! Sign-in throttling, per account and per client address, counted in
//! PostgreSQL so it holds across app instances.
//!
//! An account is locked once `ACCOUNT_LIMIT` sign-ins in a row have failed
//! within `WINDOW` (a success ends the run): the next attempt — the tenth — is
//! refused without checking the password, until the oldest of those failures
//! leaves the window. An address is locked after `IP_LIMIT` failures within
//! `WINDOW`, whichever accounts they were for. Concurrent attempts can each
//! pass the check before any of them is recorded, so a burst may get a few
//! more tries than the limit; never more than the burst's size.

use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

pub const ACCOUNT_LIMIT: i64 = 9;
pub const IP_LIMIT: i64 = 30;
pub const WINDOW: Duration = Duration::minutes(15);

/// `Some(seconds)` to wait when sign-in is locked for this email or address.
pub async fn locked_for(
    db: &PgPool,
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
    .fetch_one(db)
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
    .fetch_one(db)
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

pub async fn record(
    db: &PgPool,
    email: &str,
    ip: &str,
    succeeded: bool,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO login_attempts (email, ip, succeeded, at) VALUES ($1, $2, $3, $4)")
        .bind(email)
        .bind(ip)
        .bind(succeeded)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets attempts older than the window; run periodically.
pub async fn prune(db: &PgPool, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM login_attempts WHERE at < $1")
        .bind(now - WINDOW - Duration::hours(1))
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}
