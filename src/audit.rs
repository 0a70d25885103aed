//! The audit log: who did what to which organization. Append-only.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

pub async fn record(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    actor: Option<Uuid>,
    org: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_user_id, org_id, action, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(now)
    .bind(actor)
    .bind(org)
    .bind(action)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}
