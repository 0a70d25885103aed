//! Every ten minutes: forgets sign-in, sign-up and reset attempts older than
//! their throttling windows.

use super::{periodic, Periodic};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use std::time::Duration;

pub async fn run(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "throttles",
        every: Duration::from_secs(600),
    };
    periodic(job, state, shutdown, |state| async move {
        crate::accounts::throttle::prune(&state.db, state.clock.now()).await?;
        Ok(())
    })
    .await
}
