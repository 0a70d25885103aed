//! Credit top-ups (a pack or a custom amount, charged to the default card,
//! credited only when the charge succeeds), limits (spend cap, low-balance
//! alert, auto top-up) and the free sandbox refill.
//!
//! A top-up is named by the key its form carried: the same form sent twice
//! (a double click, a resubmission) finds the first invoice and charges once.
//! Auto top-up fires when the balance is below its threshold and the setting
//! is armed; firing disarms it in the same statement that picks it (so one
//! instance fires, once), and it re-arms once the balance is back at or
//! above the threshold.

use super::ledger::{post, Account, Kind, Posting};
use super::payments::{self, Collected, Line, NewInvoice, Purpose};
use super::policy::{top_up_price, PACK_PRICES, SANDBOX_REFILLS_PER_DAY, SANDBOX_START};
use super::BillingError;
use super::Billing;
use sqlx::{PgConnection, Row};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The currency top-ups are priced in: the plans'.
pub const CURRENCY: &str = "USD";

fn describe(credits: i64) -> String {
    if PACK_PRICES.iter().any(|(c, _)| *c == credits) {
        format!("{} credits (pack)", group(credits))
    } else {
        format!("{} credits", group(credits))
    }
}

/// "6,200" (the UI's own formatting, one function for both).
pub use app::types::group;

/// Buys `credits` on the default card; `key` names the request. Returns the
/// invoice and how its collection stands.
pub async fn top_up(
    state: &Billing,
    org: Uuid,
    user: Uuid,
    credits: i64,
    key: &str,
    now: OffsetDateTime,
    wait: Duration,
) -> Result<(Uuid, Collected), BillingError> {
    let price = top_up_price(credits).ok_or_else(|| {
        BillingError::Invalid(vec![(
            "credits",
            format!(
                "Choose a pack, or between {} and {} credits.",
                group(super::policy::CUSTOM_MIN),
                group(super::policy::CUSTOM_MAX)
            ),
        )])
    })?;
    if key.len() < 16 || key.len() > 100 || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(BillingError::State("This form is incomplete; reload the page and send it again.".into()));
    }
    let mut tx = state.db.begin().await?;
    let invoice = NewInvoice {
        org,
        purpose: Purpose::TopUp,
        currency: CURRENCY.into(),
        lines: vec![Line::one(describe(credits), price)],
        credits,
        plan: None,
        period: None,
        key: format!("top_up:{org}:{key}"),
        owed: false,
        created_by: Some(user),
    };
    let (id, created) = payments::create_invoice(&mut tx, &invoice, now).await?;
    if !created {
        // The same form again: its invoice, as it stands (charged once).
        tx.commit().await?;
        return Ok((id, payments::state_of(&state.db, id, wait).await?));
    }
    let has_card = super::cards::has_default(&mut tx, state.processor.name(), org).await?;
    if !has_card {
        return Err(BillingError::NoCard);
    }
    let details = serde_json::json!({"credits": credits, "amount_minor": price, "currency": CURRENCY, "invoice": id});
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::BillingTopUpStarted, details).await?;
    tx.commit().await?;
    Ok((id, payments::collect(state, id, now, wait).await?))
}

