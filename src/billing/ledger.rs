//! The credit ledger's Rust side: its accounts and kinds as enums, and the
//! one write path ([`post`]) through the `ledger_post` database function
//! (balanced, idempotent, projected into `org_meters`). The gateway's hot
//! path charges through `gateway_authorize` instead.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::policy::SANDBOX_START;

crate::text_enum! {
    /// A ledger account. `Included`, `Purchased` and `Sandbox` are the
    /// customer's (projected into `org_meters`); the others are where credits
    /// come from and go to.
    pub enum Account {
        Included = "included",
        Purchased = "purchased",
        Sandbox = "sandbox",
        Revenue = "revenue",
        Grants = "grants",
        Payments = "payments",
        Expired = "expired",
        Adjustments = "adjustments",
        SandboxSource = "sandbox_source",
        SandboxSink = "sandbox_sink",
    }
}

crate::text_enum! {
    /// What a ledger transaction records.
    pub enum Kind {
        Grant = "grant",
        Purchase = "purchase",
        Usage = "usage",
        Refund = "refund",
        Expiry = "expiry",
        Adjustment = "adjustment",
        SandboxGrant = "sandbox_grant",
        SandboxUsage = "sandbox_usage",
        SandboxRefund = "sandbox_refund",
    }
}

/// One balanced transaction: its entries sum to zero.
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    pub org: Uuid,
    pub kind: Kind,
    /// Names the write: a retry with the same key moves nothing.
    pub key: &'a str,
    pub entries: &'a [(Account, i64)],
    pub memo: &'a str,
}

/// The one write path of the ledger outside the gateway's hot path (which
/// charges inside `gateway_authorize`): posts a balanced transaction through
/// `ledger_post` (idempotent, projected into `org_meters`, whose CHECKs
/// refuse a negative balance). `false` when the key was posted before.
pub async fn post(
    conn: &mut PgConnection,
    posting: Posting<'_>,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let accounts: Vec<Account> = posting.entries.iter().map(|(a, _)| *a).collect();
    let amounts: Vec<i64> = posting.entries.iter().map(|(_, x)| *x).collect();
    sqlx::query_scalar("SELECT ledger_post($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, $7)")
        .bind(posting.org)
        .bind(posting.kind)
        .bind(posting.key)
        .bind(accounts)
        .bind(amounts)
        .bind(now)
        .bind(posting.memo)
        .fetch_one(conn)
        .await
}

/// Why an adjustment was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    #[error("the organization has no balances")]
    NoMeters,
    #[error("the balance would go below zero: {available} available")]
    BelowZero { available: i64 },
    #[error("this period's included credits have lapsed; adjust the purchased credits instead")]
    Lapsed,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What an adjustment did: the balances before and after, and whether this
/// was a replay of one already posted (then nothing moved).
#[derive(Debug, Clone, Copy)]
pub struct Adjusted {
    pub before: Balances,
    pub after: Balances,
    pub replayed: bool,
}

/// An operator's credit adjustment (the console, the CLI): `amount` credits
/// into (or, negative, out of) the included or purchased balance, posted
/// through [`post`] with `key` (a form's one-time key: the same form sent
/// twice moves credits once), and the audit entry with the reason, who made
/// it and the balances before and after, in one transaction. The meters'
/// row is locked first, so the check that the balance stays at zero or above
/// and the posting see the same balance.
pub async fn adjust(
    db: &PgPool,
    org: Uuid,
    actor: Option<Uuid>,
    account: Account,
    amount: i64,
    reason: &str,
    key: &str,
    now: OffsetDateTime,
) -> Result<Adjusted, AdjustError> {
    let mut tx = db.begin().await?;
    let row: Option<(i64, Option<OffsetDateTime>, i64, i64)> = sqlx::query_as(
        "SELECT included, included_expires_at, purchased, sandbox FROM org_meters WHERE org_id = $1 FOR UPDATE",
    )
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let (included, expires, purchased, sandbox) = row.ok_or(AdjustError::NoMeters)?;
    let before = Balances { included, purchased, sandbox };
    // The organization is part of the key: a form's key used for another
    // organization is another adjustment.
    let key = format!("adjustment:{org}:{key}");
    let done: Option<i32> = sqlx::query_scalar("SELECT 1 FROM ledger_transactions WHERE idempotency_key = $1")
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
    if done.is_some() {
        return Ok(Adjusted { before, after: before, replayed: true });
    }
    let lapsed = expires.is_some_and(|e| e <= now);
    let available = match account {
        Account::Included if lapsed => {
            if amount > 0 {
                return Err(AdjustError::Lapsed);
            }
            0
        }
        Account::Included => included,
        _ => purchased,
    };
    if available + amount < 0 {
        return Err(AdjustError::BelowZero { available });
    }
    let posted = post(
        &mut tx,
        Posting { org, kind: Kind::Adjustment, key: &key, entries: &[(account, amount), (Account::Adjustments, -amount)], memo: reason },
        now,
    )
    .await?;
    if !posted {
        // The same key committed by a concurrent request: nothing moved here.
        tx.rollback().await?;
        return Ok(Adjusted { before, after: before, replayed: true });
    }
    let mut after = before;
    match account {
        Account::Included => after.included += amount,
        _ => after.purchased += amount,
    }
    let view = |b: Balances| serde_json::json!({"included": b.included, "purchased": b.purchased});
    let details = serde_json::json!({"amount": amount, "account": account.as_str(), "reason": reason});
    let entry = crate::audit::Entry::new(actor, Some(org), crate::audit::Action::CreditsAdjusted, details).change(view(before), view(after));
    crate::audit::write(&mut tx, now, entry).await?;
    tx.commit().await?;
    Ok(Adjusted { before, after, replayed: false })
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
        let grant = Posting {
            org,
            kind: Kind::Grant,
            key: &key,
            entries: &[(Account::Grants, -included), (Account::Included, included)],
            memo: &memo,
        };
        post(conn, grant, period_start).await?;
    }
    let key = format!("sandbox:{org}:start");
    let sandbox = Posting {
        org,
        kind: Kind::SandboxGrant,
        key: &key,
        entries: &[
            (Account::SandboxSource, -SANDBOX_START),
            (Account::Sandbox, SANDBOX_START),
        ],
        memo: "starting sandbox balance",
    };
    post(conn, sandbox, period_start).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
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

