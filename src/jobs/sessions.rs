//! Every ten minutes: deletes sessions that expired.

use super::{periodic, Periodic};
use crate::accounts::sessions::PgSessionStore;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use std::time::Duration;

pub async fn run(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "sessions",
        every: Duration::from_secs(600),
    };
    periodic(job, state, shutdown, |state| async move {
        let store = PgSessionStore::new(state.db.clone());
        store.delete_expired(state.clock.now()).await?;
        Ok(())
    })
    .await
}
