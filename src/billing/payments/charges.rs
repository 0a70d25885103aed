//! Charges: attempts to collect an invoice on a saved card, each with its
//! own idempotency key; the processor's events that settle them (each
//! applied once, with what the payment buys: `fulfilment`), dunning's next
//! attempt, and where an invoice's collection stands.

use super::{fulfil, Invoice, InvoiceStatus, Purpose};
use crate::billing::processor::{ChargeRequest, ProcessorError, Refused};
use crate::billing::webhooks::{Event, EventKind};
use crate::billing::Billing;
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    /// One attempt to collect an invoice.
    pub enum ChargeStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
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
            crate::billing::notices::receipt(tx, state, &inv, now).await?;
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
                crate::billing::subscriptions::renewal_failed(tx, state, inv.org, now).await?;
            }
            crate::billing::notices::payment_failed(tx, state, &inv, &refused, next, now).await?;
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
        crate::billing::subscriptions::renewal_failed(&mut tx, state, inv.org, now).await?;
    }
    if inv.status != InvoiceStatus::Failed {
        crate::billing::notices::payment_failed(&mut tx, state, &inv, &refused, None, now).await?;
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