/// Arms auto top-up again once the balance is back at its threshold.
pub async fn rearm(conn: &mut PgConnection, org: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE org_meters SET auto_top_up_armed = true
          WHERE org_id = $1 AND NOT auto_top_up_armed AND included + purchased >= coalesce(auto_top_up_threshold, 0)",
    )
    .bind(org)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Fires every armed auto top-up whose balance is below its threshold (at
/// most its monthly maximum a period). The job that runs it sends the
/// warning notices next (`usage::warnings`, jobs/billing.rs).
pub async fn auto_top_up_due(state: &Billing, now: OffsetDateTime) -> anyhow::Result<usize> {
    let mut tx = state.db.begin().await?;
    let fired = sqlx::query(
        "UPDATE org_meters m SET auto_top_up_armed = false
          WHERE m.auto_top_up_armed AND m.auto_top_up_threshold IS NOT NULL AND m.auto_top_up_pack IS NOT NULL
            AND m.included + m.purchased < m.auto_top_up_threshold
            AND EXISTS (SELECT 1 FROM payment_methods p WHERE p.org_id = m.org_id AND p.is_default AND p.removed_at IS NULL
                          AND p.processor = $1)
            AND (SELECT count(*) FROM invoices i WHERE i.org_id = m.org_id AND i.purpose = 'auto_top_up'
                    AND i.created_at >= m.period_start) < m.auto_top_up_monthly_max
         RETURNING m.org_id, m.auto_top_up_pack",
    )
    .bind(state.processor.name())
    .fetch_all(&mut *tx)
    .await?;
    let mut invoices = Vec::new();
    for row in &fired {
        let org: Uuid = row.get("org_id");
        let credits: i64 = row.get("auto_top_up_pack");
        let Some(price) = top_up_price(credits) else { continue };
        let invoice = NewInvoice {
            org,
            purpose: Purpose::AutoTopUp,
            currency: CURRENCY.into(),
            lines: vec![Line::one(format!("Automatic top-up: {}", describe(credits)), price)],
            credits,
            plan: None,
            period: None,
            key: format!("auto_top_up:{org}:{}", Uuid::now_v7()),
            owed: false,
            created_by: None,
        };
        invoices.push(payments::create_invoice(&mut tx, &invoice, now).await?.0);
    }
    tx.commit().await?;
    for id in &invoices {
        if let Err(e) = payments::collect(state, *id, now, Duration::ZERO).await {
            tracing::warn!(invoice = %id, error = %e, "auto top-up could not be charged");
        }
    }
    Ok(invoices.len())
}

/// The organization's limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Credits a period may spend; `None`: no cap.
    pub spend_cap: Option<i64>,
    pub low_balance_at: i64,
    /// (threshold, pack, monthly maximum); `None`: off.
    pub auto_top_up: Option<(i64, i64, i32)>,
    /// Warn at this percent of the period's included credits used; `None`: off.
    pub warn_included_pct: Option<i16>,
    /// Warn at this percent of the spend cap spent; `None`: off.
    pub warn_spend_cap_pct: Option<i16>,
}

pub async fn limits(db: &sqlx::PgPool, org: Uuid) -> Result<Limits, sqlx::Error> {
    let r = sqlx::query(
        "SELECT spend_cap, low_balance_at, auto_top_up_threshold, auto_top_up_pack, auto_top_up_monthly_max,
                warn_included_pct, warn_spend_cap_pct
           FROM org_meters WHERE org_id = $1",
    )
    .bind(org)
    .fetch_one(db)
    .await?;
    let auto = match (r.get::<Option<i64>, _>("auto_top_up_threshold"), r.get::<Option<i64>, _>("auto_top_up_pack")) {
        (Some(t), Some(p)) => Some((t, p, r.get("auto_top_up_monthly_max"))),
        _ => None,
    };
    Ok(Limits {
        spend_cap: r.get("spend_cap"),
        low_balance_at: r.get("low_balance_at"),
        auto_top_up: auto,
        warn_included_pct: r.get("warn_included_pct"),
        warn_spend_cap_pct: r.get("warn_spend_cap_pct"),
    })
}

