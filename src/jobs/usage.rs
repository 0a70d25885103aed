//! Every five minutes: makes usage events agree with the ledger (rebuilds
//! the event of a charged call whose batch was lost, corrects what a call
//! finally cost); see `gateway::usage::recover`.

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
