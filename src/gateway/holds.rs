//! Held reservations of provider-route calls, recorded in the database.
//!
//! A route call reserves its price before it is forwarded; the reservation is
//! written to `gateway_holds` in the same transaction (`gateway_authorize`).
//! When the upstream answers, the call settles its hold (`gateway_settle`):
//! it deletes the row and gives back what the call did not cost, in one
//! transaction. If the instance stops, or the database is out of reach for
//! longer than the call's retries, the hold stays, and [`settle_lapsed`]
//! (run by a job on every instance) gives the whole reservation back once the
//! hold's deadline has passed.
//!
//! The deadline is twice the route's timeout plus a minute, past the longest
//! a call can take before it settles, so the job does not settle a call
//! that is still running. It is counted on the database's clock (a trigger
//! re-bases what the instance asked for), which the job compares with too,
//! so instances whose clocks differ agree on it. A call whose settlement
//! could not be written keeps trying in the background, with what it really
//! cost, until the deadline; only a call that never settles by then (its
//! instance stopped) is given back in full by the job. If one does run that long (a database outage), only
//! one of the two settles: deleting the row is the claim, and the loser moves
//! nothing. A call that finds its hold already settled was given back in
//! full, and records that it cost nothing.
//!
//! What a call finally cost is its ledger postings' sum (the charge less the
//! release); usage events are reconciled to it ([`super::usage::recover`]).

use crate::state::AppState;
use sqlx::PgPool;
use std::time::Duration;
use time::OffsetDateTime;

/// How a call's hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// This call settled it; the balance after, when known.
    Now(Option<i64>),
    /// It was settled before (by the holds job): the whole reservation went back.
    Before,
    /// The database could not be reached; the job will settle it later.
    Unknown,
}

impl Settled {
    pub fn balance(self) -> Option<i64> {
        match self {
            Settled::Now(b) => b,
            _ => None,
        }
    }
}

async fn settle_once(
    db: &PgPool,
    request_id: &str,
    release: i64,
    now: OffsetDateTime,
) -> Result<(bool, Option<i64>), sqlx::Error> {
    sqlx::query_as("SELECT settled, balance FROM gateway_settle($1, $2, $3)")
        .bind(request_id)
        .bind(release)
        .bind(now)
        .fetch_one(db)
        .await
}

/// Settles the hold of `request_id`, giving back `release` credits of it.
/// Tried three times; after that the hold is the job's.
pub async fn settle(
    state: &AppState,
    request_id: &str,
    release: i64,
    now: OffsetDateTime,
) -> Settled {
    for n in 0..3u32 {
        match settle_once(&state.gateway.db, request_id, release, now).await {
            Ok((true, balance)) => {
                if !state.gateway.durable.wait().await {
                    tracing::error!(request_id, "could not confirm a settlement on disk");
                }
                return Settled::Now(balance);
            }
            Ok((false, _)) => return Settled::Before,
            Err(e) => {
                tracing::warn!(error = %e, request_id, "could not settle a reservation; retrying");
                tokio::time::sleep(Duration::from_millis(50 << n)).await;
            }
        }
    }
    tracing::error!(
        request_id,
        "could not settle a reservation; retrying in the background (the holds job gives it back after its deadline)"
    );
    let (db, id) = (state.gateway.db.clone(), request_id.to_string());
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(500);
        // The shortest deadline is a minute away; after ten, the job has it.
        while started.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            // Settled already, or past its deadline: the job's from here on.
            let open: Result<Option<bool>, _> =
                sqlx::query_scalar("SELECT settle_after > clock_timestamp() FROM gateway_holds WHERE request_id = $1")
                    .bind(&id)
                    .fetch_optional(&db)
                    .await;
            match open {
                Ok(Some(true)) => {}
                Ok(_) => return,
                Err(_) => continue,
            }
            match settle_once(&db, &id, release, now).await {
                Ok((true, _)) => {
                    tracing::info!(request_id = %id, "settled a reservation in the background");
                    return;
                }
                Ok((false, _)) => return,
                Err(_) => continue,
            }
        }
    });
    Settled::Unknown
}

/// Gives back, in full, every hold whose deadline has passed on the
/// database's clock (`now` dates the postings). Safe on several instances at
/// once. Returns how many it settled.
pub async fn settle_lapsed(db: &PgPool, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
    let due: Vec<(String, i64)> = sqlx::query_as(
        "SELECT request_id, amount FROM gateway_holds WHERE settle_after <= clock_timestamp() ORDER BY settle_after LIMIT 500",
    )
    .fetch_all(db)
    .await?;
    let mut settled = 0;
    for (request_id, amount) in due {
        let (done, _) = settle_once(db, &request_id, amount, now).await?;
        if done {
            tracing::warn!(%request_id, amount, "gave back a reservation whose call never settled");
            settled += 1;
        }
    }
    Ok(settled)
}
