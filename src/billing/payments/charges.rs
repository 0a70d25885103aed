//! Charges: attempts to collect an invoice on a saved card, each with its
//! own idempotency key; the processor's events that settle them (each
//! applied once, with what the payment buys: `fulfilment`), dunning's next
//! attempt, and where an invoice's collection stands.

use super::{fulfil, Invoice, InvoiceStatus, Purpose};
use crate::billing::processor::{ChargeRequest, ChargeState, ProcessorError, Refused, Started};
use crate::billing::webhooks::{ChargeEvent, ChargeOutcome, Event, EventBody};
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
    /// The card's bank wants the customer to confirm the payment (3-D
    /// Secure) on the invoice's page.
    ActionRequired(Uuid),
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
    let processor = state.processor.name();
    let pending: Option<Waiting> = sqlx::query_as(
        "SELECT c.id, c.processor, c.processor_ref, c.action_required_at IS NOT NULL AS needs_action,
                coalesce(c.payment_method_id <> (SELECT p.id FROM payment_methods p WHERE p.org_id = c.org_id
                    AND p.is_default AND p.removed_at IS NULL AND p.processor = $3), false) AS other_card
           FROM charges c WHERE c.invoice_id = $1 AND c.status = $2",
    )
    .bind(invoice)
    .bind(ChargeStatus::Pending)
    .bind(processor)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(waiting) = pending {
        tx.commit().await?;
        // A charge another processor was making (before a switch) fails;
        // one waiting for the bank on a card that is no longer the default
        // is set aside quietly (no failure told, no dunning step) for a new
        // one on the default card.
        let replaced = waiting.processor == processor && waiting.needs_action && waiting.other_card;
        if (replaced || waiting.processor != processor) && give_up(state, &waiting, replaced, now).await? {
            return Box::pin(collect(state, invoice, now, wait)).await;
        }
        return Ok(await_charge(db, waiting.id, wait).await?);
    }
    // A card of the processor taking payments (one saved with another,
    // before a switch, is no card to charge).
    let card: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT id, processor_ref FROM payment_methods
          WHERE org_id = $1 AND is_default AND removed_at IS NULL AND processor_ref IS NOT NULL AND processor = $2",
    )
    .bind(org)
    .bind(processor)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((card_id, card_ref)) = card else {
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
    .bind(processor)
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
    let purpose: super::Purpose = row.try_get("purpose")?;
    let request = ChargeRequest {
        idempotency_key: key,
        customer: crate::billing::customer(db, org).await?,
        card: card_ref,
        amount_minor: amount,
        currency,
        description: format!("Tollgate invoice {number}"),
        off_session: purpose.off_session(),
    };
    send(state, charge, &request, now).await?;
    Ok(await_charge(db, charge, wait).await?)
}

/// A pending charge of an invoice, as `collect` finds it.
#[derive(sqlx::FromRow)]
struct Waiting {
    id: Uuid,
    processor: String,
    processor_ref: Option<String>,
    needs_action: bool,
    /// Its card is not the organization's default card now (and there is
    /// one).
    other_card: bool,
}

