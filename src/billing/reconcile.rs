//! Reconciliation: Tollgate's charges and refunds of a period beside the
//! processor's payments, and every difference between them. A charge is
//! matched to its payment by the processor's reference, else by the
//! idempotency key Tollgate sent with it; the processor's side is read a
//! day wider than the period, so a payment recorded a moment later than its
//! charge (across midnight) still matches. `tollgate reconcile --since …`
//! and the console's `/admin/reconcile` print the same report.

use super::format_money;
use super::payments::ChargeStatus;
use super::processor::{ChargeState, Payment, ProcessorError};
use super::Billing;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    /// How the two records of a payment differ.
    pub enum Kind {
        /// Tollgate counts it paid; the processor has no such payment.
        MissingAtProcessor = "missing_at_processor",
        /// The processor took money Tollgate has no charge for.
        UnknownToTollgate = "unknown_to_tollgate",
        /// The processor took a second payment for one of Tollgate's
        /// charges, and has not given it back.
        SecondPayment = "second_payment",
        StatusDiffers = "status_differs",
        AmountDiffers = "amount_differs",
        RefundsDiffer = "refunds_differ",
        /// A refund Tollgate owes or promised did not go through (failed,
        /// or still unsent after an hour).
        RefundNotSent = "refund_not_sent",
        /// The customer's bank took the money back.
        DisputeLost = "dispute_lost",
    }
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::MissingAtProcessor => "paid here, missing at the processor",
            Kind::UnknownToTollgate => "taken by the processor, unknown here",
            Kind::SecondPayment => "a second payment for one charge",
            Kind::StatusDiffers => "outcome differs",
            Kind::AmountDiffers => "amount differs",
            Kind::RefundsDiffer => "refunds differ",
            Kind::RefundNotSent => "a refund that did not go through",
            Kind::DisputeLost => "a dispute lost: the money went back",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Difference {
    pub kind: Kind,
    pub org: Option<Uuid>,
    pub invoice: Option<String>,
    pub charge: Option<Uuid>,
    /// The processor's reference of the payment.
    pub reference: Option<String>,
    /// What Tollgate records, and what the processor does.
    pub ours: String,
    pub theirs: String,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub processor: &'static str,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// Tollgate's charges of the period.
    pub charges: usize,
    /// The processor's payments of the period.
    pub payments: usize,
    pub differences: Vec<Difference>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the period ends before it starts")]
    Period,
    #[error("the processor could not be asked: {0}")]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct Ours {
    id: Uuid,
    org_id: Uuid,
    number: String,
    idempotency_key: String,
    processor_ref: Option<String>,
    amount_minor: i64,
    currency: String,
    status: ChargeStatus,
    created_at: OffsetDateTime,
}

fn money(amount: i64, currency: &str) -> String {
    format_money(amount, currency.trim())
}

fn theirs_text(p: &Payment) -> String {
    let state = match &p.state {
        ChargeState::Succeeded => "succeeded".to_string(),
        ChargeState::Failed(r) => format!("failed ({r})"),
        ChargeState::Pending => "pending".into(),
        ChargeState::ActionRequired => "awaiting the customer's confirmation".into(),
    };
    let refunded = if p.refunded_minor > 0 { format!(", {} refunded", money(p.refunded_minor, &p.currency)) } else { String::new() };
    format!("{} {state}{refunded}", money(p.amount_minor, &p.currency))
}

