//! Organizations as an operator sees them: found by name, member email or
//! id; one organization's subscription, members, keys, ledger, invoices,
//! charges, usage and audit trail; and the suspension of all its keys at
//! once (the gateway answers `api_key_suspended`, a 403, while it lasts).

use crate::audit::{self, Action, Entry};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// One row of the organizations list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRow {
    pub id: Uuid,
    pub name: String,
    pub plan: Option<String>,
    pub status: Option<String>,
    pub included: i64,
    pub purchased: i64,
    pub refusals_7d: i64,
    pub suspended: bool,
    pub created_at: OffsetDateTime,
}

const LIST_LIMIT: i64 = 100;

/// Organizations whose name or a member's email contains `term`, or whose
/// id it is (in any spelling, see [`super::parse_id`]); every one (newest
/// first, at most 100) when `term` is empty. Balances are what can be spent
/// now; 402s are live ones of the last 7 days, from the daily rollups.
pub async fn search(db: &PgPool, term: &str, now: OffsetDateTime) -> Result<Vec<OrgRow>, sqlx::Error> {
    let term = term.trim();
    let id = super::parse_id(term);
    let pattern = super::contains_pattern(term);
    sqlx::query_as(
        "SELECT o.id, o.name, p.name AS plan, s.status,
                coalesce(CASE WHEN m.included_expires_at IS NOT NULL AND m.included_expires_at <= $4 THEN 0 ELSE m.included END, 0) AS included,
                coalesce(m.purchased, 0) AS purchased,
                coalesce((SELECT sum(d.calls) FROM usage_daily d
                           WHERE d.org_id = o.id AND d.outcome = '402' AND d.mode = 'live'
                             AND d.bucket >= date_trunc('day', $4 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '6 days'), 0)::bigint AS refusals_7d,
                o.keys_suspended_at IS NOT NULL AS suspended, o.created_at
           FROM organizations o
           LEFT JOIN subscriptions s ON s.org_id = o.id
           LEFT JOIN plans p ON p.id = s.plan_id
           LEFT JOIN org_meters m ON m.org_id = o.id
          WHERE $1 = '' OR o.id = $2 OR o.name ILIKE $3
             OR EXISTS (SELECT 1 FROM memberships mm JOIN users u ON u.id = mm.user_id
                         WHERE mm.org_id = o.id AND u.email ILIKE $3)
          ORDER BY o.created_at DESC, o.id
          LIMIT $5",
    )
    .bind(term)
    .bind(id)
    .bind(pattern)
    .bind(now)
    .bind(LIST_LIMIT)
    .fetch_all(db)
    .await
}

/// An organization's name, when it exists.
pub async fn name_of(db: &PgPool, org: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM organizations WHERE id = $1").bind(org).fetch_optional(db).await
}

#[derive(Debug, Clone)]
pub struct OrgDetail {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub suspended_at: Option<OffsetDateTime>,
    pub suspended_reason: Option<String>,
    pub subscription: Option<SubscriptionRow>,
    pub balances: crate::billing::ledger::Balances,
    pub members: Vec<MemberRow>,
    pub keys: Vec<KeyRow>,
    pub ledger: Vec<LedgerRow>,
    pub invoices: Vec<InvoiceRow>,
    pub charges: Vec<ChargeRow>,
    /// Its disputes, newest first.
    pub disputes: Vec<DisputeRow>,
    /// Calls of the last 30 days by outcome, live and test.
    pub usage: Vec<(String, String, i64, i64)>,
    /// What happened to its subscription, newest first: (when, action, details).
    pub subscription_history: Vec<(OffsetDateTime, String, serde_json::Value)>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub plan: String,
    pub status: String,
    pub current_period_start: OffsetDateTime,
    pub current_period_end: OffsetDateTime,
    pub next_plan: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub name: String,
    pub mode: String,
    pub prefix: String,
    pub last4: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerRow {
    pub created_at: OffsetDateTime,
    pub kind: String,
    pub memo: Option<String>,
    pub request_id: Option<String>,
    pub included: i64,
    pub purchased: i64,
    pub sandbox: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub purpose: String,
    pub status: String,
    pub total_minor: i64,
    pub currency: String,
    pub created_at: OffsetDateTime,
    /// Sent back (refunds that succeeded).
    pub refunded_minor: i64,
    /// What its succeeded charge can still refund.
    pub refundable_minor: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DisputeRow {
    pub opened_at: OffsetDateTime,
    pub invoice: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub status: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChargeRow {
    pub created_at: OffsetDateTime,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
}

/// Everything the organization's page shows but its audit trail (that is
/// [`super::audit_log::page`] with the organization as filter).
pub async fn detail(db: &PgPool, org: Uuid, now: OffsetDateTime) -> Result<Option<OrgDetail>, sqlx::Error> {
    let head: Option<(String, OffsetDateTime, Option<OffsetDateTime>, Option<String>)> = sqlx::query_as(
        "SELECT name, created_at, keys_suspended_at, keys_suspended_reason FROM organizations WHERE id = $1",
    )
    .bind(org)
    .fetch_optional(db)
    .await?;
    let Some((name, created_at, suspended_at, suspended_reason)) = head else {
        return Ok(None);
    };
    let subscription = sqlx::query_as(
        "SELECT p.name AS plan, s.status, s.current_period_start, s.current_period_end, np.name AS next_plan
           FROM subscriptions s JOIN plans p ON p.id = s.plan_id LEFT JOIN plans np ON np.id = s.next_plan_id
          WHERE s.org_id = $1",
    )
    .bind(org)
    .fetch_optional(db)
    .await?;
    let balances = crate::billing::ledger::spendable(db, org, now).await?;
    let members = sqlx::query_as(
        "SELECT u.email, u.display_name, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 ORDER BY m.created_at, u.email",
    )
    .bind(org)
    .fetch_all(db)
    .await?;
    let keys = sqlx::query_as(
        "SELECT name, mode, prefix, last4, created_at, last_used_at, revoked_at FROM api_keys
          WHERE org_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(org)
    .fetch_all(db)
    .await?;
    let ledger = sqlx::query_as(
        "SELECT t.created_at, t.kind, t.memo, t.request_id,
                coalesce(sum(e.amount) FILTER (WHERE e.account = 'included'), 0)::bigint AS included,
                coalesce(sum(e.amount) FILTER (WHERE e.account = 'purchased'), 0)::bigint AS purchased,
                coalesce(sum(e.amount) FILTER (WHERE e.account = 'sandbox'), 0)::bigint AS sandbox
           FROM (SELECT * FROM ledger_transactions WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT 50) t
           JOIN ledger_entries e ON e.transaction_id = t.id
          GROUP BY t.id, t.created_at, t.kind, t.memo, t.request_id
          ORDER BY t.created_at DESC, t.id DESC",
    )
    .bind(org)
    .fetch_all(db)
    .await?;
    let invoices = sqlx::query_as(
        "SELECT i.id, i.number, i.purpose, i.status, i.total_minor, i.currency::text AS currency, i.created_at,
                coalesce((SELECT sum(r.amount_minor) FROM refunds r WHERE r.invoice_id = i.id AND r.status = 'succeeded'), 0)::bigint
                    AS refunded_minor,
                coalesce((SELECT c.amount_minor - coalesce((SELECT sum(r.amount_minor) FROM refunds r
                                                            WHERE r.charge_id = c.id AND r.status <> 'failed'
                                                              AND (r.charge_ref = '' OR r.charge_ref = c.processor_ref)), 0)
                            FROM charges c WHERE c.invoice_id = i.id AND c.status = 'succeeded'
                           ORDER BY c.settled_at, c.id LIMIT 1), 0)::bigint AS refundable_minor
           FROM invoices i WHERE i.org_id = $1 ORDER BY i.created_at DESC LIMIT 50",
    )
    .bind(org)
    .fetch_all(db)
    .await?;
    let charges = sqlx::query_as(
        "SELECT created_at, amount_minor, currency::text AS currency, status, failure_code, decline_code FROM charges
          WHERE org_id = $1 ORDER BY created_at DESC LIMIT 50",
    )
    .bind(org)
    .fetch_all(db)
    .await?;
    let disputes = sqlx::query_as(
        "SELECT d.opened_at, i.number AS invoice, d.amount_minor, d.currency::text AS currency, d.reason, d.status
           FROM disputes d LEFT JOIN charges c ON c.id = d.charge_id LEFT JOIN invoices i ON i.id = c.invoice_id
          WHERE d.org_id = $1 ORDER BY d.opened_at DESC LIMIT 50",
    )
    .bind(org)
    .fetch_all(db)
    .await?;
    let usage = sqlx::query_as(
        "SELECT mode, outcome, sum(calls)::bigint, sum(credits)::bigint FROM usage_daily
          WHERE org_id = $1 AND bucket >= $2 GROUP BY mode, outcome ORDER BY mode, outcome",
    )
    .bind(org)
    .bind(now - Duration::days(30))
    .fetch_all(db)
    .await?;
    let subscription_actions: Vec<&str> =
        Action::ALL.iter().map(|a| a.as_str()).filter(|a| a.starts_with("subscription.")).collect();
    let subscription_history = sqlx::query_as(
        "SELECT at, action, details FROM audit_log WHERE org_id = $1 AND action = ANY($2) ORDER BY at DESC, id DESC LIMIT 50",
    )
    .bind(org)
    .bind(&subscription_actions)
    .fetch_all(db)
    .await?;
    Ok(Some(OrgDetail {
        subscription_history,
        id: org,
        name,
        created_at,
        suspended_at,
        suspended_reason,
        subscription,
        balances,
        members,
        keys,
        ledger,
        invoices,
        charges,
        disputes,
        usage,
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    #[error("there is no such organization")]
    NotFound,
    #[error("a reason is needed (at most 500 characters)")]
    Reason,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Suspends (or, with `suspend` false, restores) every key of the
/// organization at once, keys made later included, with the audit entry in
/// the same transaction. Doing what is already done changes nothing and
/// records nothing; `Ok(false)` says so.
pub async fn set_keys_suspended(
    db: &PgPool,
    admin: Uuid,
    org: Uuid,
    suspend: bool,
    reason: &str,
    now: OffsetDateTime,
) -> Result<bool, SuspendError> {
    let reason = reason.trim();
    if suspend && (reason.is_empty() || reason.chars().count() > 500) {
        return Err(SuspendError::Reason);
    }
    let mut tx = db.begin().await?;
    let before: Option<(Option<OffsetDateTime>, Option<String>)> =
        sqlx::query_as("SELECT keys_suspended_at, keys_suspended_reason FROM organizations WHERE id = $1 FOR UPDATE")
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
    let (at, old_reason) = before.ok_or(SuspendError::NotFound)?;
    if at.is_some() == suspend {
        return Ok(false);
    }
    let (new_at, new_reason) = if suspend { (Some(now), Some(reason.to_string())) } else { (None, None) };
    sqlx::query("UPDATE organizations SET keys_suspended_at = $2, keys_suspended_reason = $3 WHERE id = $1")
        .bind(org)
        .bind(new_at)
        .bind(&new_reason)
        .execute(&mut *tx)
        .await?;
    let view = |at: Option<OffsetDateTime>, r: &Option<String>| serde_json::json!({"suspended": at.is_some(), "reason": r});
    let action = if suspend { Action::OrgKeysSuspended } else { Action::OrgKeysRestored };
    let entry = Entry::new(Some(admin), Some(org), action, serde_json::json!({"reason": reason}))
        .change(view(at, &old_reason), view(new_at, &new_reason));
    audit::write(&mut tx, now, entry).await?;
    tx.commit().await?;
    Ok(true)
}
