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
use crate::state::AppState;
use std::collections::HashSet;
use time::OffsetDateTime;
use uuid::Uuid;

async fn one(state: &AppState, sent: &HashSet<(Uuid, String)>, n: outlook::Numbers, now: OffsetDateTime) -> Result<usize, sqlx::Error> {
    let crossed = n.thresholds.crossed(&n.balances, &n.included);
    let raised = n.thresholds.still_raised(&n.balances, &n.included);
    let mut notices = 0;
    for w in Warning::ALL {
        let was = sent.contains(&(n.org, w.as_str().to_string()));
        if crossed.contains(w) && !was {
            let o = outlook::outlook_of(&state.db, n.clone(), now).await?;
            let mut tx = state.db.begin().await?;
            if crate::billing::notices::warning(&mut tx, &state.billing, n.org, *w, &o, now).await? {
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