/// What the organization can spend now: its included credits until they
/// lapse at `included_expires_at` (after that, 0 even before anything has
/// moved them to `expired`), its purchased credits and its sandbox. The
/// gateway's SQL (`gateway_check`, `gateway_authorize`) applies the same
/// rule with the same clock; every page shows balances through this.
pub async fn spendable(db: &PgPool, org: Uuid, now: time::OffsetDateTime) -> Result<Balances, sqlx::Error> {
    Ok(sqlx::query_as(
        // Credits in the gateway's leases are still the customer's.
        "SELECT CASE WHEN m.included_expires_at IS NOT NULL AND m.included_expires_at <= $2 THEN 0 ELSE m.included + l.included END AS included,
                m.purchased + l.purchased AS purchased, m.sandbox
           FROM org_meters m, org_leased($1) l WHERE m.org_id = $1",
    )
    .bind(org)
    .bind(now)
    .fetch_optional(db)
    .await?
    .unwrap_or_default())
}

/// The balances as projected, lapsed or not (for audits and operators).
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
    /// Organizations whose `escrow` account differs from what their open
    /// leases have not spent (a closed lease holds nothing).
    pub escrow_drifting: i64,
    /// Batches of the journal whose revenue (less what was given back when
    /// its calls were answered 503) differs from their usage events' credits.
    pub batches_unmatched: i64,
}

impl Audit {
    pub fn is_sound(&self) -> bool {
        self.unbalanced == 0 && self.drifting == 0 && self.escrow_drifting == 0 && self.batches_unmatched == 0
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
    let escrow_drifting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT org_id FROM (
                 SELECT org_id, amount FROM ledger_entries WHERE account = 'escrow'
                 UNION ALL
                 SELECT org_id, -(amount - spent) FROM credit_leases WHERE closed_at IS NULL) x
              GROUP BY org_id HAVING sum(amount) <> 0) d",
    )
    .fetch_one(db)
    .await?;
    // Each batch: what it recorded is its revenue, and its revenue (less a
    // void's) is its usage events' credits, while they are kept (retention
    // drops old events, never the ledger).
    let batches_unmatched: i64 = sqlx::query_scalar(
        "WITH b AS (
             SELECT j.*,
                    (SELECT coalesce(sum(e.amount), 0) FROM ledger_transactions r JOIN ledger_entries e ON e.transaction_id = r.id
                      WHERE r.idempotency_key = j.idempotency_key AND e.account = 'revenue') AS revenue,
                    (SELECT coalesce(sum(e.amount), 0) FROM ledger_transactions r JOIN ledger_entries e ON e.transaction_id = r.id
                      WHERE r.idempotency_key = 'void:' || j.idempotency_key AND e.account = 'revenue') AS voided
               FROM journal_batches j)
         SELECT count(*) FROM b
          WHERE b.revenue <> b.credits
             OR (b.first_at >= coalesce((SELECT min(at) FROM usage_events), 'infinity')
                 AND b.revenue + b.voided <> (SELECT coalesce(sum(u.credits), 0) FROM usage_events u
                                               WHERE u.journal = b.idempotency_key AND u.at BETWEEN b.first_at AND b.last_at))
             OR NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = b.idempotency_key AND t.kind = 'usage_batch')",
    )
    .fetch_one(db)
    .await?;
    Ok(Audit {
        organizations,
        unbalanced,
        drifting,
        escrow_drifting,
        batches_unmatched,
    })
}
