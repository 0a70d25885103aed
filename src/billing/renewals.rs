//! Renewals and dunning, run by a job (`jobs::billing`) on one instance at a
//! time, and safe if two run at once anyway: each subscription is renewed
//! under its row lock after checking again that its period is over, and a
//! period's invoice is named by the period (`renewal:<org>:<start>`), so a
//! period is renewed and charged once.
//!
//! States (product.md): at the end of a period an active (or trialing)
//! subscription opens the next period (with its included credits) and
//! charges it; a failed charge makes
//! it `past_due` with a grace period, tried again 1, 3 and 5 days after the
//! first failure and whenever a card changes; after the grace, `unpaid`.
//! A canceled subscription becomes `expired` at its period's end; a
//! downgrade takes effect then. A trial that ends without a card waits
//! (calls get 402 `payment_method_required`) until a card is added.

use super::payments::{self, Collected, Line, NewInvoice, Purpose};
use super::subscriptions::{add_month, current_in, open_period, Grant, Status};
use super::{format_money, notices};
use super::Billing;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Renews every subscription whose period is over; returns how many moved.
pub async fn renew_due(state: &Billing, now: OffsetDateTime) -> anyhow::Result<usize> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT org_id FROM subscriptions
          WHERE current_period_end <= $1 AND status IN ('active', 'trialing', 'canceled', 'pending_approval')
          ORDER BY current_period_end LIMIT 500",
    )
    .bind(now)
    .fetch_all(&state.db)
    .await?;
    let mut moved = 0;
    for org in due {
        match renew(state, org, now, Duration::ZERO).await {
            Ok(Some(_)) => moved += 1,
            Ok(None) => {}
            Err(e) => tracing::warn!(%org, error = %e, "renewal failed; tried again on the next run"),
        }
    }
    Ok(moved)
}

/// Renews one subscription if its period is over: `Some(state)` when it
/// moved (with the renewal invoice's collection, if one was charged).
pub async fn renew(
    state: &Billing,
    org: Uuid,
    now: OffsetDateTime,
    wait: Duration,
) -> Result<Option<Option<Collected>>, super::BillingError> {
    let mut tx = state.db.begin().await?;
    let Some(mut sub) = current_in(&mut tx, org, true).await? else {
        return Ok(None);
    };
    if sub.period_end > now {
        return Ok(None);
    }
    if sub.status == Status::PendingApproval {
        // Nobody decided within the period: the request lapses, and the
        // plan it would have replaced renews as usual.
        let note = format!("Your request for the {} plan was not decided before your period ended; ask again from the plans page.", sub.plan.name);
        let decline = super::subscriptions::Transition::DeclineRequest { note: note.clone(), lapsed: true };
        super::subscriptions::transition(&mut tx, org, decline, now).await?;
        notices::approval_decided(&mut tx, state, org, &sub.plan.name, false, &note, now).await?;
        sub = current_in(&mut tx, org, true).await?.ok_or(super::BillingError::NotFound)?;
    }
    match sub.status {
        Status::Canceled => {
            super::subscriptions::transition(&mut tx, org, super::subscriptions::Transition::Expire, now).await?;
            // Nothing more is included; what was left lapses now.
            super::subscriptions::roll_meters(&mut tx, org, sub.period_end, sub.period_end + time::Duration::seconds(1), now).await?;
            notices::ended(&mut tx, state, org, now).await?;
            tx.commit().await?;
            return Ok(Some(None));
        }
        Status::Active | Status::Trialing => {}
        _ => return Ok(None),
    }
    let has_card = super::cards::has_default(&mut tx, state.processor.name(), org).await?;
    let plan = sub.next_plan.clone().unwrap_or(sub.plan.clone());
    if sub.status == Status::Trialing && !has_card && plan.price_minor > 0 {
        // The gateway answers 402 payment_method_required until a card
        // comes. (A lapsed approval request above still stands.)
        tx.commit().await?;
        return Ok(None);
    }
    // A period missed by more than a month starts now, not in the past.
    let start = if add_month(sub.period_end) > now { sub.period_end } else { now };
    let end = add_month(start);
    if plan.price_minor == 0 {
        open_period(&mut tx, org, plan.id, start, end, Grant::Full, now).await?;
        tx.commit().await?;
        return Ok(Some(None));
    }
    // Until it is paid, the period spends at most what the one before it
    // included (the same plan's renewal: all of it, so calls keep working
    // in a grace period; after a trial: none), the rest once paid.
    open_period(&mut tx, org, plan.id, start, end, Grant::unpaid(&sub, sub.status == Status::Trialing), now).await?;
    let invoice = NewInvoice {
        org,
        purpose: Purpose::Renewal,
        currency: plan.currency.trim().to_string(),
        lines: vec![Line::one(
            format!("{} plan, {} – {}", plan.name, start.date(), end.date()),
            plan.price_minor,
        )],
        credits: 0,
        plan: Some(plan.id),
        period: Some((start, end)),
        key: format!("renewal:{org}:{start}"),
        owed: true,
        created_by: None,
    };
    let (id, _) = payments::create_invoice(&mut tx, &invoice, now).await?;
    tx.commit().await?;
    tracing::info!(%org, plan = %plan.code, amount = %format_money(plan.price_minor, &plan.currency), "renewal charged");
    Ok(Some(Some(collect_owed(state, id, now, wait).await?)))
}

