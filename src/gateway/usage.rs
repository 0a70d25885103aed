//! Usage events, written off the hot path: the gateway hands each event to a
//! channel and a background task inserts them in batches (up to 500 rows, or
//! whatever arrived within 20 ms) with one statement. Every charged call's
//! ledger transaction carries its request id too, and [`recover`] rebuilds
//! the event of any charged call whose batch was lost (a crash between the
//! charge and the flush), so no charged call goes without its event.

use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub request_id: String,
    pub org_id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub mode: String,
    pub endpoint: String,
    pub method: String,
    pub status: u16,
    pub problem_code: Option<String>,
    pub credits: i64,
    pub latency_us: i64,
    pub problem_body: Option<Value>,
    pub at: OffsetDateTime,
    /// Writing this event settles the call's hold (an answered built-in
    /// call: its whole charge stands).
    pub settles_hold: bool,
}

enum Msg {
    Event(UsageEvent),
    Flush(oneshot::Sender<()>),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct UsageSink(mpsc::Sender<Msg>);

const BATCH: usize = 500;
const CHANNEL: usize = 50_000;

impl UsageSink {
    pub fn start(db: PgPool) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(writer(db, rx));
        UsageSink(tx)
    }

    /// Queues an event. If the queue is full the event waits for room rather
    /// than being dropped.
    pub async fn record(&self, event: UsageEvent) {
        if self.0.send(Msg::Event(event)).await.is_err() {
            tracing::error!(
                "the usage writer has stopped; the event is recoverable from the ledger"
            );
        }
    }

    /// Waits until everything queued so far is in the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(db: PgPool, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<UsageEvent> = Vec::with_capacity(BATCH);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = match rx.recv().await {
            Some(m) => m,
            None => break,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => batch.push(e),
                Msg::Flush(w) => {
                    waiters.push(w);
                    break;
                }
            }
            if batch.len() >= BATCH {
                break;
            }
            next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => Some(m),
                _ => None,
            };
        }
        write(&db, &mut batch).await;
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
    write(&db, &mut batch).await;
}

async fn write(db: &PgPool, batch: &mut Vec<UsageEvent>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 0..5 {
        match insert(db, batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, rows = batch.len(), "could not write usage events; retrying");
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
        }
    }
    tracing::error!(
        rows = batch.len(),
        "gave up writing usage events; charged calls are recovered from the ledger"
    );
    // The answered calls' holds are settled all the same (their answers went
    // out): otherwise the holds job would give their charges back.
    let answered: Vec<&str> = batch.iter().filter(|e| e.settles_hold).map(|e| e.request_id.as_str()).collect();
    if !answered.is_empty() {
        if let Err(e) = sqlx::query("DELETE FROM gateway_holds WHERE request_id = ANY($1)").bind(&answered).execute(db).await {
            tracing::error!(error = %e, rows = answered.len(), "could not settle answered calls' holds either");
        }
    }
    batch.clear();
}

async fn insert(db: &PgPool, batch: &[UsageEvent]) -> Result<(), sqlx::Error> {
    let mut request_ids = Vec::with_capacity(batch.len());
    let mut orgs = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    let mut modes = Vec::with_capacity(batch.len());
    let mut endpoints = Vec::with_capacity(batch.len());
    let mut methods = Vec::with_capacity(batch.len());
    let mut statuses = Vec::with_capacity(batch.len());
    let mut codes = Vec::with_capacity(batch.len());
    let mut credits = Vec::with_capacity(batch.len());
    let mut latencies = Vec::with_capacity(batch.len());
    let mut bodies = Vec::with_capacity(batch.len());
    let mut ats = Vec::with_capacity(batch.len());
    for e in batch {
        request_ids.push(e.request_id.clone());
        orgs.push(e.org_id);
        keys.push(e.api_key_id);
        modes.push(e.mode.clone());
        endpoints.push(e.endpoint.clone());
        methods.push(e.method.clone());
        statuses.push(e.status as i16);
        codes.push(e.problem_code.clone());
        credits.push(e.credits);
        latencies.push(e.latency_us);
        bodies.push(e.problem_body.clone());
        ats.push(e.at);
    }
    let mut tx = db.begin().await?;
    sqlx::query(
        // A retried batch meets its first attempt on (request id, time);
        // the rollups count what is inserted (a trigger, same transaction).
        "INSERT INTO usage_events (request_id, org_id, api_key_id, mode, endpoint, method, status, problem_code, credits,
                                   credits_purchased, latency_us, problem_body, at)
         -- (The purchased part is looked up only where there can be one:
         -- a live call that cost credits; most events cost nothing.)
         SELECT r, o, k, m, e, me, s, c, cr, CASE WHEN m = 'live' AND cr > 0 THEN usage_purchased_part(r, m, cr) ELSE 0 END, l, b, a
           FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::int2[], $8::text[], $9::int8[], $10::int8[], $11::jsonb[], $12::timestamptz[])
                AS x (r, o, k, m, e, me, s, c, cr, l, b, a)
         ON CONFLICT (request_id, at) DO NOTHING",
    )
    .bind(&request_ids)
    .bind(&orgs)
    .bind(&keys)
    .bind(&modes)
    .bind(&endpoints)
    .bind(&methods)
    .bind(&statuses)
    .bind(&codes)
    .bind(&credits)
    .bind(&latencies)
    .bind(&bodies)
    .bind(&ats)
    .execute(&mut *tx)
    .await?;
    // Answered built-in calls: their holds are settled with the event, in
    // one statement per batch (nothing is released: the charge stands).
    let answered: Vec<&str> = batch.iter().filter(|e| e.settles_hold).map(|e| e.request_id.as_str()).collect();
    if !answered.is_empty() {
        sqlx::query("DELETE FROM gateway_holds WHERE request_id = ANY($1)")
            .bind(&answered)
            .execute(&mut *tx)
            .await?;
    }
    // Last-used times move once per batch, not once per call.
    sqlx::query(
        "UPDATE api_keys k SET last_used_at = u.at
         FROM (SELECT key, max(at) AS at FROM UNNEST($1::uuid[], $2::timestamptz[]) AS x(key, at) WHERE key IS NOT NULL GROUP BY key) u
         WHERE k.id = u.key AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
    )
    .bind(&keys)
    .bind(&ats)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// How far back [`recover`] looks: it runs every few minutes, so a week
