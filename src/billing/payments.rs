//! Invoices and the charges that collect them. An invoice is what the
//! customer owes (numbered lines summing to its total, in minor units of one
//! currency); a charge is one attempt to collect it on a saved card, with its
//! own idempotency key. Outcomes arrive only as processor events
//! ([`apply_event`]), each applied once, in one transaction with what the
//! payment buys ([`fulfil`]): credits appear only after a charge succeeded.
//!
//! No network call happens inside a transaction: a charge is recorded and
//! committed first, then the processor is asked.

use super::processor::{ChargeRequest, ProcessorError, Refused};
use super::webhooks::{Event, EventKind};
use super::Billing;
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;
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
    /// One attempt to collect an invoice.
    pub enum ChargeStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
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

/// Where collecting an invoice stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collected {
    Paid,
    Failed(Refused),
    /// The processor has not reported yet; the page says so and the
    /// outcome is applied when it arrives.
    Pending,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("no usable card on file")]
    NoCard,
    #[error("the invoice cannot be collected: it is {0}")]
    NotCollectable(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How long a page waits for the processor's verdict before answering
/// "processing".
pub const WAIT: Duration = Duration::from_secs(8);

/// Charges the organization's default card for an invoice (a new attempt
/// unless one is in flight) and waits up to `wait` for the outcome.
pub async fn collect(state: &Billing, invoice: Uuid, now: OffsetDateTime, wait: Duration) -> Result<Collected, CollectError> {
    let db = &state.db;
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "SELECT org_id, status, total_minor, currency, number, purpose FROM invoices WHERE id = $1 FOR UPDATE",
    )
    .bind(invoice)
    .fetch_one(&mut *tx)
    .await?;
    let org: Uuid = row.get("org_id");
    let status: InvoiceStatus = row.get("status");
    match status {
        InvoiceStatus::Paid => return Ok(Collected::Paid),
        InvoiceStatus::Void => return Err(CollectError::NotCollectable("void")),
        _ => {}
    }
    let pending: Option<Uuid> = sqlx::query_scalar("SELECT id FROM charges WHERE invoice_id = $1 AND status = $2")
        .bind(invoice)
        .bind(ChargeStatus::Pending)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(charge) = pending {
        tx.commit().await?;
        return Ok(await_charge(db, charge, wait).await?);
    }
    let card: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, processor_ref, processor FROM payment_methods
          WHERE org_id = $1 AND is_default AND removed_at IS NULL AND processor_ref IS NOT NULL",
    )
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((card_id, card_ref, processor)) = card else {
        return Err(CollectError::NoCard);
    };
    let attempt: i32 = sqlx::query_scalar("SELECT coalesce(max(attempt), 0) + 1 FROM charges WHERE invoice_id = $1")
        .bind(invoice)
        .fetch_one(&mut *tx)
        .await?;
    let charge = Uuid::now_v7();
    let key = format!("charge:{invoice}:{attempt}");
    let amount: i64 = row.get("total_minor");
    let currency: String = row.get("currency");
    sqlx::query(
        "INSERT INTO charges (id, org_id, invoice_id, attempt, idempotency_key, payment_method_id, processor,
                              amount_minor, currency, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $10)",
    )
    .bind(charge)
    .bind(org)
    .bind(invoice)
    .bind(attempt)
    .bind(&key)
    .bind(card_id)
    .bind(&processor)
    .bind(amount)
    .bind(&currency)
    .bind(now)
    .bind(ChargeStatus::Pending)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE invoices SET status = 'open', next_attempt_at = NULL, updated_at = $2 WHERE id = $1")
        .bind(invoice)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let number: String = row.get("number");
    let request = ChargeRequest {
        idempotency_key: key,
        card: card_ref,
        amount_minor: amount,
        currency,
        description: format!("Tollgate invoice {number}"),
    };
    send(state, charge, &request, now).await?;
    Ok(await_charge(db, charge, wait).await?)
}

/// Asks the processor for a recorded charge. A refusal on the spot settles
/// it like a failure event; an unreachable processor leaves it pending, to
/// be sent again with the same key by [`resend_pending`].
async fn send(state: &Billing, charge: Uuid, request: &ChargeRequest, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    match state.processor.charge(request, now).await {
        Ok(reference) => {
            sqlx::query("UPDATE charges SET processor_ref = $2 WHERE id = $1 AND processor_ref IS NULL")
                .bind(charge)
                .bind(reference)
                .execute(&state.db)
                .await?;
        }
        Err(ProcessorError::Refused(refused)) => {
            let mut tx = state.db.begin().await?;
            let row = sqlx::query("SELECT status FROM charges WHERE id = $1 FOR UPDATE")
                .bind(charge)
                .fetch_one(&mut *tx)
                .await?;
            if row.try_get::<ChargeStatus, _>("status")? == ChargeStatus::Pending {
                settle(&mut tx, state, charge, Err(refused), now).await?;
            }
            tx.commit().await?;
        }
        Err(ProcessorError::Unavailable(e)) => {
            tracing::warn!(%charge, error = %e, "processor unavailable; the charge is sent again later");
        }
    }
    Ok(())
}