/// Settles a pending charge that is given up: canceled at its processor
/// (when that is the one taking payments), then settled from its word:
/// paid if it went through meanwhile, else failed; `replaced`, a failure
/// leaves its invoice as it is (a new charge follows at once). `false` when
/// the processor could not be asked (it stays pending).
async fn give_up(state: &Billing, waiting: &Waiting, replaced: bool, now: OffsetDateTime) -> Result<bool, sqlx::Error> {
    let outcome = match (&waiting.processor_ref, waiting.processor == state.processor.name()) {
        (Some(reference), true) => {
            let asked = match state.processor.abandon(reference).await {
                Ok(()) => state.processor.charge_state(reference).await,
                Err(e) => Err(e),
            };
            match asked {
                Ok(ChargeState::Succeeded) => ChargeOutcome::Succeeded,
                Ok(ChargeState::Failed(r)) => ChargeOutcome::Failed(r),
                Ok(ChargeState::ActionRequired) => ChargeOutcome::Failed(Refused::new("authentication_required", None)),
                // Still processing: it is not given up.
                Ok(ChargeState::Pending) => return Ok(false),
                Err(e) => {
                    tracing::warn!(charge = %waiting.id, error = %e, "could not give up a waiting charge");
                    return Ok(false);
                }
            }
        }
        (None, true) => ChargeOutcome::Failed(Refused::new("authentication_required", None)),
        // Another processor's: nothing of it can be asked any more.
        (_, false) => ChargeOutcome::Failed(Refused::new("processor_changed", None)),
    };
    match outcome {
        ChargeOutcome::Failed(refused) if replaced => {
            sqlx::query(
                "UPDATE charges SET status = $2, failure_code = $3, decline_code = $4, settled_at = $5, action_required_at = NULL
                  WHERE id = $1 AND status = $6",
            )
            .bind(waiting.id)
            .bind(ChargeStatus::Failed)
            .bind(&refused.code)
            .bind(&refused.decline_code)
            .bind(now)
            .bind(ChargeStatus::Pending)
            .execute(&state.db)
            .await?;
        }
        outcome => {
            settle_if_pending(state, waiting.id, outcome, now).await?;
        }
    }
    Ok(true)
}

/// Fails every charge another processor was still making (before a switch
/// of processor: its outcome can no longer arrive), so its invoice is
/// dunned and paid anew like any failed one. The renewals job calls it.
pub async fn fail_other_processors(state: &Billing, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let others: Vec<Waiting> = sqlx::query_as(
        "SELECT id, processor, processor_ref, action_required_at IS NOT NULL AS needs_action, false AS other_card
           FROM charges WHERE status = $1 AND processor <> $2 ORDER BY created_at LIMIT 100",
    )
    .bind(ChargeStatus::Pending)
    .bind(state.processor.name())
    .fetch_all(&state.db)
    .await?;
    for waiting in &others {
        give_up(state, waiting, false, now).await?;
    }
    Ok(others.len())
}

/// Asks the processor for a recorded charge. An answer on the spot (paid,
/// refused, or to be confirmed by the customer) settles it as its event
/// would; an unreachable processor leaves it pending, to be sent again with
/// the same key by [`resend_pending`].
async fn send(state: &Billing, charge: Uuid, request: &ChargeRequest, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let (reference, outcome) = match state.processor.charge(request, now).await {
        Ok(Started::Pending(r)) => (Some(r), None),
        Ok(Started::Succeeded(r)) => (Some(r), Some(ChargeOutcome::Succeeded)),
        Ok(Started::ActionRequired(r)) => (Some(r), Some(ChargeOutcome::ActionRequired)),
        Err(ProcessorError::Refused(refused)) => (None, Some(ChargeOutcome::Failed(refused))),
        Err(ProcessorError::Unavailable(e)) => {
            tracing::warn!(%charge, error = %e, "processor unavailable; the charge is sent again later");
            (None, None)
        }
    };
    let mut tx = state.db.begin().await?;
    let status: ChargeStatus = sqlx::query_scalar("SELECT status FROM charges WHERE id = $1 FOR UPDATE")
        .bind(charge)
        .fetch_one(&mut *tx)
        .await?;
    if let Some(reference) = &reference {
        sqlx::query("UPDATE charges SET processor_ref = $2 WHERE id = $1 AND processor_ref IS NULL")
            .bind(charge)
            .bind(reference)
            .execute(&mut *tx)
            .await?;
    }
    if let (ChargeStatus::Pending, Some(outcome)) = (status, outcome) {
        apply_outcome(&mut tx, state, charge, outcome, now).await?;
    }
    tx.commit().await
}

/// A pending charge's outcome (its row locked by the caller).
async fn apply_outcome(
    tx: &mut PgConnection,
    state: &Billing,
    charge: Uuid,
    outcome: ChargeOutcome,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    match outcome {
        ChargeOutcome::Succeeded => settle(tx, state, charge, Ok(()), now).await,
        ChargeOutcome::Failed(refused) => settle(tx, state, charge, Err(refused), now).await,
        ChargeOutcome::ActionRequired => action_required(tx, state, charge, now).await,
    }
}

