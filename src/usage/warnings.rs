//! Warnings before the cutoff: every few seconds the job reads every
//! organization's numbers in one statement, and for each threshold newly
//! crossed sends one notice (email to owners, admins and billing members);
//! a threshold the numbers are back from by a margin
//! (`outlook::REARM_MARGIN_PCT`) is re-armed, so the next crossing warns
//! again. Reservations of calls still running count as not spent, so a call
//! that reserves more than it costs does not cross and clear a threshold. "Once per crossing" holds across instances: the job runs on one
//! instance at a time (its advisory lock), and the notice is recorded in
//! `billing_notices` (one row per organization and reason) in the
//! transaction that queues the email.

use super::outlook::{self, Warning};
use crate::billing::notices::{self, Notice};
use crate::billing::Links;
use crate::state::AppState;
use sqlx::PgConnection;
use std::collections::HashSet;
use time::OffsetDateTime;
use uuid::Uuid;

/// The billing notice a warning goes out as (remembered under the
/// warning's own name, which this job reads back).
pub fn notice_of(w: Warning) -> Notice {
    match w {
        Warning::LowBalance => Notice::LowBalance,
        Warning::IncludedUsed => Notice::IncludedUsed,
        Warning::SpendCapUsed => Notice::SpendCapUsed,
    }
}

/// The email of a threshold crossed, with the forecast: one per crossing;
/// `false` if this crossing was told before.
async fn warn(conn: &mut PgConnection, links: &Links, org: Uuid, warning: Warning, o: &outlook::Outlook, now: OffsetDateTime) -> Result<bool, sqlx::Error> {
    use super::group;
    let live = o.balances.live();
    let (subject, what, fix) = match warning {
        Warning::LowBalance => (
            "Your credit balance is low",
            format!("Your credit balance is low: {} credits left (you asked to be warned below {}).", group(live), group(o.thresholds.low_balance_at)),
            format!("Top up before calls are refused: {}", links.url("/billing/top-up")),
        ),
        Warning::IncludedUsed => (
            "You have used most of your included credits",
            format!(
                "You have used {} of your {} included credits this period (you asked to be warned at {}%).",
                group(o.included.used),
                group(o.included.of),
                o.thresholds.included_pct.unwrap_or(0)
            ),
            format!("Top up ({}) or upgrade ({}) before they run out.", links.url("/billing/top-up"), links.url("/billing/plans")),
        ),
        Warning::SpendCapUsed => (
            "You are close to your spend cap",
            format!(
                "This period you have spent {} of your spend cap of {} credits (you asked to be warned at {}%).",
                group(o.thresholds.period_spent),
                group(o.thresholds.spend_cap.unwrap_or(0)),
                o.thresholds.spend_cap_pct.unwrap_or(0)
            ),
            format!("Calls are refused once the cap is reached; raise it here: {}", links.url("/billing/limits")),
        ),
    };
    let body = format!("{what}\n\n{}\n\n{fix}\nSee your usage: {}\n", outlook::forecast_sentence(&o.forecast), links.url("/account/usage"));
    notices::send_once(conn, org, notice_of(warning), subject, &body, now).await
}

async fn one(state: &AppState, sent: &HashSet<(Uuid, String)>, n: outlook::Numbers, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let crossed = n.thresholds.crossed(&n.balances, &n.included);
    let raised = n.thresholds.still_raised(&n.balances, &n.included);
    let mut notices = 0;
    for w in Warning::ALL {
        let was = sent.contains(&(n.org, w.as_str().to_string()));
        if crossed.contains(w) && !was {
            let o = outlook::outlook_of(&state.db, n.clone(), now).await?;
            let mut tx = state.db.begin().await?;
            if warn(&mut tx, &state.billing.links, n.org, *w, &o, now).await? {
                notices += 1;
            }
            tx.commit().await?;
        } else if was && !raised.contains(w) {
            // Back past the threshold by the margin (or a new period):
            // armed again.
            sqlx::query("DELETE FROM billing_notices WHERE org_id = $1 AND reason = $2")
                .bind(n.org)
                .bind(w.as_str())
                .execute(&state.db)
                .await?;
        }
    }
    Ok(notices)
}

/// Sends the notices of new crossings and re-arms cleared ones; returns
/// how many notices were sent.
pub async fn due(state: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let reasons: Vec<&str> = Warning::ALL.iter().map(|w| w.as_str()).collect();
    let sent: HashSet<(Uuid, String)> = sqlx::query_as("SELECT org_id, reason FROM billing_notices WHERE reason = ANY($1)")
        .bind(&reasons)
        .fetch_all(&state.db)
        .await?
        .into_iter()
        .collect();
    let mut notices = 0;
    for n in outlook::all_numbers(&state.db, now).await? {
        // One organization's failure does not hold up the others'.
        match one(state, &sent, n, now).await {
            Ok(k) => notices += k,
            Err(e) => tracing::warn!(error = %e, "could not send an organization's warnings; next run"),
        }
    }
    Ok(notices)
}

#[cfg(test)]
mod notice_tests {
    #[test]
    fn a_warnings_notice_is_remembered_under_the_warnings_own_name() {
        // `one` reads billing_notices back by the warnings' names.
        for w in super::Warning::ALL {
            assert_eq!(super::notice_of(*w).as_str(), w.as_str());
        }
    }
}
