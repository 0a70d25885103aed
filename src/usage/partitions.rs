//! Usage events are partitioned by UTC day. The usage job creates the
//! partitions of the coming week ahead of time (an event whose day has none
//! yet waits in the default partition, and moves when its day's partition
//! is made), drops the partitions older than the retention
//! (`TOLLGATE_USAGE_RETENTION_DAYS`, default 90), and deletes rollups older
//! than 13 months. Safe with several instances: the database functions
//! serialize on an advisory lock, and each step is idempotent.

use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

/// How many days ahead partitions exist.
pub const AHEAD_DAYS: i64 = 7;
/// Rollups are kept this long.
pub const ROLLUP_MONTHS: i32 = 13;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    pub created: u32,
    pub dropped: i32,
    pub rollups_deleted: u64,
}

pub async fn maintain(db: &PgPool, now: OffsetDateTime, retention_days: i64) -> Result<Maintained, sqlx::Error> {
    let mut done = Maintained::default();
    let today = now.to_offset(time::UtcOffset::UTC).date();
    for d in -1..=AHEAD_DAYS {
        let day = today + Duration::days(d);
        let created: bool = sqlx::query_scalar("SELECT usage_partition_ensure($1)").bind(day).fetch_one(db).await?;
        done.created += u32::from(created);
    }
    let keep_from = today - Duration::days(retention_days);
    done.dropped = sqlx::query_scalar("SELECT usage_partitions_drop_before($1)")
        .bind(keep_from)
        .fetch_one(db)
        .await?;
    for table in ["usage_hourly", "usage_daily"] {
        done.rollups_deleted += sqlx::query(&format!(
            "DELETE FROM {table} WHERE bucket < $1::timestamptz - make_interval(months => $2)"
        ))
        .bind(now)
        .bind(ROLLUP_MONTHS)
        .execute(db)
        .await?
        .rows_affected();
    }
    // A fix-page visit is about a refusal: it goes with the refusal's events.
    sqlx::query("DELETE FROM fix_visits WHERE visited_at < $1::date::timestamp AT TIME ZONE 'UTC'")
        .bind(keep_from)
        .execute(db)
        .await?;
    Ok(done)
}
