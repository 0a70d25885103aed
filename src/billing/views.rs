//! Billing's read models for the pages: an organization's meters with the
//! lapse rule applied, and its invoices with their lines (one query). The
//! portal formats these; it runs no SQL of its own.

use super::payments::{InvoiceStatus, Purpose};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// What an organization can spend and has spent this period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meters {
    /// Spendable now: 0 once they lapse at `included_expires`, even before
    /// the expiry is posted (the same rule as `ledger::spendable` and the
    /// gateway's SQL).
    pub included: i64,
    pub included_expires: Option<OffsetDateTime>,
    pub purchased: i64,
    pub sandbox: i64,
    pub period_spent: i64,
    pub spend_cap: Option<i64>,
}

pub async fn meters(db: &PgPool, org: Uuid, now: OffsetDateTime) -> Result<Meters, sqlx::Error> {
    let (included, included_expires, purchased, sandbox, period_spent, spend_cap): (i64, Option<OffsetDateTime>, i64, i64, i64, Option<i64>) =
        sqlx::query_as(
            // Credits in the gateway's leases are still the customer's
            // (see `org_leased`).
            "SELECT CASE WHEN m.included_expires_at IS NOT NULL AND m.included_expires_at <= $2 THEN 0 ELSE m.included + l.included END,
                    m.included_expires_at, m.purchased + l.purchased, m.sandbox, greatest(m.period_spent - l.included - l.purchased, 0), m.spend_cap
               FROM org_meters m, org_leased($1) l WHERE m.org_id = $1",
        )
        .bind(org)
        .bind(now)
        .fetch_one(db)
        .await?;
    Ok(Meters { included, included_expires, purchased, sandbox, period_spent, spend_cap })
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LineRecord {
    pub line_no: i32,
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
    pub amount_minor: i64,
}

/// A refund of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RefundLine {
    pub amount_minor: i64,
    pub reason: String,
    /// pending, succeeded, failed
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// An invoice as the billing pages show it.
#[derive(Debug, Clone)]
pub struct InvoiceRecord {
    pub id: Uuid,
    pub number: String,
    pub purpose: Purpose,
    pub status: InvoiceStatus,
    pub total_minor: i64,
    pub currency: String,
    pub created_at: OffsetDateTime,
    pub paid_at: Option<OffsetDateTime>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub org_name: String,
    pub lines: Vec<LineRecord>,
    pub refunds: Vec<RefundLine>,
    /// A charge of it waiting for the customer to confirm it with their
    /// bank.
    pub awaiting_confirmation: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    number: String,
    purpose: Purpose,
    status: InvoiceStatus,
    total_minor: i64,
    currency: String,
    created_at: OffsetDateTime,
    paid_at: Option<OffsetDateTime>,
    failure_code: Option<String>,
    decline_code: Option<String>,
    org_name: String,
    lines: sqlx::types::Json<Vec<LineRecord>>,
    refunds: sqlx::types::Json<Vec<RefundLine>>,
    awaiting_confirmation: Option<Uuid>,
}

/// The organization's invoices, newest first (at most 200), with their
/// lines: all of them, one (`only`), or those owed whose charge failed.
pub async fn invoices(db: &PgPool, org: Uuid, only: Option<Uuid>, owed_failed: bool) -> Result<Vec<InvoiceRecord>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT i.id, i.number, i.purpose, i.status, i.total_minor, trim(i.currency) AS currency, i.created_at, i.paid_at,
                i.failure_code, i.decline_code, o.name AS org_name,
                coalesce((SELECT json_agg(json_build_object('line_no', l.line_no, 'description', l.description,
                                                          'quantity', l.quantity, 'unit_minor', l.unit_minor,
                                                          'amount_minor', l.amount_minor) ORDER BY l.line_no)
                            FROM invoice_lines l WHERE l.invoice_id = i.id), '[]'::json) AS lines,
                coalesce((SELECT json_agg(json_build_object('amount_minor', r.amount_minor, 'reason', r.reason,
                                                          'status', r.status,
                                                          'at', coalesce(r.settled_at, r.created_at)) ORDER BY r.created_at)
                            FROM refunds r WHERE r.invoice_id = i.id), '[]'::json) AS refunds,
                (SELECT c.id FROM charges c WHERE c.invoice_id = i.id AND c.status = 'pending'
                    AND c.action_required_at IS NOT NULL LIMIT 1) AS awaiting_confirmation
           FROM invoices i JOIN organizations o ON o.id = i.org_id
          WHERE i.org_id = $1 AND ($2::uuid IS NULL OR i.id = $2)
            AND (NOT $3 OR (i.owed AND i.status = $4))
          ORDER BY i.created_at DESC, i.number DESC LIMIT 200",
    )
    .bind(org)
    .bind(only)
    .bind(owed_failed)
    .bind(InvoiceStatus::Failed)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| InvoiceRecord {
            id: r.id,
            number: r.number,
            purpose: r.purpose,
            status: r.status,
            total_minor: r.total_minor,
            currency: r.currency,
            created_at: r.created_at,
            paid_at: r.paid_at,
            failure_code: r.failure_code,
            decline_code: r.decline_code,
            org_name: r.org_name,
            lines: r.lines.0,
            refunds: r.refunds.0,
            awaiting_confirmation: r.awaiting_confirmation,
        })
        .collect())
}
