//! Fulfilment: what a paid invoice buys (credits, an upgrade, a period), in
//! the transaction that marks it paid.

use super::{Invoice, Purpose};
use crate::billing::Billing;
use sqlx::PgConnection;
use time::OffsetDateTime;

/// What a paid invoice buys, in the transaction that marks it paid.
pub(super) async fn fulfil(tx: &mut PgConnection, state: &Billing, inv: &Invoice, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    use crate::billing::ledger::{post, Account, Kind, Posting};
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
            crate::billing::topups::rearm(tx, inv.org).await?;
        }
        Purpose::Proration => crate::billing::subscriptions::upgraded(tx, inv, now).await?,
        Purpose::Subscription => {
            // Renewing after expiry: only while the subscription is still
            // ended (a late payment after another renewal buys nothing and
            // is due back).
            let plan = inv.plan.expect("a subscription invoice names its plan");
            let cur = crate::billing::subscriptions::current_in(tx, inv.org, true).await?;
            let ended = cur.as_ref().is_some_and(|c| c.has_ended(now));
            if ended {
                let end = crate::billing::subscriptions::add_month(now);
                crate::billing::subscriptions::open_period(tx, inv.org, plan, now, end, crate::billing::subscriptions::Grant::Full, now).await?;
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
        Purpose::Renewal => crate::billing::subscriptions::renewal_paid(tx, state, inv, now).await?,
    }
    Ok(())
}

