//! Refunds: money sent back through the processor that took it. A refund
//! is recorded first (pending, with its own idempotency key), then asked of
//! the processor outside any transaction; its outcome comes from the answer
//! or from the processor's event. Two ways in: an admin refunds (part of) a
//! paid invoice with a reason ([`refund_invoice`]), and billing sends back a
//! payment that bought nothing (an invoice paid twice, a charge the
//! processor took twice: [`due`]); a job sends what is still pending
//! ([`send_pending`]). The refunds of a charge never exceed it. A refund
//! sends money back and leaves credits as they are (an admin removes
//! credits with an adjustment, `ledger::adjust`).

use super::payments::{Applied, EventError, Invoice};
use super::processor::{ProcessorError, RefundRequest, RefundState};
use super::webhooks::RefundEvent;
use super::{format_money, Billing, BillingError};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    pub enum RefundStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

/// A payment that bought nothing and goes back.
pub struct Due {
    pub org: Uuid,
    pub invoice: Uuid,
    pub charge: Uuid,
    /// The processor's reference of the payment (the charge's own when
    /// empty).
    pub payment: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
}

/// Records a refund to send, in the caller's transaction (the job sends
/// it). The same payment is refunded once however often it is found due.
pub async fn due(tx: &mut PgConnection, d: Due, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let processor: String = sqlx::query_scalar("SELECT processor FROM charges WHERE id = $1")
        .bind(d.charge)
        .fetch_one(&mut *tx)
        .await?;
    let key = format!("refund-due:{}:{}", d.charge, d.payment);
    let fresh = sqlx::query(
        "INSERT INTO refunds (id, org_id, invoice_id, charge_id, processor, idempotency_key, charge_ref, amount_minor,
                              currency, reason, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(d.org)
    .bind(d.invoice)
    .bind(d.charge)
    .bind(&processor)
    .bind(&key)
    .bind(&d.payment)
    .bind(d.amount_minor)
    .bind(&d.currency)
    .bind(&d.reason)
    .bind(RefundStatus::Pending)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if fresh == 1 {
        crate::audit::record(
            tx,
            now,
            None,
            Some(d.org),
            crate::audit::Action::BillingRefundDue,
            serde_json::json!({"charge": d.charge, "payment": d.payment, "amount_minor": d.amount_minor, "why": d.reason}),
        )
        .await?;
    }
    Ok(())
}

/// Sends every refund the processor has not accepted yet (same key: never
/// twice). A job calls it.
pub async fn send_pending(state: &Billing, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM refunds WHERE status = $1 AND processor_ref IS NULL AND processor = $2 ORDER BY created_at LIMIT 100",
    )
    .bind(RefundStatus::Pending)
    .bind(state.processor.name())
    .fetch_all(&state.db)
    .await?;
    for id in &ids {
        send(state, *id, now).await?;
    }
    Ok(ids.len())
}

