//! Every 30 seconds: gives back the reservations of calls that never settled
//! (see `gateway::holds`).

use super::{periodic, Periodic};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use std::time::Duration;

pub async fn run(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "holds",
        every: Duration::from_secs(30),
    };
    periodic(job, state, shutdown, |state| async move {
        crate::gateway::holds::settle_lapsed(&state.db, state.clock.now()).await?;
        Ok(())
    })
    .await
}