/// Collects an owed invoice; with no card, it fails like a decline (the
/// subscription goes past due) until one is added.
async fn collect_owed(state: &Billing, invoice: Uuid, now: OffsetDateTime, wait: Duration) -> Result<Collected, super::BillingError> {
    match payments::collect(state, invoice, now, wait).await {
        Ok(c) => Ok(c),
        Err(payments::CollectError::NoCard) => {
            payments::no_card(state, invoice, now).await?;
            Ok(Collected::Failed(super::processor::Refused {
                code: "payment_method_required".into(),
                decline_code: None,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Dunning: past-due subscriptions whose grace has ended become unpaid, a
/// day before the end the customer is warned, owed invoices due for another
/// try are charged again, trials ending within three days are announced.
pub async fn dunning_due(state: &Billing, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    let lapsed = super::subscriptions::suspend_lapsed(&mut tx, now).await?;
    for org in lapsed {
        notices::suspended(&mut tx, state, org, now).await?;
    }
    let ending: Vec<(Uuid, OffsetDateTime)> = sqlx::query_as(
        "SELECT org_id, grace_until FROM subscriptions
          WHERE status = 'past_due' AND grace_until <= $1 + interval '1 day'",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for (org, until) in ending {
        notices::grace_ending(&mut tx, state, org, until, now).await?;
    }
    let trials: Vec<(Uuid, OffsetDateTime)> = sqlx::query_as(
        "SELECT org_id, trial_end FROM subscriptions
          WHERE status = 'trialing' AND trial_end IS NOT NULL AND trial_end <= $1 + interval '3 days'",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for (org, end) in trials {
        notices::trial_ending(&mut tx, state, org, end, now).await?;
    }
    tx.commit().await?;

    let retries: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM invoices WHERE owed AND status = 'failed' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT 100",
    )
    .bind(now)
    .fetch_all(&state.db)
    .await?;
    for invoice in retries {
        if let Err(e) = collect_owed(state, invoice, now, Duration::ZERO).await {
            tracing::warn!(%invoice, error = %e, "dunning retry failed to start");
        }
    }
    Ok(())
}

/// After a card was added or made the default: every owed invoice that
/// failed is charged again at once, and a trial that ended waiting for a
/// card is renewed; waits up to `wait` for the outcomes. Returns the
/// outcomes (empty when nothing was owed).
pub async fn retry_owed(state: &Billing, org: Uuid, now: OffsetDateTime, wait: Duration) -> Result<Vec<Collected>, super::BillingError> {
    let mut outcomes = Vec::new();
    if let Some(Some(c)) = renew(state, org, now, wait).await? {
        outcomes.push(c);
    }
    // A retry still being charged on the old card (dunning's) is waited for
    // first: when it fails, the new card is tried at once, not days later.
    // One that waits for the bank's confirmation on a card that is no longer
    // the default, or that another processor was making, is not waited
    // for: charging the invoice again sets it aside.
    const SET_ASIDE: &str = "EXISTS (SELECT 1 FROM charges c WHERE c.invoice_id = i.id AND c.status = 'pending'
          AND (c.processor <> $2 OR (c.action_required_at IS NOT NULL AND c.payment_method_id <>
               (SELECT p.id FROM payment_methods p WHERE p.org_id = i.org_id AND p.is_default AND p.removed_at IS NULL
                   AND p.processor = $2))))";
    let processor = state.processor.name();
    let until = tokio::time::Instant::now() + wait;
    loop {
        let in_flight: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM invoices i WHERE i.org_id = $1 AND i.owed AND i.status = 'open' AND NOT {SET_ASIDE})"
        ))
        .bind(org)
        .bind(processor)
        .fetch_one(&state.db)
        .await?;
        if !in_flight || tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT i.id FROM invoices i WHERE i.org_id = $1 AND i.owed AND (i.status = 'failed' OR (i.status = 'open' AND {SET_ASIDE}))
          ORDER BY i.created_at"
    ))
    .bind(org)
    .bind(processor)
    .fetch_all(&state.db)
    .await?;
    for invoice in failed {
        outcomes.push(collect_owed(state, invoice, now, wait).await?);
    }
    Ok(outcomes)
}
