//! Disputes: a customer asked their bank to take back a payment. The
//! processor decides them with the bank; Tollgate records every step in
//! the audit log (for the organization, so admins see it on its page and on
//! the console's overview) and changes nothing else: the money comes back
//! or not by the processor's decision, which reconciliation then shows.

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
