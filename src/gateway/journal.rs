//! The journal of charges paid from leases: calls hand their finished
//! charge (with its usage event) to one writer, which posts whatever has
//! arrived while the previous batch committed, in one transaction with a
//! synchronous commit (`gateway_journal`: per lease, one balanced
//! transaction keyed by this instance's batch number, and the events). A
//! call is answered only once its batch is on disk. A retried batch keeps
//! its number, so a commit whose answer was lost is found, not repeated.

use super::leases::Posted;
use super::usage::UsageEvent;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// The most calls one batch posts.
pub const BATCH: usize = 2_000;
/// How long a batch is retried while the database cannot be reached before
/// its calls are answered 503 (it is still retried in the background).
const PATIENCE: Duration = Duration::from_secs(10);

struct Item {
    lease: Uuid,
    event: UsageEvent,
    done: oneshot::Sender<Posted>,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Journal(mpsc::Sender<Item>);

impl Journal {
    /// Starts the writer on its own connection to `db`'s database, which
    /// commits synchronously whatever the server's default says.
    pub fn start(db: &PgPool, instance: Uuid, clock: crate::clock::Clock) -> Self {
        let options: PgConnectOptions = (*db.connect_options())
            .clone()
            .options([("synchronous_commit", "on"), ("tollgate.gateway", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(WRITERS as u32)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let (tx, rx) = mpsc::channel(BATCH * 8);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let numbers = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), instance, clock.clone(), rx.clone(), numbers.clone()));
        }
        Journal(tx)
    }

    /// Posts a call's charge from `lease`; returns once it is on disk (or
    /// refused, or given up on).
    pub async fn post(&self, lease: Uuid, event: UsageEvent) -> Posted {
        let (done, rx) = oneshot::channel();
        if self.0.send(Item { lease, event, done }).await.is_err() {
            return Posted::Failed;
        }
        rx.await.unwrap_or(Posted::Failed)
    }
}

/// Writers at once: while one batch commits, the next can be posted (the
/// lease's row lock orders two batches of one lease).
const WRITERS: usize = 2;

type Shared = std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Item>>>;

async fn writer(db: PgPool, instance: Uuid, clock: crate::clock::Clock, rx: Shared, numbers: std::sync::Arc<std::sync::atomic::AtomicI64>) {
    let mut buf: Vec<Item> = Vec::with_capacity(BATCH);
    loop {
        // One writer collects at a time: whatever arrived meanwhile.
        if rx.lock().await.recv_many(&mut buf, BATCH).await == 0 {
            return;
        }
        // Numbered per instance (whose id is new at each start).
        let batch = numbers.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let items: Vec<Item> = std::mem::take(&mut buf);
        let started = Instant::now();
        let outcome = post_with_retries(&db, instance, batch, &clock, &items).await;
        crate::metrics::get().journal(items.len(), started.elapsed());
        match outcome {
            Ok(posted) => {
                for item in items {
                    let ok = posted.iter().any(|(l, p)| *l == item.lease && *p);
                    let _ = item.done.send(if ok { Posted::Yes } else { Posted::Fenced });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch, calls = items.len(), "could not post a batch of charges; its calls answer 503");
                // The batch may have committed unseen: it is settled in the
                // background, once, under the same number.
                let (db, clock) = (db.clone(), clock.clone());
                let events: Vec<(Uuid, UsageEvent)> = items.iter().map(|i| (i.lease, i.event.clone())).collect();
                for item in items {
                    let _ = item.done.send(Posted::Failed);
                }
                tokio::spawn(async move {
                    let stub: Vec<Item> = events
                        .into_iter()
                        .map(|(lease, event)| Item { lease, event, done: oneshot::channel().0 })
                        .collect();
                    for n in 1..=30u64 {
                        tokio::time::sleep(Duration::from_secs(n)).await;
                        if let Ok(posted) = void(&db, instance, batch, clock.now(), &stub).await {
                            tracing::warn!(batch, leases = posted, "settled a batch answered 503");
                            return;
                        }
                    }
                    tracing::error!(batch, "a batch answered 503 is still unsettled: if it committed, its calls stand charged (see the README, \"Not built yet\")");
                });
            }
        }
    }
}

async fn post_with_retries(
    db: &PgPool,
    instance: Uuid,
    batch: i64,
    clock: &crate::clock::Clock,
    items: &[Item],
) -> Result<Vec<(Uuid, bool)>, sqlx::Error> {
    let until = Instant::now() + PATIENCE;
    // On the database's side too: an attempt that runs after the calls were
    // answered 503 refuses itself.
    let deadline = OffsetDateTime::now_utc() + PATIENCE;
    let mut wait = Duration::from_millis(20);
    loop {
        match post(db, instance, batch, clock.now(), deadline, items).await {
            Ok(p) => return Ok(p),
            Err(e) if Instant::now() + wait >= until => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, batch, "could not post a batch of charges; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

struct Columns {
    leases: Vec<Uuid>,
    request_ids: Vec<String>,
    keys: Vec<Option<Uuid>>,
    endpoints: Vec<String>,
    methods: Vec<String>,
    statuses: Vec<i16>,
    credits: Vec<i64>,
    latencies: Vec<i64>,
    ats: Vec<OffsetDateTime>,
}

fn columns(items: &[Item]) -> Columns {
    let mut c = Columns {
        leases: Vec::with_capacity(items.len()),
        request_ids: Vec::with_capacity(items.len()),
        keys: Vec::with_capacity(items.len()),
        endpoints: Vec::with_capacity(items.len()),
        methods: Vec::with_capacity(items.len()),
        statuses: Vec::with_capacity(items.len()),
        credits: Vec::with_capacity(items.len()),
        latencies: Vec::with_capacity(items.len()),
        ats: Vec::with_capacity(items.len()),
    };
    for i in items {
        c.leases.push(i.lease);
        c.request_ids.push(i.event.request_id.clone());
        c.keys.push(i.event.api_key_id);
        c.endpoints.push(i.event.endpoint.clone());
        c.methods.push(i.event.method.clone());
        c.statuses.push(i.event.status as i16);
        c.credits.push(i.event.credits);
        c.latencies.push(i.event.latency_us);
        c.ats.push(i.event.at);
    }
    c
}

async fn post(
    db: &PgPool,
    instance: Uuid,
    batch: i64,
    now: OffsetDateTime,
    deadline: OffsetDateTime,
    items: &[Item],
) -> Result<Vec<(Uuid, bool)>, sqlx::Error> {
    let c = columns(items);
    sqlx::query_as("SELECT * FROM gateway_journal($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
        .bind(instance)
        .bind(batch)
        .bind(now)
        .bind(deadline)
        .bind(&c.leases)
        .bind(&c.request_ids)
        .bind(&c.keys)
        .bind(&c.endpoints)
        .bind(&c.methods)
        .bind(&c.statuses)
        .bind(&c.credits)
        .bind(&c.latencies)
        .bind(&c.ats)
        .fetch_all(db)
        .await
}

/// A batch whose calls were answered 503: if it committed after all, its
/// charges go back (`gateway_journal_void`); if not, it never will (its
/// number is marked void). Returns how many leases it touched.
async fn void(db: &PgPool, instance: Uuid, batch: i64, now: OffsetDateTime, items: &[Item]) -> Result<i64, sqlx::Error> {
    let c = columns(items);
    sqlx::query_scalar("SELECT gateway_journal_void($1, $2, $3, $4, $5, $6)")
        .bind(instance)
        .bind(batch)
        .bind(now)
        .bind(&c.leases)
        .bind(&c.request_ids)
        .bind(&c.ats)
        .fetch_one(db)
        .await
}
