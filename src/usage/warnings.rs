//! Warnings before the cutoff: every few seconds the job reads every
//! organization's numbers in one statement, and for each threshold newly
//! crossed sends one notice (email to owners, admins and billing members);
//! a threshold no longer crossed is re-armed, so the next crossing warns
//! again. "Once per crossing" holds across instances: the job runs on one
//! instance at a time (its advisory lock), and the notice is recorded in
//! `billing_notices` (one row per organization and reason) in the
//! transaction that queues the email.

use super::outlook::{self, Warning};
use crate::state::AppState;
use std::collections::HashSet;
use time::OffsetDateTime;
use uuid::Uuid;

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
        let crossed = n.thresholds.crossed(&n.balances, &n.included);
        for w in Warning::ALL {
            let was = sent.contains(&(n.org, w.as_str().to_string()));
            match (crossed.contains(w), was) {
                (true, false) => {
                    let o = outlook::outlook_of(&state.db, n.clone(), now).await?;
                    let mut tx = state.db.begin().await?;
                    if crate::billing::notices::warning(&mut tx, state, n.org, *w, &o, now).await? {
                        notices += 1;
                    }
                    tx.commit().await?;
                }
                (false, true) => {
                    sqlx::query("DELETE FROM billing_notices WHERE org_id = $1 AND reason = $2")
                        .bind(n.org)
                        .bind(w.as_str())
                        .execute(&state.db)
                        .await?;
                }
                _ => {}
            }
        }
    }
    Ok(notices)
}
