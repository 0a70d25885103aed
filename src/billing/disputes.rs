//! Disputes: a customer asked their bank to take back a payment. The
//! processor decides them with the bank; Tollgate keeps each dispute's
//! latest state (`disputes`), records every step in the audit log (for the
//! organization, so admins see it on its console page) and changes nothing
//! else. A lost dispute took the money back: reconciliation lists it.

use super::payments::{Applied, EventError};
use super::webhooks::DisputeEvent;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

pub async fn record(tx: &mut PgConnection, processor: &str, d: &DisputeEvent, now: OffsetDateTime) -> Result<Applied, EventError> {
    let charge: Option<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT c.id, c.org_id, i.number FROM charges c JOIN invoices i ON i.id = c.invoice_id
          WHERE c.processor = $1 AND c.processor_ref = $2",
    )
    .bind(processor)
    .bind(&d.payment)
    .fetch_optional(&mut *tx)
    .await?;
    let (charge, org, invoice) = match charge {
        Some((c, o, n)) => (Some(c), Some(o), Some(n)),
        None => (None, None, None),
    };
    let amount = d.amount.max(0);
    let currency: String = d.currency.chars().filter(char::is_ascii_alphabetic).take(3).collect();
    sqlx::query(
        "INSERT INTO disputes (id, processor, org_id, charge_id, payment, amount_minor, currency, reason, status, opened_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (processor, id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,
                amount_minor = EXCLUDED.amount_minor, updated_at = EXCLUDED.updated_at
          -- A decided dispute stays decided, whatever arrives late.
          WHERE disputes.status NOT IN ('won', 'lost', 'warning_closed')",
    )
    .bind(&d.reference)
    .bind(processor)
    .bind(org)
    .bind(charge)
    .bind(&d.payment)
    .bind(amount)
    .bind(if currency.len() == 3 { currency } else { "USD".into() })
    .bind(&d.reason)
    .bind(&d.status)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        tx,
        now,
        None,
        org,
        crate::audit::Action::BillingDispute,
        serde_json::json!({
            "dispute": d.reference, "payment": d.payment, "charge": charge, "invoice": invoice,
            "amount_minor": d.amount, "currency": d.currency, "reason": d.reason, "status": d.status,
        }),
    )
    .await?;
    if org.is_none() {
        tracing::warn!(dispute = %d.reference, payment = %d.payment, "a dispute of a payment Tollgate has no record of");
    }
    Ok(Applied::Settled)
}