/// Sends again every charge still pending after a minute without a
/// reference from the processor (same idempotency key: never twice).
pub async fn resend_pending(state: &Billing, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id, c.idempotency_key, c.amount_minor, c.currency, p.processor_ref, i.number
           FROM charges c JOIN payment_methods p ON p.id = c.payment_method_id JOIN invoices i ON i.id = c.invoice_id
          WHERE c.status = $2 AND c.processor_ref IS NULL AND c.created_at < $1 - interval '1 minute'
          LIMIT 100",
    )
    .bind(now)
    .bind(ChargeStatus::Pending)
    .fetch_all(&state.db)
    .await?;
    for row in &rows {
        let request = ChargeRequest {
            idempotency_key: row.get("idempotency_key"),
            card: row.get::<Option<String>, _>("processor_ref").unwrap_or_default(),
            amount_minor: row.get("amount_minor"),
            currency: row.get("currency"),
            description: format!("Tollgate invoice {}", row.get::<String, _>("number")),
        };
        send(state, row.get("id"), &request, now).await?;
    }
    Ok(rows.len())
}

/// Waits up to `wait` for a charge to settle.
pub async fn await_charge(db: &PgPool, charge: Uuid, wait: Duration) -> Result<Collected, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (status, code, decline): (ChargeStatus, Option<String>, Option<String>) =
            sqlx::query_as("SELECT status, failure_code, decline_code FROM charges WHERE id = $1")
                .bind(charge)
                .fetch_one(db)
                .await?;
        match status {
            ChargeStatus::Succeeded => return Ok(Collected::Paid),
            ChargeStatus::Failed => {
                return Ok(Collected::Failed(Refused {
                    code: code.unwrap_or_else(|| "card_declined".into()),
                    decline_code: decline,
                }))
            }
            _ if tokio::time::Instant::now() >= deadline => return Ok(Collected::Pending),
            _ => tokio::time::sleep(Duration::from_millis(40)).await,
        }
    }
}

/// What an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Settled,
    /// Seen before (same event id): nothing changed.
    Duplicate,
    /// Its charge had already settled (an event out of order): recorded only.
    AlreadySettled,
    /// A type billing does not act on.
    Ignored,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Settled => "settled",
            Applied::Duplicate => "duplicate",
            Applied::AlreadySettled => "already settled",
            Applied::Ignored => "ignored",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event names a charge we have no record of")]
    UnknownCharge,
    #[error("the event's amount or currency differs from its charge")]
    Mismatch,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Applies a verified processor event once (see the module doc).
