//! Background jobs: a periodic job runs on one instance at a time.

use sqlx::PgPool;
use tollgate::jobs::exclusive;

#[sqlx::test]
async fn a_periodic_job_runs_on_one_instance_at_a_time(db: PgPool) {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let first_db = db.clone();
    let first = tokio::spawn(async move {
        exclusive(&first_db, "renewals", async move {
            started.send(()).unwrap();
            released.await.unwrap();
            Ok(())
        })
        .await
    });
    running.await.unwrap();
    // Another instance finds the job taken and skips this round.
    let ran = std::sync::atomic::AtomicBool::new(false);
    let second = exclusive(&db, "renewals", async {
        ran.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    })
    .await
    .unwrap();
    assert!(!second);
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    // Another job is not held up.
    assert!(exclusive(&db, "sessions", async { Ok(()) }).await.unwrap());
    release.send(()).unwrap();
    assert!(first.await.unwrap().unwrap());
    // Once the first run ends, the job is free again.
    assert!(exclusive(&db, "renewals", async { Ok(()) }).await.unwrap());
}
