//! Group commit for the gateway's money.
//!
//! The gateway's statements run on their own pool with `synchronous_commit =
//! off`: a call's transaction commits (and lets go of the organization's row
//! lock) without waiting for the disk. Holding that lock through a flush is
//! what capped one hot organization at about one call per flush.
//!
//! A call that moved credits must still not be answered before its
//! transaction is on disk. It waits on [`Durability::wait`]: one background
//! task commits a tiny transaction with `synchronous_commit = on`, which
//! flushes the write-ahead log up to that point, and so every transaction
//! committed before it. All the calls that arrived while the previous flush
//! ran share the next one, so one flush serves many calls.
//!
//! A call that moved nothing (a free ping, a refusal) waits for nothing: the
//! most a crash of the database can lose is the rate limiter's last few
//! hundred milliseconds, never money.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<bool>;

#[derive(Clone)]
pub struct Durability(mpsc::UnboundedSender<Waiter>);

impl Durability {
    /// Starts the flusher on its own connection to `db`'s database, which
    /// commits synchronously whatever the server's or role's default says.
    pub fn start(db: &PgPool) -> Self {
        let options: PgConnectOptions = (*db.connect_options())
            .clone()
            .options([("synchronous_commit", "on")]);
        let flush_db = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flusher(flush_db, rx));
        Durability(tx)
    }

    /// A flusher that never confirms anything, as when the database cannot
    /// flush: every wait answers `false`. For tests of what waits on it.
    pub fn unconfirmed() -> Self {
        let (tx, _) = mpsc::unbounded_channel();
        Durability(tx)
    }

    /// Returns once everything this task committed before the call is on
    /// disk; `false` if that could not be confirmed.
    pub async fn wait(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.0.send(tx).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

async fn flusher(db: PgPool, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        // Assigning a transaction id makes the commit write a record, and a
        // synchronous commit flushes the log through it.
        let mut ok = false;
        for attempt in 0..3u64 {
            match sqlx::query("SELECT txid_current()").execute(&db).await {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not flush the gateway's commits; retrying");
                    tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
                }
            }
        }
        for waiter in batch.drain(..) {
            let _ = waiter.send(ok);
        }
    }
}

/// A pool like `db` (same server, same size) whose transactions commit
/// without waiting for the disk. Connections are not pinged before each
/// use (a round trip per call): a dead one fails its statement, which the
/// gateway answers 503 uncharged, and the pool replaces it.
pub fn async_commit_pool(db: &PgPool) -> PgPool {
    let options: PgConnectOptions = (*db.connect_options())
        .clone()
        .options([("synchronous_commit", "off"), ("tollgate.gateway", "on")]);
    PgPoolOptions::new()
        .max_connections(db.options().get_max_connections())
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .connect_lazy_with(options)
}
