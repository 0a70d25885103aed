//! Email. Every message is written to the `email_outbox` table inside the
//! transaction that caused it, so it is never lost and never sent for work
//! that rolled back. When SMTP is configured, [`run_sender`] delivers pending
//! messages; platform admins can read the outbox either way.
//!
//! An email can carry a one-time token (a reset or invitation link). The
//! outbox keeps the token only until the email is sent: `body_text` always
//! has it removed, and `body_secret` (the body as it will be sent) is
//! cleared when it is. Without SMTP, the outbox is how emails reach people,
//! so admins read unsent bodies whole there; with SMTP they never see a token.

use crate::config::SmtpConfig;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// What stands in a stored body where a token was.
pub const REMOVED: &str = "[removed once sent]";

/// Queues an email. `secrets`: one-time tokens in `body`, kept only until
/// the email is sent.
pub async fn enqueue(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    to: &str,
    subject: &str,
    body: &str,
    kind: &str,
    secrets: &[&str],
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let redacted = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(body.to_string(), |b, s| b.replace(s, REMOVED));
    let secret_body = (redacted != body).then_some(body);
    sqlx::query(
        "INSERT INTO email_outbox (id, to_address, subject, body_text, body_secret, kind, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(to)
    .bind(subject)
    .bind(&redacted)
    .bind(secret_body)
    .bind(kind)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: Uuid,
    pub to_address: String,
    pub subject: String,
    /// The body with any token removed.
    pub body_text: String,
    /// The body as it will be sent, while it holds a token and is unsent.
    pub body_secret: Option<String>,
    pub kind: String,
    pub created_at: OffsetDateTime,
    pub sent_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

pub async fn recent(db: &PgPool, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, to_address, subject, body_text, body_secret, kind, created_at, sent_at, last_error
         FROM email_outbox ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

const MAX_ATTEMPTS: i32 = 5;

/// Delivers pending messages by SMTP, forever. Rows are claimed with
/// `FOR UPDATE SKIP LOCKED`, so several instances never send one twice.
pub async fn run_sender(db: PgPool, smtp: SmtpConfig, shutdown: crate::shutdown::Shutdown) {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url) {
        Ok(b) => b.build(),
        Err(e) => {
            tracing::error!(error = %e, "TOLLGATE_SMTP_URL is not a valid SMTP URL; emails stay in the outbox");
            return;
        }
    };
    let from = match smtp.from.parse() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "TOLLGATE_SMTP_FROM is not a valid address; emails stay in the outbox");
            return;
        }
    };
    loop {
        if shutdown.is_set() {
            return;
        }
        let result: Result<usize, sqlx::Error> = async {
            let mut tx = db.begin().await?;
            let rows: Vec<OutboxRow> = sqlx::query_as(
                "SELECT id, to_address, subject, body_text, body_secret, kind, created_at, sent_at, last_error
                 FROM email_outbox WHERE sent_at IS NULL AND attempts < $1
                 ORDER BY created_at LIMIT 10 FOR UPDATE SKIP LOCKED",
            )
            .bind(MAX_ATTEMPTS)
            .fetch_all(&mut *tx)
            .await?;
            let n = rows.len();
            for row in rows {
                let outcome = match row.to_address.parse() {
                    Ok(to) => match Message::builder()
                        .from(Clone::clone(&from))
                        .to(to)
                        .subject(row.subject.clone())
                        .body(row.body_secret.clone().unwrap_or_else(|| row.body_text.clone()))
                    {
                        Ok(msg) => transport.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(format!("bad recipient: {e}")),
                };
                let now = OffsetDateTime::now_utc();
                match outcome {
                    Ok(()) => {
                        // Sent: the token is no longer kept.
                        sqlx::query("UPDATE email_outbox SET sent_at = $2, attempts = attempts + 1, last_error = NULL, body_secret = NULL WHERE id = $1")
                            .bind(row.id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Err(e) => {
                        tracing::warn!(email_id = %row.id, error = %e, "email delivery failed");
                        // An email that will not be tried again keeps no token either.
                        sqlx::query("UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, body_secret = CASE WHEN attempts + 1 >= $3 THEN NULL ELSE body_secret END WHERE id = $1")
                            .bind(row.id)
                            .bind(e)
                            .bind(MAX_ATTEMPTS)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "email sender could not reach the database"),
        }
        shutdown.sleep(std::time::Duration::from_secs(5)).await;
    }
}