/// Asks the processor for a recorded refund; settles it on its answer.
async fn send(state: &Billing, id: Uuid, now: OffsetDateTime) -> Result<RefundStatus, sqlx::Error> {
    let row = sqlx::query(
        "SELECT r.idempotency_key, coalesce(nullif(r.charge_ref, ''), c.processor_ref) AS payment, r.amount_minor,
                r.currency, r.reason
           FROM refunds r JOIN charges c ON c.id = r.charge_id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_one(&state.db)
    .await?;
    let Some(payment) = row.get::<Option<String>, _>("payment") else {
        // The processor's reference has not arrived yet; tried again later.
        return Ok(RefundStatus::Pending);
    };
    let request = RefundRequest {
        idempotency_key: row.get("idempotency_key"),
        payment,
        amount_minor: row.get("amount_minor"),
        currency: row.get::<String, _>("currency").trim().to_string(),
        reason: row.get("reason"),
    };
    let (reference, outcome) = match state.processor.refund(&request, now).await {
        Ok(started) => (Some(started.reference), started.state),
        Err(ProcessorError::Refused(r)) => (None, RefundState::Failed(r.to_string())),
        Err(ProcessorError::Unavailable(e)) => {
            tracing::warn!(refund = %id, error = %e, "processor unavailable; the refund is sent again later");
            return Ok(RefundStatus::Pending);
        }
    };
    let mut tx = state.db.begin().await?;
    let status: RefundStatus = sqlx::query_scalar("SELECT status FROM refunds WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if let Some(reference) = &reference {
        sqlx::query("UPDATE refunds SET processor_ref = $2 WHERE id = $1 AND processor_ref IS NULL")
            .bind(id)
            .bind(reference)
            .execute(&mut *tx)
            .await?;
    }
    let status = if status == RefundStatus::Pending { finish(&mut tx, state, id, outcome, now).await? } else { status };
    tx.commit().await?;
    Ok(status)
}

/// A refund's outcome (its row locked by the caller), audited; the
/// customer is told of money sent back.
async fn finish(
    tx: &mut PgConnection,
    state: &Billing,
    id: Uuid,
    outcome: RefundState,
    now: OffsetDateTime,
) -> Result<RefundStatus, sqlx::Error> {
    let (status, failure) = match outcome {
        RefundState::Pending => return Ok(RefundStatus::Pending),
        RefundState::Succeeded => (RefundStatus::Succeeded, None),
        RefundState::Failed(why) => (RefundStatus::Failed, Some(why)),
    };
    let row = sqlx::query(
        "UPDATE refunds SET status = $2, failure = $3, settled_at = $4 WHERE id = $1
          RETURNING org_id, invoice_id, amount_minor, currency, reason, requested_by, processor_ref",
    )
    .bind(id)
    .bind(status)
    .bind(&failure)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let inv = Invoice::locked(&mut *tx, row.get("invoice_id")).await?;
    let amount: i64 = row.get("amount_minor");
    let action = match status {
        RefundStatus::Succeeded => crate::audit::Action::BillingRefunded,
        _ => crate::audit::Action::BillingRefundFailed,
    };
    crate::audit::record(
        tx,
        now,
        row.get("requested_by"),
        Some(inv.org),
        action,
        serde_json::json!({
            "invoice": inv.number, "refund": id, "amount_minor": amount, "reason": row.get::<String, _>("reason"),
            "processor_ref": row.get::<Option<String>, _>("processor_ref"), "failure": failure,
        }),
    )
    .await?;
    if status == RefundStatus::Succeeded {
        super::notices::refunded(tx, state, &inv, amount, now).await?;
    } else {
        tracing::error!(refund = %id, invoice = %inv.number, failure = ?failure, "a refund failed at the processor");
    }
    Ok(status)
}

/// A refund's event: settles the refund Tollgate asked for. One made at the
/// processor directly is not Tollgate's (reconciliation lists it).
pub async fn apply_event(
    tx: &mut PgConnection,
    state: &Billing,
    processor: &str,
    event: &RefundEvent,
    now: OffsetDateTime,
) -> Result<Applied, EventError> {
    let row: Option<(Uuid, RefundStatus)> = sqlx::query_as(
        "SELECT id, status FROM refunds WHERE processor = $1 AND (processor_ref = $2 OR idempotency_key = $3) FOR UPDATE",
    )
    .bind(processor)
    .bind(&event.reference)
    .bind(event.idempotency_key.as_deref().unwrap_or(""))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, status)) = row else {
        return Ok(Applied::Ignored);
    };
    sqlx::query("UPDATE refunds SET processor_ref = coalesce(processor_ref, $2) WHERE id = $1")
        .bind(id)
        .bind(&event.reference)
        .execute(&mut *tx)
        .await?;
    Ok(match (status, &event.state) {
        (RefundStatus::Pending, RefundState::Pending) => Applied::Ignored,
        (RefundStatus::Pending, outcome) => {
            finish(tx, state, id, outcome.clone(), now).await?;
            Applied::Settled
        }
        // A refund can fail after the processor first reported it done
        // (the card's account closed, say): the money did not go back.
        (RefundStatus::Succeeded, RefundState::Failed(_)) => {
            finish(tx, state, id, event.state.clone(), now).await?;
            Applied::Settled
        }
        _ => Applied::AlreadySettled,
    })
}

/// What an admin's refund did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refunded {
    pub status: RefundStatus,
    pub amount_minor: i64,
    pub currency: String,
    /// The same form sent again: nothing new was refunded.
    pub replay: bool,
}

