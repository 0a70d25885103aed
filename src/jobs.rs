//! Background jobs: housekeeping and email delivery. Each is safe to run on
//! several instances at once (deletes are idempotent; the email sender claims
//! rows with `SKIP LOCKED`).

use crate::state::AppState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Tells background loops to stop; set on SIGTERM or Ctrl-C.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>, watch::Receiver<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown(Arc::new(tx), rx)
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub fn is_set(&self) -> bool {
        *self.1.borrow()
    }

    /// Sleeps for `d`, or less if shutdown is signalled meanwhile.
    pub async fn sleep(&self, d: Duration) {
        let mut rx = self.1.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = rx.wait_for(|v| *v) => {}
        }
    }

    pub async fn wait(&self) {
        let mut rx = self.1.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

pub fn spawn_all(state: &AppState, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = vec![
        tokio::spawn(housekeeping(state.clone(), shutdown.clone())),
        tokio::spawn(settle_holds(state.clone(), shutdown.clone())),
        tokio::spawn(crate::gateway::routes::follow(
            state.db.clone(),
            state.routes.clone(),
            shutdown.clone(),
        )),
    ];
    if let Some(smtp) = state.config.smtp.clone() {
        handles.push(tokio::spawn(crate::email::run_sender(
            state.db.clone(),
            smtp,
            shutdown.clone(),
        )));
    } else {
        tracing::info!(
            "SMTP is not configured: emails stay in the outbox for admins to read at /admin/outbox"
        );
    }
    handles
}

/// Every 30 seconds: gives back the reservations of calls that never
/// settled (see `gateway::holds`). Safe on several instances at once.
async fn settle_holds(state: AppState, shutdown: Shutdown) {
    while !shutdown.is_set() {
        if let Err(e) = crate::gateway::holds::settle_lapsed(&state.db, state.clock.now()).await {
            tracing::warn!(error = %e, "could not settle lapsed reservations");
        }
        shutdown.sleep(Duration::from_secs(30)).await;
    }
}

/// Every ten minutes: deletes expired sessions and old sign-in attempts, and
/// rebuilds any usage event a charged call lost.
async fn housekeeping(state: AppState, shutdown: Shutdown) {
    let store = crate::accounts::sessions::PgSessionStore::new(state.db.clone());
    while !shutdown.is_set() {
        let now = state.clock.now();
        if let Err(e) = store.delete_expired(now).await {
            tracing::warn!(error = %e, "could not delete expired sessions");
        }
        if let Err(e) = crate::accounts::throttle::prune(&state.db, now).await {
            tracing::warn!(error = %e, "could not prune sign-in attempts");
        }
        match crate::gateway::usage::recover(&state.db, now, time::Duration::minutes(5)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                recovered = n,
                "rebuilt usage events of charged calls from the ledger"
            ),
            Err(e) => tracing::warn!(error = %e, "could not recover usage events"),
        }
        state.rate.prune(now);
        shutdown.sleep(Duration::from_secs(600)).await;
    }
}