/// The bank wants the customer to confirm a pending charge: it waits for
/// them (a day at most, [`abandon_unconfirmed`]); one made while they were
/// away emails them the link.
async fn action_required(tx: &mut PgConnection, state: &Billing, charge: Uuid, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let invoice: Option<Uuid> = sqlx::query_scalar(
        "UPDATE charges SET action_required_at = $2 WHERE id = $1 AND action_required_at IS NULL RETURNING invoice_id",
    )
    .bind(charge)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(invoice) = invoice else {
        return Ok(());
    };
    let inv = Invoice::locked(&mut *tx, invoice).await?;
    if inv.purpose.off_session() {
        crate::billing::notices::confirmation_needed(tx, state, &inv, now).await?;
    }
    Ok(())
}

/// Applies the processor's word to a charge still pending (in a
/// transaction of its own, the charge's row locked); `false` when it had
/// settled already.
async fn settle_if_pending(state: &Billing, charge: Uuid, outcome: ChargeOutcome, now: OffsetDateTime) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let status: ChargeStatus = sqlx::query_scalar("SELECT status FROM charges WHERE id = $1 FOR UPDATE")
        .bind(charge)
        .fetch_one(&mut *tx)
        .await?;
    let pending = status == ChargeStatus::Pending;
    if pending {
        apply_outcome(&mut tx, state, charge, outcome, now).await?;
    }
    tx.commit().await?;
    Ok(pending)
}

/// How long a charge waits for the customer's confirmation.
pub const CONFIRMATION_WINDOW: time::Duration = time::Duration::hours(23);

/// Gives up every charge its customer has not confirmed within
/// [`CONFIRMATION_WINDOW`]: canceled at the processor (so it cannot succeed
/// later), then settled from the processor's word (failed, unless it was
/// confirmed meanwhile). A job calls it.
pub async fn abandon_unconfirmed(state: &Billing, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let stale: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "SELECT id, processor_ref FROM charges
          WHERE status = $1 AND action_required_at IS NOT NULL AND action_required_at < $2 AND processor = $3
          ORDER BY action_required_at LIMIT 100",
    )
    .bind(ChargeStatus::Pending)
    .bind(now - CONFIRMATION_WINDOW)
    .bind(state.processor.name())
    .fetch_all(&state.db)
    .await?;
    let mut done = 0;
    for (charge, reference) in stale {
        let state_now = match &reference {
            Some(r) => match state.processor.abandon(r).await {
                Ok(()) => state.processor.charge_state(r).await,
                Err(e) => Err(e),
            },
            None => Ok(ChargeState::ActionRequired),
        };
        let outcome = match state_now {
            Ok(ChargeState::Succeeded) => ChargeOutcome::Succeeded,
            Ok(ChargeState::Failed(r)) => ChargeOutcome::Failed(r),
            Ok(ChargeState::ActionRequired) => ChargeOutcome::Failed(Refused::new("authentication_required", None)),
            // Processing after all: its outcome arrives as an event.
            Ok(ChargeState::Pending) => continue,
            Err(e) => {
                tracing::warn!(%charge, error = %e, "could not give up an unconfirmed charge; trying again later");
                continue;
            }
        };
        if settle_if_pending(state, charge, outcome, now).await? {
            done += 1;
        }
    }
    Ok(done)
}

