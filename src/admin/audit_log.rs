//! Reading the audit log: newest first, filtered by actor, organization,
//! action and time, paged by keyset on (time, id) so page 100 costs what
//! page 1 does (`audit_log_*_idx`), and exported as CSV with the same
//! filters. Entries are only ever appended (`audit::write`; the table's
//! trigger refuses changes).

use crate::audit::Action;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub const PAGE: i64 = 50;
/// The most rows one export holds; the page says when a range had more.
pub const EXPORT_MAX: i64 = 50_000;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The acting user's email, exactly (any case).
    pub actor: Option<String>,
    pub org: Option<Uuid>,
    pub action: Option<Action>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// Where a page starts: the last entry of the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: OffsetDateTime,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.unix_timestamp_nanos() / 1000, self.id)
    }

    pub fn parse(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        let micros: i128 = micros.parse().ok()?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()?;
        Some(Cursor { at, id: id.parse().ok()? })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor_email: Option<String>,
    pub org_id: Option<Uuid>,
    pub org_name: Option<String>,
    pub action: String,
    pub details: serde_json::Value,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
}

fn query(limit: i64) -> String {
    format!(
        "SELECT a.id, a.at, u.email AS actor_email, a.org_id, o.name AS org_name, a.action, a.details,
                a.before, a.after, a.request_id
           FROM audit_log a
           LEFT JOIN users u ON u.id = a.actor_user_id
           LEFT JOIN organizations o ON o.id = a.org_id
          WHERE ($1::text IS NULL OR a.actor_user_id = (SELECT id FROM users WHERE lower(email) = lower($1)))
            AND ($2::uuid IS NULL OR a.org_id = $2)
            AND ($3::text IS NULL OR a.action = $3)
            AND ($4::timestamptz IS NULL OR a.at >= $4)
            AND ($5::timestamptz IS NULL OR a.at < $5)
            AND ($6::timestamptz IS NULL OR (a.at, a.id) < ($6, $7))
          ORDER BY a.at DESC, a.id DESC
          LIMIT {limit}"
    )
}

async fn fetch(db: &PgPool, filter: &Filter, after: Option<Cursor>, limit: i64) -> Result<Vec<Row>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = '5s'").execute(&mut *tx).await?;
    let rows = sqlx::query_as(&query(limit))
        .bind(&filter.actor)
        .bind(filter.org)
        .bind(filter.action.map(|a| a.as_str()))
        .bind(filter.from)
        .bind(filter.to)
        .bind(after.map(|c| c.at))
        .bind(after.map(|c| c.id).unwrap_or(0))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// One page, and the cursor of the next when there is one.
pub async fn page(db: &PgPool, filter: &Filter, after: Option<Cursor>, size: i64) -> Result<(Vec<Row>, Option<Cursor>), sqlx::Error> {
    let mut rows = fetch(db, filter, after, size + 1).await?;
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    let next = more.then(|| rows.last().map(|r| Cursor { at: r.at, id: r.id })).flatten();
    Ok((rows, next))
}

/// Every entry of the filter (at most [`EXPORT_MAX`]) as CSV, and whether
/// there were more.
pub async fn export(db: &PgPool, filter: &Filter) -> Result<(String, bool), sqlx::Error> {
    let mut rows = fetch(db, filter, None, EXPORT_MAX + 1).await?;
    let more = rows.len() as i64 > EXPORT_MAX;
    rows.truncate(EXPORT_MAX as usize);
    let mut out = String::from("at,actor,org_id,org,action,request_id,details,before,after\n");
    for r in rows {
        let fields = [
            crate::usage::rfc3339(r.at),
            r.actor_email.unwrap_or_default(),
            r.org_id.map(|o| o.to_string()).unwrap_or_default(),
            r.org_name.unwrap_or_default(),
            r.action,
            r.request_id.unwrap_or_default(),
            r.details.to_string(),
            r.before.map(|v| v.to_string()).unwrap_or_default(),
            r.after.map(|v| v.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| crate::usage::csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    Ok((out, more))
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_read_back() {
        let c = Cursor { at: time::macros::datetime!(2026-12-01 10:00:00.123456 UTC), id: 42 };
        assert_eq!(Cursor::parse(&c.encode()), Some(c));
        assert_eq!(Cursor::parse("x_1"), None);
        assert_eq!(Cursor::parse("1"), None);
    }
}
