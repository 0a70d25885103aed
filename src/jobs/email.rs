//! Email delivery: with SMTP configured, the sender (`email::run_sender`)
//! runs on every instance; rows are claimed with `SKIP LOCKED`, so no email
//! goes twice. Without SMTP, emails stay in the outbox.

use crate::shutdown::Shutdown;
use crate::state::AppState;

pub fn spawn(state: &AppState, shutdown: &Shutdown) -> Option<tokio::task::JoinHandle<()>> {
    match state.config.smtp.clone() {
        Some(smtp) => Some(tokio::spawn(crate::email::run_sender(
            state.db.clone(),
            smtp,
            shutdown.clone(),
        ))),
        None => {
            tracing::info!(
                "SMTP is not configured: emails stay in the outbox for admins to read at /admin/outbox"
            );
            None
        }
    }
}
