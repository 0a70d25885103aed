//! Background jobs, one module each. Periodic jobs run through [`periodic`],
//! which makes them safe with several instances: each run holds a
//! PostgreSQL advisory lock named after the job, so one instance runs it at a
//! time (another that finds the lock taken skips that round); the jobs are
//! idempotent besides, so a run cut short is simply done again.
//!
//! Jobs log their failures and carry on; they never stop the server.

pub mod billing;
pub mod email;
pub mod holds;
pub mod sessions;
pub mod throttles;
pub mod usage;

use crate::shutdown::Shutdown;
use crate::state::AppState;
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;

/// A periodic job: a name (its lock and its log lines), how often it runs,
/// and one run.
pub struct Periodic {
    pub name: &'static str,
    pub every: Duration,
}

/// The advisory lock key of a job, from its name (stable across builds).
fn lock_key(name: &str) -> i64 {
    let digest = crate::crypto::sha256(format!("tollgate-job:{name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}

/// Runs `run` now and then every `job.every` until shutdown, on one
/// instance at a time.
pub async fn periodic<F, Fut>(job: Periodic, state: AppState, shutdown: Shutdown, run: F)
where
    F: Fn(AppState) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    while !shutdown.is_set() {
        let started = std::time::Instant::now();
        let result = match exclusive(&state.db, job.name, run(state.clone())).await {
            Ok(true) => "ok",
            Ok(false) => {
                tracing::debug!(job = job.name, "another instance runs this job now");
                "skipped"
            }
            Err(e) => {
                tracing::warn!(job = job.name, error = %e, "job failed; it runs again later");
                "failed"
            }
        };
        crate::metrics::get().job(job.name, result, started.elapsed());
        shutdown.sleep(job.every).await;
    }
}

/// Runs `work` while holding the job's advisory lock; `false` (and `work`
/// not run) when another instance holds it.
pub async fn exclusive(
    db: &PgPool,
    name: &str,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<bool> {
    // The lock lives on a connection of its own, outside the pool, so a job
    // that needs the pool's connections cannot starve on the one holding it.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&db.connect_options()).await?;
    let key = lock_key(name);
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Ok(false);
    }
    let result = work.await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    result.map(|()| true)
}

/// Starts every job of this instance.
pub fn spawn_all(state: &AppState, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = vec![
        tokio::spawn(holds::run(state.clone(), shutdown.clone())),
        tokio::spawn(sessions::run(state.clone(), shutdown.clone())),
        tokio::spawn(throttles::run(state.clone(), shutdown.clone())),
        tokio::spawn(usage::run(state.clone(), shutdown.clone())),
        tokio::spawn(usage::partitions(state.clone(), shutdown.clone())),
        tokio::spawn(billing::renewals(state.clone(), shutdown.clone())),
        tokio::spawn(billing::auto_top_ups(state.clone(), shutdown.clone())),
        tokio::spawn(billing::sandbox_deliveries(state.clone(), shutdown.clone())),
    ];
    handles.extend(
        state
            .gateway
            .start_followers(&state.db, &state.clock, shutdown),
    );
    handles.extend(email::spawn(state, shutdown));
    handles
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_job_has_its_own_lock() {
        assert_ne!(super::lock_key("holds"), super::lock_key("sessions"));
        assert_eq!(super::lock_key("holds"), super::lock_key("holds"));
    }
}
