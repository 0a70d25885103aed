//! Browser sessions, kept in PostgreSQL through tower-sessions.
//!
//! The cookie carries a random 128-bit session id; the `sessions` table keys
//! rows by the id's SHA-256, so reading the table does not yield a usable
//! session. The `user_id` column mirrors the session's user so that all of a
//! user's sessions can be revoked at once (for example after a password reset).

use crate::crypto::sha256;
use async_trait::async_trait;
use sqlx::PgPool;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::Session;
use uuid::Uuid;

pub const USER_ID: &str = "user_id";
pub const ORG_ID: &str = "org_id";
pub const CSRF: &str = "csrf";
pub const FLASH: &str = "flash";

#[derive(Clone, Debug)]
pub struct PgSessionStore {
    db: PgPool,
}

impl PgSessionStore {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    /// Deletes sessions that expired; run periodically.
    pub async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected())
    }
}

fn key(id: &Id) -> Vec<u8> {
    sha256(id.to_string().as_bytes())
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn user_of(record: &Record) -> Option<Uuid> {
    record
        .data
        .get(USER_ID)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let data = serde_json::to_value(&record.data)
                .map_err(|e| session_store::Error::Encode(e.to_string()))?;
            let inserted = sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, data, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id_hash) DO NOTHING",
            )
            .bind(key(&record.id))
            .bind(user_of(record))
            .bind(data)
            .bind(record.expiry_date)
            .execute(&self.db)
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            // A 128-bit collision: draw another id.
            record.id = Id::default();
        }
    }

    /// Updates a session that exists, and never inserts one: a session is
    /// created only by [`SessionStore::create`]. A request that loaded the
    /// session before it was ended (signed out, or every session of the user
    /// ended by a password reset) finds no row here, and the session stays
    /// ended.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_value(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        sqlx::query(
            "UPDATE sessions SET user_id = $2, data = $3, expires_at = $4 WHERE id_hash = $1",
        )
        .bind(key(&record.id))
        .bind(user_of(record))
        .bind(data)
        .bind(record.expiry_date)
        .execute(&self.db)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(serde_json::Value, OffsetDateTime)> = sqlx::query_as(
            "SELECT data, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > now()",
        )
        .bind(key(id))
        .fetch_optional(&self.db)
        .await
        .map_err(backend)?;
        match row {
            None => Ok(None),
            Some((data, expiry_date)) => Ok(Some(Record {
                id: *id,
                data: serde_json::from_value(data)
                    .map_err(|e| session_store::Error::Decode(e.to_string()))?,
                expiry_date,
            })),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(key(id))
            .execute(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// Ends every session of a user (all browsers).
pub async fn revoke_all_for_user(db: &PgPool, user_id: Uuid) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}

/// Errors reading the session are treated as an empty session: the visitor
/// is signed out rather than shown an error page.
pub async fn get<T: serde::de::DeserializeOwned>(session: &Session, key: &str) -> Option<T> {
    match session.get::<T>(key).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the session");
            None
        }
    }
}

pub async fn user_id(session: &Session) -> Option<Uuid> {
    get(session, USER_ID).await
}

/// The session's anti-forgery token, made on first use.
pub async fn csrf_token(session: &Session) -> Result<String, tower_sessions::session::Error> {
    if let Some(t) = session.get::<String>(CSRF).await? {
        return Ok(t);
    }
    let t = crate::crypto::random_token(32);
    session.insert(CSRF, &t).await?;
    Ok(t)
}

/// Whether `presented` is this session's anti-forgery token.
pub async fn csrf_matches(session: &Session, presented: &str) -> bool {
    match get::<String>(session, CSRF).await {
        Some(expected) => {
            crate::crypto::constant_time_eq(expected.as_bytes(), presented.as_bytes())
        }
        None => false,
    }
}

/// Signs a user in on this session: a new session id (so an id planted before
/// sign-in is worthless), the user, a fresh anti-forgery token.
pub async fn establish(
    session: &Session,
    user_id: Uuid,
    org_id: Option<Uuid>,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(USER_ID, user_id).await?;
    match org_id {
        Some(org) => session.insert(ORG_ID, org).await?,
        None => {
            session.remove_value(ORG_ID).await?;
        }
    }
    session
        .insert(CSRF, crate::crypto::random_token(32))
        .await?;
    Ok(())
}