pub async fn apply_event(state: &Billing, processor: &str, event: &Event, now: OffsetDateTime) -> Result<Applied, EventError> {
    let mut tx = state.db.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO webhook_events (event_id, processor, type, received_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(processor)
    .bind(&event.kind)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if fresh == 0 {
        return Ok(Applied::Duplicate);
    }
    let charge = &event.data.object;
    let row = sqlx::query(
        "SELECT id, status, amount_minor, currency FROM charges WHERE idempotency_key = $1 AND processor = $2 FOR UPDATE",
    )
    .bind(&charge.idempotency_key)
    .bind(processor)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(EventError::UnknownCharge);
    };
    let id: Uuid = row.get("id");
    if row.get::<i64, _>("amount_minor") != charge.amount || row.get::<String, _>("currency").trim() != charge.currency {
        return Err(EventError::Mismatch);
    }
    sqlx::query("UPDATE webhook_events SET charge_id = $2 WHERE event_id = $1")
        .bind(&event.id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE charges SET processor_ref = coalesce(processor_ref, $2) WHERE id = $1")
        .bind(id)
        .bind(&charge.id)
        .execute(&mut *tx)
        .await?;
    let recorded: ChargeStatus = row.try_get("status")?;
    let applied = if recorded == ChargeStatus::Failed && event.kind() == Some(EventKind::ChargeSucceeded) {
        // The processor took the money after all (a late success after a
        // failure it reported, or a refusal we recorded on the spot): what
        // the money buys is delivered, or, if the invoice was paid by
        // another charge meanwhile, a refund is recorded as due.
        tracing::warn!(charge = %id, "a charge recorded as failed succeeded at the processor");
        settle(&mut tx, state, id, Ok(()), now).await?;
        Applied::Settled
    } else if recorded != ChargeStatus::Pending {
        Applied::AlreadySettled
    } else {
        match event.kind() {
            Some(EventKind::ChargeSucceeded) => {
                settle(&mut tx, state, id, Ok(()), now).await?;
                Applied::Settled
            }
            Some(EventKind::ChargeFailed) => {
                let refused = Refused {
                    code: charge.failure_code.clone().unwrap_or_else(|| "card_declined".into()),
                    decline_code: charge.decline_code.clone(),
                };
                settle(&mut tx, state, id, Err(refused), now).await?;
                Applied::Settled
            }
            None => Applied::Ignored,
        }
    };
    tx.commit().await?;
    Ok(applied)
}

/// A pending charge's outcome, with its invoice's and what it buys, in the
/// caller's transaction (the charge row is locked by the caller).
async fn settle(
    tx: &mut PgConnection,
    state: &Billing,
    charge: Uuid,
    outcome: Result<(), Refused>,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let (status, code, decline) = match &outcome {
        Ok(()) => (ChargeStatus::Succeeded, None, None),
        Err(r) => (ChargeStatus::Failed, Some(r.code.clone()), r.decline_code.clone()),
    };
    let invoice: Uuid = sqlx::query_scalar(
        "UPDATE charges SET status = $2, failure_code = $3, decline_code = $4, settled_at = $5 WHERE id = $1 RETURNING invoice_id",
    )
    .bind(charge)
    .bind(status)
    .bind(&code)
    .bind(&decline)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let inv = Invoice::locked(&mut *tx, invoice).await?;
    if inv.status == InvoiceStatus::Paid {
        if outcome.is_ok() {
            // Paid twice (two charges of one invoice both succeeded): the
            // invoice buys once, the second payment is due back.
            tracing::error!(%charge, invoice = %inv.number, "an invoice was paid twice; refund one charge");
            crate::audit::record(
                tx,
                now,
                None,
                Some(inv.org),
                crate::audit::Action::BillingRefundDue,
                serde_json::json!({"invoice": inv.number, "charge": charge, "amount_minor": inv.total_minor, "why": "invoice paid twice"}),
            )
            .await?;
        }
        return Ok(());
    }
    match outcome {
        Ok(()) => {
            sqlx::query(
                "UPDATE invoices SET status = 'paid', paid_at = $2, failure_code = NULL, decline_code = NULL,
                        next_attempt_at = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(invoice)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            fulfil(tx, state, &inv, now).await?;
            super::notices::receipt(tx, state, &inv, now).await?;
        }
        Err(refused) => {
            let next = if inv.owed { next_attempt(tx, invoice).await? } else { None };
            sqlx::query(
                "UPDATE invoices SET status = 'failed', failure_code = $2, decline_code = $3, next_attempt_at = $4,
                        updated_at = $5 WHERE id = $1",
            )
            .bind(invoice)
            .bind(&refused.code)
            .bind(&refused.decline_code)
            .bind(next)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inv.purpose == Purpose::Renewal {
                super::subscriptions::renewal_failed(tx, state, inv.org, now).await?;
            }
            super::notices::payment_failed(tx, state, &inv, &refused, next, now).await?;
        }
    }
    Ok(())
}

/// Dunning: an owed invoice is tried again 1, 3 and 5 days after its first
/// failure (and whenever a card changes); then no more.
async fn next_attempt(tx: &mut PgConnection, invoice: Uuid) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let (failed, first): (i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*), min(settled_at) FROM charges WHERE invoice_id = $1 AND status = $2",
    )
    .bind(invoice)
    .bind(ChargeStatus::Failed)
    .fetch_one(&mut *tx)
    .await?;
    let first = first.unwrap_or_else(OffsetDateTime::now_utc);
    Ok(match failed {
        1 => Some(first + time::Duration::days(1)),
        2 => Some(first + time::Duration::days(3)),
        3 => Some(first + time::Duration::days(5)),
        _ => None,
    })
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
    async fn locked(conn: &mut PgConnection, id: Uuid) -> Result<Invoice, sqlx::Error> {
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

/// What a paid invoice buys, in the transaction that marks it paid.
async fn fulfil(tx: &mut PgConnection, state: &Billing, inv: &Invoice, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    use super::ledger::{post, Account, Kind, Posting};
    match inv.purpose {
        Purpose::TopUp | Purpose::AutoTopUp => {
            let key = format!("purchase:{}", inv.id);
            let memo = format!("{} credits bought (invoice {})", inv.credits, inv.number);
            post(
                tx,
                Posting {
                    org: inv.org,
                    kind: Kind::Purchase,
                    key: &key,
                    entries: &[(Account::Payments, -inv.credits), (Account::Purchased, inv.credits)],
                    memo: &memo,
                },
                now,
            )
            .await?;
            super::topups::rearm(tx, inv.org).await?;
        }
        Purpose::Proration => super::subscriptions::upgraded(tx, inv, now).await?,
        Purpose::Subscription => {
            // Renewing after expiry: only while the subscription is still
            // ended (a late payment after another renewal buys nothing and
            // is due back).
            let plan = inv.plan.expect("a subscription invoice names its plan");
            let cur = super::subscriptions::current_in(tx, inv.org, true).await?;
            let ended = cur.as_ref().is_some_and(|c| {
                use super::subscriptions::Status;
                c.status == Status::Expired || (c.status == Status::Canceled && c.period_end <= now)
            });
            if ended {
                let end = super::subscriptions::add_month(now);
                super::subscriptions::open_period(tx, inv.org, plan, now, end, super::subscriptions::Grant::Full, now).await?;
            } else {
                tracing::error!(org = %inv.org, invoice = %inv.number, "a renewal was paid after the subscription renewed; refund it");
                crate::audit::record(
                    tx,
                    now,
                    None,
                    Some(inv.org),
                    crate::audit::Action::BillingRefundDue,
                    serde_json::json!({"invoice": inv.number, "amount_minor": inv.total_minor, "why": "renewal paid after another renewal"}),
                )
                .await?;
            }
        }
        Purpose::Renewal => super::subscriptions::renewal_paid(tx, state, inv, now).await?,
    }
    Ok(())
}

/// An owed invoice that cannot be charged because there is no card: it
/// fails like a decline (`payment_method_required`), and is charged as soon
/// as a card is added.
pub async fn no_card(state: &Billing, invoice: Uuid, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let inv = Invoice::locked(&mut tx, invoice).await?;
    if inv.status == InvoiceStatus::Paid {
        return Ok(());
    }
    let refused = Refused {
        code: "payment_method_required".into(),
        decline_code: None,
    };
    sqlx::query(
        "UPDATE invoices SET status = 'failed', failure_code = $2, decline_code = NULL, next_attempt_at = NULL,
                updated_at = $3 WHERE id = $1",
    )
    .bind(invoice)
    .bind(&refused.code)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inv.purpose == Purpose::Renewal {
        super::subscriptions::renewal_failed(&mut tx, state, inv.org, now).await?;
    }
    if inv.status != InvoiceStatus::Failed {
        super::notices::payment_failed(&mut tx, state, &inv, &refused, None, now).await?;
    }
    tx.commit().await
}

/// The last failure of an owed invoice still unpaid: (code, decline code),
/// for the `payment_error` of a 402.
pub async fn last_failure(db: &PgPool, org: Uuid) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    // The last declined attempt (a retry may be in flight), else an
    // invoice that failed for want of a card.
    sqlx::query_as(
        "SELECT code, decline FROM (
             SELECT c.failure_code AS code, c.decline_code AS decline, c.settled_at AS at
               FROM charges c JOIN invoices i ON i.id = c.invoice_id
              WHERE c.org_id = $1 AND i.owed AND i.status <> 'paid' AND c.status = $2
             UNION ALL
             SELECT failure_code, decline_code, updated_at FROM invoices
              WHERE org_id = $1 AND owed AND status = 'failed' AND failure_code = 'payment_method_required'
         ) f WHERE code IS NOT NULL ORDER BY at DESC LIMIT 1",
    )
    .bind(org)
    .bind(ChargeStatus::Failed)
    .fetch_optional(db)
    .await
}

/// Where an invoice's collection stands (waiting up to `wait` for a charge
/// in flight).
pub async fn state_of(db: &PgPool, invoice: Uuid, wait: Duration) -> Result<Collected, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (status, latest): (InvoiceStatus, Option<Uuid>) = sqlx::query_as(
            "SELECT i.status, (SELECT id FROM charges WHERE invoice_id = i.id ORDER BY attempt DESC LIMIT 1)
               FROM invoices i WHERE i.id = $1",
        )
        .bind(invoice)
        .fetch_one(db)
        .await?;
        if status == InvoiceStatus::Paid {
            return Ok(Collected::Paid);
        }
        if let Some(charge) = latest {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            return await_charge(db, charge, left).await;
        }
        // The first request is still starting its charge.
        if tokio::time::Instant::now() >= deadline {
            return Ok(Collected::Pending);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}
