//! Usage's jobs. Every five minutes: makes usage events agree with the
//! ledger (rebuilds the event of a charged call whose batch was lost,
//! corrects what a call finally cost); see `gateway::usage::recover`. Every
//! hour (and at start-up, so a server whose clock is moved on has its days'
//! partitions at once): the partitions of the coming week, the retention of
//! events and rollups; see `usage::partitions`.

use super::{periodic, Periodic};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use std::time::Duration;

pub async fn run(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "usage",
        every: Duration::from_secs(300),
    };
    periodic(job, state, shutdown, |state| async move {
        let now = state.clock.now();
        let n = crate::gateway::usage::recover(&state.db, now, time::Duration::minutes(5)).await?;
        if n > 0 {
            tracing::warn!(events = n, "made usage events agree with the ledger");
        }
        Ok(())
    })
    .await
}

pub async fn partitions(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "usage_partitions",
        every: Duration::from_secs(3600),
    };
    periodic(job, state, shutdown, |state| async move {
        let done = crate::usage::partitions::maintain(&state.db, state.clock.now(), state.config.usage_retention_days).await?;
        if done != Default::default() {
            tracing::info!(created = done.created, dropped = done.dropped, rollups_deleted = done.rollups_deleted, "usage partitions maintained");
        }
        Ok(())
    })
    .await
}
