//! The credit ledger's Rust side. Postings go through the `ledger_post`
//! database function (balanced, idempotent, projected into `org_meters`);
//! the gateway's hot path charges through `gateway_authorize`.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// Credits a test key's sandbox starts with (and is refilled to).
pub const SANDBOX_START: i64 = 1000;

/// Posts a balanced transaction; `false` when `key` was posted before.
pub async fn post(
    conn: &mut PgConnection,
    org: Uuid,
    kind: &str,
    key: &str,
    entries: &[(&str, i64)],
    now: OffsetDateTime,
    memo: &str,
) -> Result<bool, sqlx::Error> {
    let accounts: Vec<&str> = entries.iter().map(|(a, _)| *a).collect();
    let amounts: Vec<i64> = entries.iter().map(|(_, x)| *x).collect();
    sqlx::query_scalar("SELECT ledger_post($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, $7)")
        .bind(org)
        .bind(kind)
        .bind(key)
        .bind(accounts)
        .bind(amounts)
        .bind(now)
        .bind(memo)
        .fetch_one(conn)
        .await
}

/// Opens an organization's meters for a period: its plan's included credits
/// (expiring at the period's end) and the starting sandbox balance.
pub async fn open(
    conn: &mut PgConnection,
    org: Uuid,
    included: i64,
    plan_name: &str,
    period_start: OffsetDateTime,
    period_end: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO org_meters (org_id, included_expires_at, period_start) VALUES ($1, $2, $3)
         ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(org)
    .bind(period_end)
    .bind(period_start)
    .execute(&mut *conn)
    .await?;
    if included > 0 {
        let key = format!("grant:{org}:{period_start}");
        let memo = format!("included credits of the {plan_name} plan");
        post(
            conn,
            org,
            "grant",
            &key,
            &[("grants", -included), ("included", included)],
            period_start,
            &memo,
        )
        .await?;
    }
    let key = format!("sandbox:{org}:start");
    post(
        conn,
        org,
        "sandbox_grant",
        &key,
        &[
            ("sandbox_source", -SANDBOX_START),
            ("sandbox", SANDBOX_START),
        ],
        period_start,
        "starting sandbox balance",
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Balances {
    pub included: i64,
    pub purchased: i64,
    pub sandbox: i64,
}

impl Balances {
    pub fn live(&self) -> i64 {
        self.included + self.purchased
    }
}

pub async fn balances(db: &PgPool, org: Uuid) -> Result<Balances, sqlx::Error> {
    Ok(
        sqlx::query_as("SELECT included, purchased, sandbox FROM org_meters WHERE org_id = $1")
            .bind(org)
            .fetch_optional(db)
            .await?
            .unwrap_or_default(),
    )
}

/// What [`audit`] found: every count is zero in a sound ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audit {
    /// Organizations with meters.
    pub organizations: i64,
    /// Transactions whose entries do not sum to zero.
    pub unbalanced: i64,
    /// Organizations whose projected balances (`org_meters`) differ from the
    /// sums of their ledger accounts.
    pub drifting: i64,
}

impl Audit {
    pub fn is_sound(&self) -> bool {
        self.unbalanced == 0 && self.drifting == 0
    }
}

/// Checks the whole ledger: every transaction balances, and every
/// organization's balances equal the sums of its ledger accounts.
pub async fn audit(db: &PgPool) -> Result<Audit, sqlx::Error> {
    let (organizations, drifting): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE
                m.included <> coalesce(s.included, 0) OR m.purchased <> coalesce(s.purchased, 0)
             OR m.sandbox <> coalesce(s.sandbox, 0))
           FROM org_meters m
           LEFT JOIN (SELECT org_id,
                             sum(amount) FILTER (WHERE account = 'included') AS included,
                             sum(amount) FILTER (WHERE account = 'purchased') AS purchased,
                             sum(amount) FILTER (WHERE account = 'sandbox') AS sandbox
                        FROM ledger_entries GROUP BY org_id) s ON s.org_id = m.org_id",
    )
    .fetch_one(db)
    .await?;
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM ledger_entries GROUP BY transaction_id HAVING sum(amount) <> 0) t",
    )
    .fetch_one(db)
    .await?;
    Ok(Audit {
        organizations,
        unbalanced,
        drifting,
    })
}
