//! The request log: an organization's usage events, newest first, paged by
//! keyset on (time, request id), never by OFFSET, so a page deep in the log
//! costs what the first one does. Filters are added to the query only when
//! set, with the status class as literal SQL so the planner can use the
//! partial index of refused calls. Request bodies are never stored; a
//! refused call's row keeps the exact problem body it got.

use crate::api_keys::Mode;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

/// A page of the log.
pub const PAGE: i64 = 50;

/// The log's reads run with a time limit: one that would read too much
/// fails (the page says so, with its request id) instead of holding a
/// connection and the locks a partition's creation waits for.
async fn limited(db: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = '5s'").execute(&mut *tx).await?;
    Ok(tx)
}

/// Status classes, as the filter offers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Success,
    PaymentRequired,
    RateLimited,
    OtherClientError,
    ServerError,
}

impl Class {
    pub fn parse(s: &str) -> Option<Class> {
        match s {
            "2xx" => Some(Class::Success),
            "402" => Some(Class::PaymentRequired),
            "429" => Some(Class::RateLimited),
            "4xx" => Some(Class::OtherClientError),
            "5xx" => Some(Class::ServerError),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Success => "2xx",
            Class::PaymentRequired => "402",
            Class::RateLimited => "429",
            Class::OtherClientError => "4xx",
            Class::ServerError => "5xx",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Class::Success => "status BETWEEN 200 AND 299",
            Class::PaymentRequired => "status = 402",
            Class::RateLimited => "status = 429",
            Class::OtherClientError => "status >= 400 AND status <= 499 AND status <> 402 AND status <> 429",
            Class::ServerError => "status >= 500",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub class: Option<Class>,
    pub code: Option<String>,
    pub key: Option<Uuid>,
    pub endpoint: Option<String>,
    pub mode: Option<Mode>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// Where the next page starts: the last row's (time, request id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: OffsetDateTime,
    pub request_id: String,
}

impl Cursor {
    /// `<unix microseconds>_<request id>`, for a URL.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.unix_timestamp_nanos() / 1000, self.request_id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        let micros: i128 = micros.parse().ok()?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()?;
        let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        ok.then(|| Cursor { at, request_id: id.to_string() })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub request_id: String,
    pub at: OffsetDateTime,
    pub method: String,
    pub endpoint: String,
    pub status: i16,
    pub code: Option<String>,
    pub credits: i64,
    pub credits_purchased: i64,
    pub latency_us: i64,
    pub mode: String,
    pub key_id: Option<Uuid>,
    pub key_prefix: Option<String>,
    pub key_revoked: bool,
}

const COLUMNS: &str = "u.request_id, u.at, u.method, u.endpoint, u.status, u.problem_code, u.credits, u.credits_purchased,
                       u.latency_us, u.mode, u.api_key_id, k.prefix || '…' || k.last4 AS key_prefix,
                       (k.revoked_at IS NOT NULL) AS key_revoked";

fn row(r: &sqlx::postgres::PgRow) -> LogRow {
    LogRow {
        request_id: r.get("request_id"),
        at: r.get("at"),
        method: r.get("method"),
        endpoint: r.get("endpoint"),
        status: r.get("status"),
        code: r.get("problem_code"),
        credits: r.get("credits"),
        credits_purchased: r.get("credits_purchased"),
        latency_us: r.get("latency_us"),
        mode: r.get("mode"),
        key_id: r.get("api_key_id"),
        key_prefix: r.get("key_prefix"),
        key_revoked: r.get::<Option<bool>, _>("key_revoked").unwrap_or(false),
    }
}

/// One page, newest first, after `after` (the previous page's cursor); the
/// cursor of the next page when there is one.
pub async fn page(
    db: &PgPool,
    org: Uuid,
    filter: &LogFilter,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<(Vec<LogRow>, Option<Cursor>), sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM usage_events u LEFT JOIN api_keys k ON k.id = u.api_key_id AND k.org_id = u.org_id WHERE u.org_id = "
    ));
    q.push_bind(org);
    if let Some(c) = filter.class {
        q.push(" AND u.").push(c.sql().replace(" AND status", " AND u.status"));
    }
    if let Some(code) = &filter.code {
        q.push(" AND u.status >= 400 AND u.problem_code = ").push_bind(code.clone());
    }
    if let Some(key) = filter.key {
        q.push(" AND u.api_key_id = ").push_bind(key);
    }
    if let Some(e) = &filter.endpoint {
        q.push(" AND u.endpoint = ").push_bind(e.clone());
    }
    if let Some(m) = filter.mode {
        q.push(" AND u.mode = ").push_bind(m.as_str());
    }
    if let Some(from) = filter.from {
        q.push(" AND u.at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND u.at < ").push_bind(to);
    }
    if let Some(c) = after {
        // `at <= …` on its own lets the planner skip the newer days'
        // partitions and start each index scan at the cursor; the row
        // comparison then orders ties by request id.
        q.push(" AND u.at <= ").push_bind(c.at);
        q.push(" AND (u.at, u.request_id) < (").push_bind(c.at).push(", ").push_bind(c.request_id.clone()).push(")");
    }
    q.push(" ORDER BY u.at DESC, u.request_id DESC LIMIT ").push_bind(limit + 1);
    let mut tx = limited(db).await?;
    let rows = q.build().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let mut rows: Vec<LogRow> = rows.iter().map(row).collect();
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| Cursor { at: r.at, request_id: r.request_id.clone() })
    } else {
        None
    };
    Ok((rows, next))
}

/// One entry of the log with its problem body; `None` when `request_id` is
/// not one of `org`'s calls.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub row: LogRow,
    pub problem_body: Option<Value>,
}

pub async fn entry(db: &PgPool, org: Uuid, request_id: &str) -> Result<Option<Entry>, sqlx::Error> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS}, u.problem_body FROM usage_events u LEFT JOIN api_keys k ON k.id = u.api_key_id AND k.org_id = u.org_id
          WHERE u.org_id = $1 AND u.request_id = $2 ORDER BY u.at DESC LIMIT 1"
    ))
    .bind(org)
    .bind(request_id)
    .fetch_optional(&mut *limited(db).await?)
    .await?;
    Ok(r.map(|r| Entry { row: row(&r), problem_body: r.get("problem_body") }))
}

/// The last call refused with a 402.
pub async fn last_refused(db: &PgPool, org: Uuid) -> Result<Option<Entry>, sqlx::Error> {
    let r = sqlx::query(&format!(
        "SELECT {COLUMNS}, u.problem_body FROM usage_events u LEFT JOIN api_keys k ON k.id = u.api_key_id AND k.org_id = u.org_id
          WHERE u.org_id = $1 AND u.status = 402 ORDER BY u.at DESC, u.request_id DESC LIMIT 1"
    ))
    .bind(org)
    .fetch_optional(&mut *limited(db).await?)
    .await?;
    Ok(r.map(|r| Entry { row: row(&r), problem_body: r.get("problem_body") }))
}

/// The endpoints and problem codes the organization's log holds in the
/// rollups' 13 months, for the filters' choices.
pub async fn choices(db: &PgPool, org: Uuid) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let endpoints = sqlx::query_scalar("SELECT DISTINCT endpoint FROM usage_daily WHERE org_id = $1 ORDER BY 1")
        .bind(org)
        .fetch_all(db)
        .await?;
    let codes = sqlx::query_scalar("SELECT DISTINCT code FROM usage_daily WHERE org_id = $1 AND code <> '' ORDER BY 1")
        .bind(org)
        .fetch_all(db)
        .await?;
    Ok((endpoints, codes))
}