pub async fn save_limits(state: &Billing, org: Uuid, user: Uuid, limits: &Limits, now: OffsetDateTime) -> Result<(), BillingError> {
    let mut tx = state.db.begin().await?;
    let before: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT json_build_object('spend_cap', spend_cap, 'low_balance_at', low_balance_at,
                'warn_included_pct', warn_included_pct, 'warn_spend_cap_pct', warn_spend_cap_pct,
                'auto_top_up', CASE WHEN auto_top_up_threshold IS NULL THEN NULL ELSE json_build_object(
                    'threshold', auto_top_up_threshold, 'pack', auto_top_up_pack, 'monthly_max', auto_top_up_monthly_max) END)::jsonb
           FROM org_meters WHERE org_id = $1 FOR UPDATE",
    )
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let (threshold, pack, max) = match limits.auto_top_up {
        Some((t, p, m)) => (Some(t), Some(p), m),
        None => (None, None, 3),
    };
    sqlx::query(
        "UPDATE org_meters SET spend_cap = $2, low_balance_at = $3, auto_top_up_threshold = $4, auto_top_up_pack = $5,
                auto_top_up_monthly_max = $6, auto_top_up_armed = true, warn_included_pct = $7, warn_spend_cap_pct = $8
          WHERE org_id = $1",
    )
    .bind(org)
    .bind(limits.spend_cap)
    .bind(limits.low_balance_at)
    .bind(threshold)
    .bind(pack)
    .bind(max)
    .bind(limits.warn_included_pct)
    .bind(limits.warn_spend_cap_pct)
    .execute(&mut *tx)
    .await?;
    let details = serde_json::json!({
        "spend_cap": limits.spend_cap, "low_balance_at": limits.low_balance_at,
        "warn_included_pct": limits.warn_included_pct, "warn_spend_cap_pct": limits.warn_spend_cap_pct,
        "auto_top_up": limits.auto_top_up.map(|(t, p, m)| serde_json::json!({"threshold": t, "pack": p, "monthly_max": m})),
    });
    let entry = crate::audit::Entry::new(Some(user), Some(org), crate::audit::Action::BillingLimitsChanged, serde_json::json!({}))
        .change(before.unwrap_or(serde_json::Value::Null), details);
    crate::audit::write(&mut tx, now, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// What a sandbox refill did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refill {
    Added(i64),
    /// Nothing to add.
    Full,
    /// `SANDBOX_REFILLS_PER_DAY` refills within a day already; the next one
    /// may come at this time.
    Limit(OffsetDateTime),
    /// The subscription is not in good standing (past due, unpaid, expired,
    /// waiting for a card).
    NotInGoodStanding,
}

/// Refills the sandbox balance to its starting amount, for free: at most
/// `SANDBOX_REFILLS_PER_DAY` times a day, and only while the subscription
/// is in good standing.
pub async fn refill_sandbox(db: &sqlx::PgPool, org: Uuid, user: Option<Uuid>, now: OffsetDateTime) -> Result<Refill, sqlx::Error> {
    let mut tx = db.begin().await?;
    let sandbox: i64 = sqlx::query_scalar("SELECT sandbox FROM org_meters WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .fetch_one(&mut *tx)
        .await?;
    let sub = super::subscriptions::current_in(&mut tx, org, false).await?;
    let good = sub.as_ref().is_some_and(|s| {
        use super::subscriptions::Status;
        match s.status {
            Status::Active | Status::PendingApproval => true,
            Status::Trialing | Status::Canceled => s.period_end > now,
            Status::PastDue | Status::Unpaid | Status::Expired => false,
        }
    });
    if !good {
        return Ok(Refill::NotInGoodStanding);
    }
    let add = SANDBOX_START - sandbox;
    if add <= 0 {
        return Ok(Refill::Full);
    }
    let recent: Vec<OffsetDateTime> = sqlx::query_scalar(
        "SELECT created_at FROM ledger_transactions
          WHERE org_id = $1 AND kind = 'sandbox_grant' AND idempotency_key LIKE 'sandbox:%:refill:%' AND created_at > $2
          ORDER BY created_at",
    )
    .bind(org)
    .bind(now - time::Duration::days(1))
    .fetch_all(&mut *tx)
    .await?;
    if recent.len() as i64 >= SANDBOX_REFILLS_PER_DAY {
        return Ok(Refill::Limit(recent[0] + time::Duration::days(1)));
    }
    {
        let key = format!("sandbox:{org}:refill:{}", Uuid::now_v7());
        post(
            &mut tx,
            Posting {
                org,
                kind: Kind::SandboxGrant,
                key: &key,
                entries: &[(Account::SandboxSource, -add), (Account::Sandbox, add)],
                memo: "sandbox refilled",
            },
            now,
        )
        .await?;
    }
    crate::audit::record(&mut tx, now, user, Some(org), crate::audit::Action::BillingSandboxRefilled, serde_json::json!({"credits": add})).await?;
    tx.commit().await?;
    Ok(Refill::Added(add))
}
