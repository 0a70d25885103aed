//! User rows.

use super::{AccountsError, Email};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub is_platform_admin: bool,
    pub created_at: OffsetDateTime,
    pub email_verified_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("is_platform_admin", &self.is_platform_admin)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, email, display_name, password_hash, is_platform_admin, created_at, email_verified_at";

pub async fn by_email(db: &PgPool, email: &Email) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE lower(email) = $1"
    ))
    .bind(email.normalized())
    .fetch_optional(db)
    .await
}

pub async fn by_id(db: &PgPool, id: Uuid) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub fn validate_display_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        Err("Enter your name.".into())
    } else if name.chars().count() > 100 {
        Err("Use at most 100 characters.".into())
    } else if super::organizations::has_hidden_characters(name) {
        Err("Use letters, digits, spaces and punctuation only (no control characters or line breaks).".into())
    } else {
        Ok(name.to_string())
    }
}

pub fn email_taken() -> AccountsError {
    AccountsError::field(
        "email",
        "An account with this email already exists. Sign in instead.",
    )
}

/// Inserts a user; a taken email becomes a field error.
pub async fn insert(
    conn: &mut PgConnection,
    email: &Email,
    display_name: &str,
    password_hash: &str,
    is_platform_admin: bool,
    now: OffsetDateTime,
) -> Result<Uuid, AccountsError> {
    let id = Uuid::now_v7();
    let result = sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, is_platform_admin, created_at, updated_at, email_verified_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, CASE WHEN $5 THEN $6 END)",
    )
    .bind(id)
    .bind(email.as_str())
    .bind(display_name)
    .bind(password_hash)
    .bind(is_platform_admin)
    .bind(now)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_email_key") => {
            Err(email_taken())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn set_password(
    conn: &mut PgConnection,
    id: Uuid,
    hash: &str,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
