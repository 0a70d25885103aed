//! The shutdown signal: set on SIGTERM or Ctrl-C, watched by every
//! background loop (jobs, the gateway's route follower, the email sender).
//! It lives on its own so that none of them has to import another.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Tells background loops to stop.
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
