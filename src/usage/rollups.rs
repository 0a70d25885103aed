//! Reads of the rollups (`usage_hourly`, `usage_daily`), for the usage
//! page, its export, the dashboard and the forecast. The rollups are kept
//! by triggers on the events (see the module doc of [`super`]).

use super::latency::{Histogram, BUCKETS};
use super::Filter;
use sqlx::{PgPool, Row};
use time::{Duration, OffsetDateTime, Time};
use uuid::Uuid;

/// The ranges the usage page offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// The last 24 hours, by hour.
    Hours24,
    /// The last 7, 30 or 90 days (today included), by UTC day.
    Days(u16),
}

impl Span {
    pub fn parse(s: &str) -> Option<Span> {
        match s {
            "24h" => Some(Span::Hours24),
            "7d" => Some(Span::Days(7)),
            "30d" => Some(Span::Days(30)),
            "90d" => Some(Span::Days(90)),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Span::Hours24 => "24h",
            Span::Days(7) => "7d",
            Span::Days(30) => "30d",
            _ => "90d",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Span::Hours24 => "usage_hourly",
            Span::Days(_) => "usage_daily",
        }
    }

    /// One bucket's length.
    pub fn step(self) -> Duration {
        match self {
            Span::Hours24 => Duration::HOUR,
            Span::Days(_) => Duration::DAY,
        }
    }

    /// The buckets' starts, oldest first, the one holding `now` last.
    pub fn buckets(self, now: OffsetDateTime) -> Vec<OffsetDateTime> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let (last, n) = match self {
            Span::Hours24 => (now.replace_time(Time::from_hms(now.hour(), 0, 0).expect("an hour")), 24),
            Span::Days(d) => (now.replace_time(Time::MIDNIGHT), i64::from(d)),
        };
        (0..n).rev().map(|i| last - self.step() * i as i32).collect()
    }

    /// `[from, to)` of the whole range.
    pub fn window(self, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        let b = self.buckets(now);
        (b[0], *b.last().expect("a bucket") + self.step())
    }
}

/// One bucket of one outcome (and mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub bucket: OffsetDateTime,
    pub outcome: String,
    pub mode: String,
    pub calls: i64,
    pub credits: i64,
    pub credits_purchased: i64,
}

fn filter_sql(filter: &Filter) -> &'static str {
    match (filter.key.is_some(), filter.mode.is_some()) {
        (false, false) => "",
        (true, false) => " AND api_key_id = $4",
        (false, true) => " AND mode = $5",
        (true, true) => " AND api_key_id = $4 AND mode = $5",
    }
}

/// Runs `select … FROM <the span's rollup> WHERE <organization, range,
/// filter> <rest>` with the binds every rollup read shares.
async fn read(
    db: &PgPool,
    org: Uuid,
    span: Span,
    filter: &Filter,
    now: OffsetDateTime,
    select: &str,
    rest: &str,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let (from, to) = span.window(now);
    let sql = format!(
        "SELECT {select} FROM {} WHERE org_id = $1 AND bucket >= $2 AND bucket < $3 {} {rest}",
        span.table(),
        filter_sql(filter)
    );
    sqlx::query(&sql)
        .bind(org)
        .bind(from)
        .bind(to)
        .bind(filter.key)
        .bind(filter.mode.map(|m| m.as_str()))
        .fetch_all(db)
        .await
}

/// Calls and credits per bucket, outcome and mode over `span`.
pub async fn series(db: &PgPool, org: Uuid, span: Span, filter: &Filter, now: OffsetDateTime) -> Result<Vec<Point>, sqlx::Error> {
    let rows = read(
        db,
        org,
        span,
        filter,
        now,
        "bucket, outcome, mode, sum(calls)::int8 AS calls, sum(credits)::int8 AS credits, sum(credits_purchased)::int8 AS credits_purchased",
        "GROUP BY bucket, outcome, mode HAVING sum(calls) <> 0 OR sum(credits) <> 0 ORDER BY bucket, outcome, mode",
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| Point {
            bucket: r.get("bucket"),
            outcome: r.get("outcome"),
            mode: r.get("mode"),
            calls: r.get("calls"),
            credits: r.get("credits"),
            credits_purchased: r.get("credits_purchased"),
        })
        .collect())
}