/// covers any outage of the job itself.
const RECOVER_WINDOW: time::Duration = time::Duration::days(7);

/// Makes the usage events of charged calls agree with the ledger: writes the
/// event of every charged call older than `older_than` that has none (its
/// batch was lost), and corrects the credits of any event that differ from
/// what the call finally cost (its charge less its release, for example after
/// the holds job gave a reservation back). Calls whose hold is still open are
/// left alone until it is settled. Idempotent; run periodically. Returns the
/// events written and corrected. A charged call's event carries the time of
/// its ledger transaction (the gateway gives both the call's `now`), which is
/// how the two are matched, in one partition (and why a retried batch and
/// a recovery never both count: the event's key is the request id and that
/// time). A correction moves the purchased part with the credits (only a
/// release changes either). The rollups follow both the
/// inserts and the corrections (the events' triggers).
pub async fn recover(
    db: &PgPool,
    now: OffsetDateTime,
    older_than: time::Duration,
) -> Result<u64, sqlx::Error> {
    const CHARGED: &str = "
        WITH charged AS (
            SELECT t.request_id, t.org_id, t.api_key_id, t.endpoint, t.created_at,
                   CASE t.kind WHEN 'usage' THEN 'live' ELSE 'test' END AS mode,
                   (SELECT coalesce(sum(e.amount), 0)::int8
                      FROM ledger_transactions r JOIN ledger_entries e ON e.transaction_id = r.id
                     WHERE r.idempotency_key IN ('usage:' || t.request_id, 'release:' || t.request_id)
                       AND e.account IN ('revenue', 'sandbox_sink')) AS credits
              FROM ledger_transactions t
             WHERE t.kind IN ('usage', 'sandbox_usage') AND t.request_id IS NOT NULL
               AND t.created_at < $1 AND t.created_at >= $2
               AND NOT EXISTS (SELECT 1 FROM gateway_holds h WHERE h.request_id = t.request_id)
        )";
    let inserted = sqlx::query(&format!(
        "{CHARGED}
         INSERT INTO usage_events (request_id, org_id, api_key_id, mode, endpoint, method, status, credits,
                                   credits_purchased, latency_us, at)
         SELECT c.request_id, c.org_id, c.api_key_id, c.mode, coalesce(c.endpoint, 'unknown'), 'unknown', 0, c.credits,
                usage_purchased_part(c.request_id, c.mode, c.credits), 0, c.created_at
           FROM charged c
          WHERE NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.request_id = c.request_id AND u.at = c.created_at)
         ON CONFLICT (request_id, at) DO NOTHING"
    ))
    .bind(now - older_than)
    .bind(now - RECOVER_WINDOW)
    .execute(db)
    .await?;
    let corrected = sqlx::query(&format!(
        "{CHARGED}
         UPDATE usage_events u SET credits = c.credits, credits_purchased = usage_purchased_part(c.request_id, c.mode, c.credits)
           FROM charged c
          WHERE u.request_id = c.request_id AND u.at = c.created_at
            AND (u.credits <> c.credits
                 -- A release landing after the event (a settlement retried in
                 -- the background) gives purchased credits back first: the
                 -- split moves even when the total does not.
                 OR (EXISTS (SELECT 1 FROM ledger_transactions r WHERE r.idempotency_key = 'release:' || c.request_id)
                     AND u.credits_purchased <> usage_purchased_part(c.request_id, c.mode, c.credits)))"
    ))
    .bind(now - older_than)
    .bind(now - RECOVER_WINDOW)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() + corrected.rows_affected())
}
