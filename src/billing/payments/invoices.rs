//! Invoices: what a customer owes (numbered lines summing to its total, in
//! minor units of one currency), made once per purpose and key.

use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    /// What an invoice is for.
    pub enum Purpose {
        /// A new period bought outright (renewing after expiry).
        Subscription = "subscription",
        /// A period already opened (monthly renewal, a trial's end, an
        /// approval): owed, so retried by dunning and when a card changes.
        Renewal = "renewal",
        /// An upgrade's prorated difference.
        Proration = "proration",
        TopUp = "top_up",
        AutoTopUp = "auto_top_up",
    }
}

crate::text_enum! {
    pub enum InvoiceStatus {
        Open = "open",
        Paid = "paid",
        Failed = "failed",
        Void = "void",
    }
}

/// One line of an invoice (a credit for unused time is a negative unit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
}

impl Line {
    pub fn one(description: impl Into<String>, amount_minor: i64) -> Self {
        Line {
            description: description.into(),
            quantity: 1,
            unit_minor: amount_minor,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NewInvoice {
    pub org: Uuid,
    pub purpose: Purpose,
    pub currency: String,
    pub lines: Vec<Line>,
    /// Credits a top-up buys, or included credits an upgrade adds.
    pub credits: i64,
    pub plan: Option<Uuid>,
    pub period: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Names the request: the same key again finds the first invoice.
    pub key: String,
    pub owed: bool,
    pub created_by: Option<Uuid>,
}

impl NewInvoice {
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity * l.unit_minor).sum()
    }
}

/// Creates the invoice named by `key`, or finds the one created before:
/// `(id, created)`.
pub async fn create_invoice(
    conn: &mut PgConnection,
    inv: &NewInvoice,
    now: OffsetDateTime,
) -> Result<(Uuid, bool), sqlx::Error> {
    let existing: Option<Uuid> = sqlx::query_scalar("SELECT id FROM invoices WHERE idempotency_key = $1")
        .bind(&inv.key)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = existing {
        return Ok((id, false));
    }
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO invoices (id, org_id, number, purpose, status, currency, total_minor, credits, plan_id,
                               period_start, period_end, idempotency_key, owed, created_by, created_at, updated_at)
         VALUES ($1, $2, 'TG-' || lpad(nextval('invoice_number_seq')::text, 6, '0'), $3, 'open', $4, $5, $6, $7,
                 $8, $9, $10, $11, $12, $13, $13)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(id)
    .bind(inv.org)
    .bind(inv.purpose)
    .bind(&inv.currency)
    .bind(inv.total())
    .bind(inv.credits)
    .bind(inv.plan)
    .bind(inv.period.map(|p| p.0))
    .bind(inv.period.map(|p| p.1))
    .bind(&inv.key)
    .bind(inv.owed)
    .bind(inv.created_by)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        let id = sqlx::query_scalar("SELECT id FROM invoices WHERE idempotency_key = $1")
            .bind(&inv.key)
            .fetch_one(&mut *conn)
            .await?;
        return Ok((id, false));
    }
    for (i, line) in inv.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, line_no, description, quantity, unit_minor, amount_minor)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(i as i32 + 1)
        .bind(&line.description)
        .bind(line.quantity)
        .bind(line.unit_minor)
        .bind(line.quantity * line.unit_minor)
        .execute(&mut *conn)
        .await?;
    }
    Ok((id, true))
}

impl Purpose {
    /// Whether its charge is made while the customer is away (a renewal, an
    /// automatic top-up): a bank that wants it confirmed must ask later.
    pub fn off_session(self) -> bool {
        matches!(self, Purpose::Renewal | Purpose::AutoTopUp)
    }
}

/// An invoice as billing reads it.
#[derive(Clone, Debug)]
pub struct Invoice {
    pub id: Uuid,
    pub org: Uuid,
    pub number: String,
    pub purpose: Purpose,
    pub status: InvoiceStatus,
    pub currency: String,
    pub total_minor: i64,
    pub credits: i64,
    pub plan: Option<Uuid>,
    pub period_start: Option<OffsetDateTime>,
    pub period_end: Option<OffsetDateTime>,
    pub owed: bool,
}

impl Invoice {
    pub(crate) async fn locked(conn: &mut PgConnection, id: Uuid) -> Result<Invoice, sqlx::Error> {
        let r = sqlx::query(
            "SELECT id, org_id, number, purpose, status, currency, total_minor, credits, plan_id, period_start,
                    period_end, owed FROM invoices WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_one(conn)
        .await?;
        Ok(Invoice {
            id: r.get("id"),
            org: r.get("org_id"),
            number: r.get("number"),
            purpose: r.try_get("purpose")?,
            status: r.try_get("status")?,
            currency: r.get::<String, _>("currency").trim().to_string(),
            total_minor: r.get("total_minor"),
            credits: r.get("credits"),
            plan: r.get("plan_id"),
            period_start: r.get("period_start"),
            period_end: r.get("period_end"),
            owed: r.get("owed"),
        })
    }
}