/// One endpoint's line of the per-endpoint table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRow {
    pub endpoint: String,
    pub calls: i64,
    pub refused_402: i64,
    pub credits: i64,
    pub latency: Histogram,
}

fn hist_columns() -> String {
    (0..BUCKETS).map(|i| format!("sum(h{i:02})::int8 AS h{i:02}")).collect::<Vec<_>>().join(", ")
}

pub async fn endpoints(db: &PgPool, org: Uuid, span: Span, filter: &Filter, now: OffsetDateTime) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let select = format!(
        "endpoint, sum(calls)::int8 AS calls, coalesce(sum(calls) FILTER (WHERE outcome = '402'), 0)::int8 AS refused,
         sum(credits)::int8 AS credits, {}",
        hist_columns()
    );
    let rows = read(db, org, span, filter, now, &select, "GROUP BY endpoint HAVING sum(calls) <> 0 ORDER BY sum(calls) DESC, endpoint").await?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut latency = [0; BUCKETS];
            for (i, h) in latency.iter_mut().enumerate() {
                *h = r.get(format!("h{i:02}").as_str());
            }
            EndpointRow {
                endpoint: r.get("endpoint"),
                calls: r.get("calls"),
                refused_402: r.get("refused"),
                credits: r.get("credits"),
                latency,
            }
        })
        .collect())
}

/// One line of the export: the finest grain the page sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRow {
    pub bucket: OffsetDateTime,
    pub endpoint: String,
    pub mode: String,
    pub outcome: String,
    pub code: String,
    pub calls: i64,
    pub credits: i64,
    pub credits_purchased: i64,
}

pub async fn export(db: &PgPool, org: Uuid, span: Span, filter: &Filter, now: OffsetDateTime) -> Result<Vec<ExportRow>, sqlx::Error> {
    let rows = read(
        db,
        org,
        span,
        filter,
        now,
        "bucket, endpoint, mode, outcome, code, sum(calls)::int8 AS calls, sum(credits)::int8 AS credits,
         sum(credits_purchased)::int8 AS credits_purchased",
        "GROUP BY bucket, endpoint, mode, outcome, code HAVING sum(calls) <> 0 OR sum(credits) <> 0 ORDER BY bucket, endpoint, mode, outcome, code",
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| ExportRow {
            bucket: r.get("bucket"),
            endpoint: r.get("endpoint"),
            mode: r.get("mode"),
            outcome: r.get("outcome"),
            code: r.get("code"),
            calls: r.get("calls"),
            credits: r.get("credits"),
            credits_purchased: r.get("credits_purchased"),
        })
        .collect())
}

/// Calls and 402s since the start of today (UTC), all keys and modes.
pub async fn today(db: &PgPool, org: Uuid, now: OffsetDateTime) -> Result<(i64, i64), sqlx::Error> {
    let start = now.to_offset(time::UtcOffset::UTC).replace_time(Time::MIDNIGHT);
    sqlx::query_as(
        "SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(calls) FILTER (WHERE outcome = '402'), 0)::int8
           FROM usage_hourly WHERE org_id = $1 AND bucket >= $2",
    )
    .bind(org)
    .bind(start)
    .fetch_one(db)
    .await
}

/// Live credits spent from the hour holding `since` until now, for the
/// forecast, and that hour's start (the rate is over what was summed).
pub async fn live_credits_since(db: &PgPool, org: Uuid, since: OffsetDateTime) -> Result<(i64, OffsetDateTime), sqlx::Error> {
    let since = since.to_offset(time::UtcOffset::UTC);
    let hour = since.replace_time(Time::from_hms(since.hour(), 0, 0).expect("an hour"));
    let spent = sqlx::query_scalar(
        "SELECT coalesce(sum(credits), 0)::int8 FROM usage_hourly WHERE org_id = $1 AND mode = 'live' AND bucket >= $2",
    )
    .bind(org)
    .bind(hour)
    .fetch_one(db)
    .await?;
    Ok((spent, hour))
}

/// The period's included credits: how many were used, of how many
/// (granted in the period, adjustments included, or what is left if more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncludedUse {
    pub used: i64,
    pub of: i64,
    /// When they lapse (the period's end).
    pub period_end: Option<OffsetDateTime>,
    /// The period ended and no new one began yet: what was left lapsed,
    /// which is not "used".
    pub lapsed: bool,
}
