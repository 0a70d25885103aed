//! The console's first page: this month's revenue (paid invoices, by kind),
//! subscriptions by plan and status, live 402s by code per UTC day (from the
//! daily rollups) and the organizations that use the API most and are
//! refused most.

use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// What a paid invoice counts as on the revenue line.
pub fn revenue_kind(purpose: &str) -> &'static str {
    match purpose {
        "subscription" | "renewal" => "subscriptions",
        "proration" => "upgrades",
        "top_up" | "auto_top_up" => "top_ups",
        _ => "other",
    }
}

#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub month_start: Option<OffsetDateTime>,
    /// (kind, currency, minor units, invoices)
    pub revenue: Vec<(String, String, i64, i64)>,
    /// (plan, status, subscriptions)
    pub subscriptions: Vec<(String, String, i64)>,
    /// The days of the chart, oldest first.
    pub days: Vec<OffsetDateTime>,
    /// (code, 402s per day in `days`' order)
    pub refusals: Vec<(String, Vec<i64>)>,
    /// (org, name, live calls, live 402s) over the chart's days.
    pub top_usage: Vec<(Uuid, String, i64, i64)>,
    pub top_refused: Vec<(Uuid, String, i64, i64)>,
}

pub const DAYS: i64 = 30;

fn utc_day(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC).replace_time(time::Time::MIDNIGHT)
}

pub async fn load(db: &PgPool, now: OffsetDateTime) -> Result<Overview, sqlx::Error> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let month_start = now.replace_day(1).expect("day 1 exists").replace_time(time::Time::MIDNIGHT);
    let invoices: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT purpose, currency::text, sum(total_minor)::bigint, count(*) FROM invoices
          WHERE status = 'paid' AND paid_at >= $1 AND paid_at <= $2 GROUP BY purpose, currency ORDER BY purpose, currency",
    )
    .bind(month_start)
    .bind(now)
    .fetch_all(db)
    .await?;
    let mut revenue: Vec<(String, String, i64, i64)> = Vec::new();
    for (purpose, currency, minor, n) in invoices {
        let kind = revenue_kind(&purpose).to_string();
        match revenue.iter_mut().find(|r| r.0 == kind && r.1 == currency) {
            Some(r) => {
                r.2 += minor;
                r.3 += n;
            }
            None => revenue.push((kind, currency, minor, n)),
        }
    }
    revenue.sort();
    let subscriptions = sqlx::query_as(
        "SELECT p.name, s.status, count(*) FROM subscriptions s JOIN plans p ON p.id = s.plan_id
          GROUP BY p.name, p.sort_order, p.price_minor, s.status ORDER BY p.sort_order, p.price_minor, s.status",
    )
    .fetch_all(db)
    .await?;
    let first = utc_day(now) - Duration::days(DAYS - 1);
    let days: Vec<OffsetDateTime> = (0..DAYS).map(|i| first + Duration::days(i)).collect();
    let by_day: Vec<(String, OffsetDateTime, i64)> = sqlx::query_as(
        "SELECT code, bucket, sum(calls)::bigint FROM usage_daily
          WHERE outcome = '402' AND mode = 'live' AND bucket >= $1 GROUP BY code, bucket ORDER BY code, bucket",
    )
    .bind(first)
    .fetch_all(db)
    .await?;
    let mut refusals: Vec<(String, Vec<i64>)> = Vec::new();
    for (code, bucket, n) in by_day {
        let Some(i) = days.iter().position(|d| *d == bucket) else { continue };
        if refusals.last().map(|r| r.0 != code).unwrap_or(true) {
            refusals.push((code.clone(), vec![0; days.len()]));
        }
        if let Some(r) = refusals.last_mut() {
            r.1[i] += n;
        }
    }
    let top = |order: &'static str| {
        format!(
            "SELECT d.org_id, o.name, sum(d.calls)::bigint AS calls,
                    coalesce(sum(d.calls) FILTER (WHERE d.outcome = '402'), 0)::bigint AS refused
               FROM usage_daily d JOIN organizations o ON o.id = d.org_id
              WHERE d.mode = 'live' AND d.bucket >= $1
              GROUP BY d.org_id, o.name HAVING {order} > 0 ORDER BY {order} DESC, o.name LIMIT 10"
        )
    };
    let top_usage = sqlx::query_as(&top("sum(d.calls)")).bind(first).fetch_all(db).await?;
    let top_refused = sqlx::query_as(&top("coalesce(sum(d.calls) FILTER (WHERE d.outcome = '402'), 0)"))
        .bind(first)
        .fetch_all(db)
        .await?;
    Ok(Overview { month_start: Some(month_start), revenue, subscriptions, days, refusals, top_usage, top_refused })
}

/// The console's counts: users, organizations, emails not sent yet,
/// subscriptions waiting for approval.
pub async fn counts(db: &PgPool) -> Result<(i64, i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM organizations),
                (SELECT count(*) FROM email_outbox WHERE sent_at IS NULL),
                (SELECT count(*) FROM subscriptions WHERE status = 'pending_approval')",
    )
    .fetch_one(db)
    .await
}