/// Compares the period from `from` to `to`. Charges still pending less
/// than an hour before `now` are in flight, not different.
pub async fn compare(state: &Billing, from: OffsetDateTime, to: OffsetDateTime, now: OffsetDateTime) -> Result<Report, ReconcileError> {
    if to <= from {
        return Err(ReconcileError::Period);
    }
    let processor = state.processor.name();
    let ours: Vec<Ours> = sqlx::query_as(
        "SELECT c.id, c.org_id, i.number, c.idempotency_key, c.processor_ref, c.amount_minor, c.currency::text AS currency,
                c.status, c.created_at
           FROM charges c JOIN invoices i ON i.id = c.invoice_id
          WHERE c.processor = $1 AND c.created_at >= $2 AND c.created_at < $3 ORDER BY c.created_at",
    )
    .bind(processor)
    .bind(from)
    .bind(to)
    .fetch_all(&state.db)
    .await?;
    // What Tollgate refunded, by the processor's payment it went back on.
    let refunded: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT coalesce(nullif(r.charge_ref, ''), c.processor_ref), sum(r.amount_minor)::bigint
           FROM refunds r JOIN charges c ON c.id = r.charge_id
          WHERE r.processor = $1 AND r.status = 'succeeded' AND c.created_at >= $2 - interval '1 day' AND c.created_at < $3 + interval '1 day'
            AND coalesce(nullif(r.charge_ref, ''), c.processor_ref) IS NOT NULL
          GROUP BY 1",
    )
    .bind(processor)
    .bind(from)
    .bind(to)
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .collect();
    let day = time::Duration::days(1);
    let theirs = state.processor.payments(from - day, to + day).await?;
    let by_ref: HashMap<&str, &Payment> = theirs.iter().map(|p| (p.reference.as_str(), p)).collect();
    let mut by_key: HashMap<&str, Vec<&Payment>> = HashMap::new();
    for p in &theirs {
        if let Some(k) = &p.idempotency_key {
            by_key.entry(k.as_str()).or_default().push(p);
        }
    }
    let mut matched: HashSet<&str> = HashSet::new();
    let mut differences = Vec::new();
    let in_flight = |o: &Ours| o.status == ChargeStatus::Pending && o.created_at > now - time::Duration::hours(1);
    for o in &ours {
        let found = o
            .processor_ref
            .as_deref()
            .and_then(|r| by_ref.get(r).copied())
            .or_else(|| by_key.get(o.idempotency_key.as_str()).and_then(|v| v.first().copied()));
        let difference = |kind: Kind, theirs: String| Difference {
            kind,
            org: Some(o.org_id),
            invoice: Some(o.number.clone()),
            charge: Some(o.id),
            reference: o.processor_ref.clone(),
            ours: format!("{} {}", money(o.amount_minor, &o.currency), o.status),
            theirs,
        };
        let Some(p) = found else {
            if o.status == ChargeStatus::Succeeded || (o.status == ChargeStatus::Pending && !in_flight(o)) {
                differences.push(difference(Kind::MissingAtProcessor, "no such payment".into()));
            }
            continue;
        };
        matched.insert(p.reference.as_str());
        let same_outcome = matches!(
            (o.status, &p.state),
            (ChargeStatus::Succeeded, ChargeState::Succeeded)
                | (ChargeStatus::Failed, ChargeState::Failed(_))
                | (ChargeStatus::Pending, ChargeState::Pending | ChargeState::ActionRequired)
        );
        if !same_outcome && !in_flight(o) {
            differences.push(difference(Kind::StatusDiffers, theirs_text(p)));
        }
        if p.amount_minor != o.amount_minor || p.currency != o.currency.trim() {
            differences.push(difference(Kind::AmountDiffers, theirs_text(p)));
        }
        let ours_refunded = refunded.get(&p.reference).copied().unwrap_or(0);
        if ours_refunded != p.refunded_minor {
            let mut d = difference(Kind::RefundsDiffer, theirs_text(p));
            d.ours = format!("{} refunded", money(ours_refunded, &o.currency));
            differences.push(d);
        }
    }
    let ours_by_key: HashMap<&str, &Ours> = ours.iter().map(|o| (o.idempotency_key.as_str(), o)).collect();
    let mut payments = 0;
    for p in &theirs {
        if p.created < from || p.created >= to {
            continue;
        }
        payments += 1;
        if matched.contains(p.reference.as_str()) || p.state != ChargeState::Succeeded || p.refunded_minor >= p.amount_minor {
            continue;
        }
        let charge = p.idempotency_key.as_deref().and_then(|k| ours_by_key.get(k)).copied();
        differences.push(Difference {
            kind: if charge.is_some() { Kind::SecondPayment } else { Kind::UnknownToTollgate },
            org: charge.map(|o| o.org_id),
            invoice: charge.map(|o| o.number.clone()),
            charge: charge.map(|o| o.id),
            reference: Some(p.reference.clone()),
            ours: match charge {
                Some(o) => format!("paid by {}", o.processor_ref.as_deref().unwrap_or("another payment")),
                None => "no charge".into(),
            },
            theirs: theirs_text(p),
        });
    }
    differences.extend(refunds_not_sent(state, from, to, now).await?);
    differences.extend(disputes_lost(state, from, to).await?);
    Ok(Report { processor, from, to, charges: ours.len(), payments, differences })
}

/// Refunds of the period's charges that failed, or that have waited unsent
/// for more than an hour.
async fn refunds_not_sent(state: &Billing, from: OffsetDateTime, to: OffsetDateTime, now: OffsetDateTime) -> Result<Vec<Difference>, sqlx::Error> {
    let rows: Vec<(Uuid, String, Uuid, Option<String>, i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT r.org_id, i.number, r.charge_id, coalesce(nullif(r.charge_ref, ''), c.processor_ref), r.amount_minor,
                r.currency::text, r.status, r.failure
           FROM refunds r JOIN charges c ON c.id = r.charge_id JOIN invoices i ON i.id = r.invoice_id
          WHERE r.processor = $1 AND c.created_at >= $2 AND c.created_at < $3
            AND (r.status = 'failed' OR (r.status = 'pending' AND r.created_at < $4 - interval '1 hour'))
          ORDER BY r.created_at",
    )
    .bind(state.processor.name())
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_all(&state.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(org, number, charge, payment, amount, currency, status, failure)| Difference {
            kind: Kind::RefundNotSent,
            org: Some(org),
            invoice: Some(number),
            charge: Some(charge),
            reference: payment,
            ours: format!("{} to refund, {status}{}", money(amount, &currency), failure.map(|f| format!(" ({f})")).unwrap_or_default()),
            theirs: "not refunded".into(),
        })
        .collect())
}

/// Disputes of the period's payments that the bank decided for the customer.
async fn disputes_lost(state: &Billing, from: OffsetDateTime, to: OffsetDateTime) -> Result<Vec<Difference>, sqlx::Error> {
    let rows: Vec<(Option<Uuid>, Option<String>, Option<Uuid>, String, i64, String, String)> = sqlx::query_as(
        "SELECT d.org_id, i.number, d.charge_id, d.payment, d.amount_minor, d.currency::text, d.reason
           FROM disputes d LEFT JOIN charges c ON c.id = d.charge_id LEFT JOIN invoices i ON i.id = c.invoice_id
          WHERE d.processor = $1 AND d.status = 'lost' AND coalesce(c.created_at, d.opened_at) >= $2
            AND coalesce(c.created_at, d.opened_at) < $3
          ORDER BY d.opened_at",
    )
    .bind(state.processor.name())
    .bind(from)
    .bind(to)
    .fetch_all(&state.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(org, number, charge, payment, amount, currency, reason)| Difference {
            kind: Kind::DisputeLost,
            org,
            invoice: number,
            charge,
            reference: Some(payment),
            ours: "paid".into(),
            theirs: format!("{} taken back by the bank ({reason})", money(amount, &currency)),
        })
        .collect())
}

/// A date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc())
}