/// What the browser needs to let the customer confirm one of the
/// organization's charges with their bank, and the card's reference: `None`
/// when it no longer waits (or the processor cannot say just now).
pub async fn awaiting_confirmation(
    state: &Billing,
    org: Uuid,
    charge: Uuid,
) -> Result<Option<(crate::billing::processor::BrowserLibrary, String)>, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT c.processor_ref, p.processor_ref FROM charges c JOIN payment_methods p ON p.id = c.payment_method_id
          WHERE c.id = $1 AND c.org_id = $2 AND c.processor = $3 AND c.status = $4 AND c.action_required_at IS NOT NULL",
    )
    .bind(charge)
    .bind(org)
    .bind(state.processor.name())
    .bind(ChargeStatus::Pending)
    .fetch_optional(&state.db)
    .await?;
    let Some((Some(reference), Some(card))) = row else {
        return Ok(None);
    };
    match state.processor.confirmation(&reference).await {
        Ok(library) => Ok(library.map(|l| (l, card))),
        Err(e) => {
            tracing::warn!(%charge, error = %e, "the processor could not say how to confirm a charge");
            Ok(None)
        }
    }
}

/// The customer confirmed a charge in the browser: settles it from the
/// processor's word. Only the organization's own charges.
pub async fn confirmed(state: &Billing, org: Uuid, charge: Uuid, now: OffsetDateTime) -> Result<Collected, sqlx::Error> {
    let reference: Option<Option<String>> = sqlx::query_scalar(
        "SELECT processor_ref FROM charges WHERE id = $1 AND org_id = $2 AND processor = $3",
    )
    .bind(charge)
    .bind(org)
    .bind(state.processor.name())
    .fetch_optional(&state.db)
    .await?;
    let Some(Some(reference)) = reference else {
        return Err(sqlx::Error::RowNotFound);
    };
    let outcome = match state.processor.charge_state(&reference).await {
        Ok(ChargeState::Succeeded) => Some(ChargeOutcome::Succeeded),
        Ok(ChargeState::Failed(r)) => Some(ChargeOutcome::Failed(r)),
        Ok(ChargeState::ActionRequired | ChargeState::Pending) => None,
        Err(e) => {
            tracing::warn!(%charge, error = %e, "could not ask the processor about a confirmed charge");
            None
        }
    };
    if let Some(outcome) = outcome {
        settle_if_pending(state, charge, outcome, now).await?;
    }
    await_charge(&state.db, charge, Duration::from_secs(2)).await
}

/// Sends again every charge still pending after a minute without a
/// reference from the processor (same idempotency key: never twice).
pub async fn resend_pending(state: &Billing, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id, c.org_id, c.idempotency_key, c.amount_minor, c.currency, p.processor_ref, i.number, i.purpose
           FROM charges c JOIN payment_methods p ON p.id = c.payment_method_id JOIN invoices i ON i.id = c.invoice_id
          WHERE c.status = $2 AND c.processor_ref IS NULL AND c.created_at < $1 - interval '1 minute' AND c.processor = $3
          LIMIT 100",
    )
    .bind(now)
    .bind(ChargeStatus::Pending)
    .bind(state.processor.name())
    .fetch_all(&state.db)
    .await?;
    for row in &rows {
        let purpose: super::Purpose = row.try_get("purpose")?;
        let request = ChargeRequest {
            idempotency_key: row.get("idempotency_key"),
            customer: crate::billing::customer(&state.db, row.get("org_id")).await?,
            card: row.get::<Option<String>, _>("processor_ref").unwrap_or_default(),
            amount_minor: row.get("amount_minor"),
            currency: row.get::<String, _>("currency").trim().to_string(),
            description: format!("Tollgate invoice {}", row.get::<String, _>("number")),
            off_session: purpose.off_session(),
        };
        send(state, row.get("id"), &request, now).await?;
    }
    Ok(rows.len())
}

