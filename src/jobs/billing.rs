//! Billing's jobs: renewals and dunning every minute (and at start-up, so a
//! server started with `TOLLGATE_CLOCK_OFFSET` renews what is due at once),
//! (with unconfirmed charges given up), auto top-ups, refunds to send and
//! low-balance notices every 5 seconds, and the sandbox
//! processor's webhook deliveries that need retrying every 2 seconds.

use super::{periodic, Periodic};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use std::time::Duration;

pub async fn renewals(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "renewals",
        every: Duration::from_secs(60),
    };
    periodic(job, state, shutdown, |state| async move {
        let now = state.clock.now();
        crate::billing::renewals::renew_due(&state.billing, now).await?;
        crate::billing::renewals::dunning_due(&state.billing, now).await?;
        crate::billing::payments::resend_pending(&state.billing, now).await?;
        // Charges the customer never confirmed with their bank are given up.
        crate::billing::payments::abandon_unconfirmed(&state.billing, now).await?;
        // Charges of a processor that no longer takes payments fail.
        crate::billing::payments::fail_other_processors(&state.billing, now).await?;
        Ok(())
    })
    .await
}

pub async fn auto_top_ups(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "auto_top_ups",
        every: Duration::from_secs(5),
    };
    periodic(job, state, shutdown, |state| async move {
        let now = state.clock.now();
        crate::billing::topups::auto_top_up_due(&state.billing, now).await?;
        // Refunds recorded but not yet accepted by the processor.
        crate::billing::refunds::send_pending(&state.billing, now).await?;
        // Warnings before the cutoff (low balance, included credits, spend
        // cap): one notice per crossing.
        crate::usage::warnings::due(&state, now).await?;
        Ok(())
    })
    .await
}

pub async fn sandbox_deliveries(state: AppState, shutdown: Shutdown) {
    let job = Periodic {
        name: "sandbox_deliveries",
        every: Duration::from_secs(2),
    };
    periodic(job, state, shutdown, |state| async move {
        state.sandbox.deliver_due().await?;
        Ok(())
    })
    .await
}