/// An admin refunds `amount_minor` (all that is left when `None`) of a paid
/// invoice of `org`, with a reason. `form_key` names the form: sending it
/// twice refunds once.
#[allow(clippy::too_many_arguments)]
pub async fn refund_invoice(
    state: &Billing,
    org: Uuid,
    invoice: Uuid,
    amount_minor: Option<i64>,
    reason: &str,
    by: Uuid,
    form_key: &str,
    now: OffsetDateTime,
) -> Result<Refunded, BillingError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(BillingError::Invalid(vec![("reason", "Say why: the customer and the audit log read it.".into())]));
    }
    if reason.chars().count() > 500 {
        return Err(BillingError::Invalid(vec![("reason", "The reason is at most 500 characters.".into())]));
    }
    let form_key = form_key.trim();
    if form_key.is_empty() || form_key.len() > 100 {
        return Err(BillingError::State("This form expired; open the page again.".into()));
    }
    let key = format!("admin-refund:{org}:{form_key}");
    let mut tx = state.db.begin().await?;
    let belongs: Option<Uuid> = sqlx::query_scalar("SELECT id FROM invoices WHERE id = $1 AND org_id = $2")
        .bind(invoice)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await?;
    if belongs.is_none() {
        return Err(BillingError::NotFound);
    }
    if let Some((status, amount, currency)) = sqlx::query_as::<_, (RefundStatus, i64, String)>(
        "SELECT status, amount_minor, currency FROM refunds WHERE idempotency_key = $1",
    )
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?
    {
        return Ok(Refunded { status, amount_minor: amount, currency: currency.trim().into(), replay: true });
    }
    // The charge's row first, then the invoice's: the order settling a
    // charge takes them in.
    let charge = sqlx::query(
        "SELECT id, processor, amount_minor FROM charges WHERE invoice_id = $1 AND status = 'succeeded'
          ORDER BY settled_at, id LIMIT 1 FOR UPDATE",
    )
    .bind(invoice)
    .fetch_optional(&mut *tx)
    .await?;
    let inv = Invoice::locked(&mut tx, invoice).await?;
    if inv.status != super::payments::InvoiceStatus::Paid {
        return Err(BillingError::State("Only a paid invoice can be refunded.".into()));
    }
    let Some(charge) = charge else {
        return Err(BillingError::State("No card payment paid this invoice: there is nothing to refund.".into()));
    };
    let processor: String = charge.get("processor");
    if processor != state.processor.name() {
        return Err(BillingError::State(format!(
            "The {processor} processor took this payment and no longer takes payments here: refund it there."
        )));
    }
    let charge_id: Uuid = charge.get("id");
    // What went back of this payment (not of a second one the processor
    // took for the same charge).
    let refunded: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(r.amount_minor), 0)::bigint FROM refunds r JOIN charges c ON c.id = r.charge_id
          WHERE r.charge_id = $1 AND r.status <> 'failed' AND (r.charge_ref = '' OR r.charge_ref = c.processor_ref)",
    )
    .bind(charge_id)
    .fetch_one(&mut *tx)
    .await?;
    let left = charge.get::<i64, _>("amount_minor") - refunded;
    if left <= 0 {
        return Err(BillingError::State("This invoice has been refunded in full.".into()));
    }
    let amount = amount_minor.unwrap_or(left);
    if amount < 1 || amount > left {
        return Err(BillingError::Invalid(vec![(
            "amount",
            format!("Refund between {} and {}.", format_money(1, &inv.currency), format_money(left, &inv.currency)),
        )]));
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO refunds (id, org_id, invoice_id, charge_id, processor, idempotency_key, charge_ref, amount_minor,
                              currency, reason, status, requested_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(org)
    .bind(invoice)
    .bind(charge_id)
    .bind(&processor)
    .bind(&key)
    .bind(amount)
    .bind(&inv.currency)
    .bind(reason)
    .bind(RefundStatus::Pending)
    .bind(by)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::audit::write(
        &mut tx,
        now,
        crate::audit::Entry::new(
            Some(by),
            Some(org),
            crate::audit::Action::BillingRefundRequested,
            serde_json::json!({"invoice": inv.number, "refund": id, "amount_minor": amount, "reason": reason}),
        )
        .change(serde_json::json!({"refunded_minor": refunded}), serde_json::json!({"refunded_minor": refunded + amount})),
    )
    .await?;
    tx.commit().await?;
    let status = send(state, id, now).await?;
    Ok(Refunded { status, amount_minor: amount, currency: inv.currency, replay: false })
}

/// A refund as the invoice shows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RefundRecord {
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub status: RefundStatus,
    pub created_at: OffsetDateTime,
    pub settled_at: Option<OffsetDateTime>,
}

pub async fn of_invoice(db: &sqlx::PgPool, invoice: Uuid) -> Result<Vec<RefundRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT amount_minor, currency, reason, status, created_at, settled_at FROM refunds
          WHERE invoice_id = $1 ORDER BY created_at",
    )
    .bind(invoice)
    .fetch_all(db)
    .await
}