/// Waits up to `wait` for a charge to settle.
pub async fn await_charge(db: &PgPool, charge: Uuid, wait: Duration) -> Result<Collected, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (status, code, decline, action): (ChargeStatus, Option<String>, Option<String>, Option<OffsetDateTime>) =
            sqlx::query_as("SELECT status, failure_code, decline_code, action_required_at FROM charges WHERE id = $1")
                .bind(charge)
                .fetch_one(db)
                .await?;
        match status {
            ChargeStatus::Pending if action.is_some() => return Ok(Collected::ActionRequired(charge)),
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

/// Applies a verified processor event once (see the module doc): an event
/// id seen before changes nothing, and an error leaves it unrecorded, so
/// the processor's retry applies it.
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
    let applied = match &event.body {
        EventBody::Charge(c) => charge_event(&mut tx, state, processor, &event.id, c, now).await?,
        EventBody::Refund(r) => crate::billing::refunds::apply_event(&mut tx, state, processor, r, now).await?,
        EventBody::CardUpdated(c) => crate::billing::cards::updated(&mut tx, processor, c, now).await?,
        EventBody::Dispute(d) => crate::billing::disputes::record(&mut tx, processor, d, now).await?,
        EventBody::Other => Applied::Ignored,
    };
    tx.commit().await?;
    Ok(applied)
}

async fn charge_event(
    tx: &mut PgConnection,
    state: &Billing,
    processor: &str,
    event_id: &str,
    charge: &ChargeEvent,
    now: OffsetDateTime,
) -> Result<Applied, EventError> {
    let row = sqlx::query(
        "SELECT id, status, amount_minor, currency, processor_ref, invoice_id, org_id FROM charges
          WHERE idempotency_key = $1 AND processor = $2 FOR UPDATE",
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
        .bind(event_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let known: Option<String> = row.get("processor_ref");
    sqlx::query("UPDATE charges SET processor_ref = coalesce(processor_ref, $2) WHERE id = $1")
        .bind(id)
        .bind(&charge.reference)
        .execute(&mut *tx)
        .await?;
    let recorded: ChargeStatus = row.try_get("status")?;
    Ok(match (recorded, &charge.outcome) {
        (ChargeStatus::Succeeded, ChargeOutcome::Succeeded) if known.as_deref().is_some_and(|k| k != charge.reference) => {
            // A second payment for one attempt (the processor took the
            // money twice): it buys nothing and goes back.
            tracing::error!(charge = %id, payment = %charge.reference, "a second payment for one charge; refunding it");
            crate::billing::refunds::due(
                tx,
                crate::billing::refunds::Due {
                    org: row.get("org_id"),
                    invoice: row.get("invoice_id"),
                    charge: id,
                    payment: charge.reference.clone(),
                    amount_minor: charge.amount,
                    currency: charge.currency.clone(),
                    reason: "charged twice for one attempt".into(),
                },
                now,
            )
            .await?;
            Applied::Settled
        }
        (ChargeStatus::Failed, ChargeOutcome::Succeeded) => {
            // The processor took the money after all (a late success after a
            // failure it reported, or a refusal we recorded on the spot): what
            // the money buys is delivered, or, if the invoice was paid by
            // another charge meanwhile, the money goes back.
            tracing::warn!(charge = %id, "a charge recorded as failed succeeded at the processor");
            settle(tx, state, id, Ok(()), now).await?;
            Applied::Settled
        }
        (ChargeStatus::Pending, outcome) => {
            apply_outcome(tx, state, id, outcome.clone(), now).await?;
            Applied::Settled
        }
        _ => Applied::AlreadySettled,
    })
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
        "UPDATE charges SET status = $2, failure_code = $3, decline_code = $4, settled_at = $5, action_required_at = NULL
          WHERE id = $1 RETURNING invoice_id",
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
            // invoice buys once, the second payment goes back.
            tracing::error!(%charge, invoice = %inv.number, "an invoice was paid twice; refunding one charge");
            let (payment, amount): (Option<String>, i64) =
                sqlx::query_as("SELECT processor_ref, amount_minor FROM charges WHERE id = $1")
                    .bind(charge)
                    .fetch_one(&mut *tx)
                    .await?;
            crate::billing::refunds::due(
                tx,
                crate::billing::refunds::Due {
                    org: inv.org,
                    invoice: inv.id,
                    charge,
                    payment: payment.unwrap_or_default(),
                    amount_minor: amount,
                    currency: inv.currency.clone(),
                    reason: "invoice paid twice".into(),
                },
                now,
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

