//! Creating, listing, revoking and rotating keys. Only members with the
//! developer role or above manage keys; revoking takes effect on the next call.

use super::KeyError;
use super::{Mode, Secret, SCOPES};
use crate::accounts::Role;
use sqlx::{PgConnection, PgPool};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub mode: Mode,
    pub prefix: String,
    pub last4: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str =
    "id, name, mode, prefix, last4, scopes, expires_at, created_at, last_used_at, revoked_at";


pub struct NewKey {
    pub name: String,
    pub mode: String,
    pub scopes: Vec<String>,
    /// Days until expiry; `None` never expires.
    pub expires_in_days: Option<i64>,
}

/// `route_scopes`: the scopes of the provider routes, which keys may hold
/// besides the built-in ones.
pub fn validate(
    input: &NewKey,
    route_scopes: &[String],
) -> Result<(String, Mode, Vec<String>, Option<Duration>), KeyError> {
    let mut errors = Vec::new();
    let name = input.name.trim().to_string();
    if name.is_empty() {
        errors.push((
            "name",
            "Give the key a name, such as \"production server\".".to_string(),
        ));
    } else if name.chars().count() > 80 {
        errors.push(("name", "Use at most 80 characters.".to_string()));
    }
    let mode = Mode::parse(&input.mode);
    if mode.is_none() {
        errors.push(("mode", "Choose test or live.".to_string()));
    }
    let known = |s: &str| {
        s == "*" || SCOPES.iter().any(|(k, _)| *k == s) || route_scopes.iter().any(|r| r == s)
    };
    let mut scopes: Vec<String> = input
        .scopes
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        errors.push(("scopes", "Choose at least one scope.".to_string()));
    } else if let Some(bad) = scopes.iter().find(|s| !known(s)) {
        errors.push(("scopes", format!("Unknown scope \"{bad}\".")));
    }
    let expiry = match input.expires_in_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => Some(Duration::days(d)),
        Some(_) => {
            errors.push((
                "expires_in_days",
                "Choose between 1 and 3650 days, or never.".to_string(),
            ));
            None
        }
    };
    match (errors.is_empty(), mode) {
        (true, Some(mode)) => Ok((name, mode, scopes, expiry)),
        _ => Err(KeyError::Invalid(errors)),
    }
}

/// The member's role, read under a share lock on their membership row for
/// the rest of `tx`: a removal (which deletes the row, then revokes the
/// member's keys) waits for this transaction, or this one sees the member
/// gone. So a key written here cannot outlive its creator's removal.
async fn locked_manager(tx: &mut PgConnection, org: Uuid, user: Uuid) -> Result<Role, KeyError> {
    let role: Option<Role> = sqlx::query_scalar(
        "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2 FOR SHARE",
    )
    .bind(org)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    match role {
        Some(role) if role.manages_keys() => Ok(role),
        _ => Err(KeyError::Forbidden(
            "only developers, admins and owners manage API keys",
        )),
    }
}

async fn insert(
    tx: &mut PgConnection,
    org: Uuid,
    user: Uuid,
    name: &str,
    mode: Mode,
    scopes: &[String],
    expires_at: Option<OffsetDateTime>,
    rotated_from: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<(Uuid, Secret), sqlx::Error> {
    let secret = Secret::generate(mode);
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO api_keys (id, org_id, created_by, name, mode, prefix, last4, token_hash, scopes, expires_at, created_at, rotated_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(org)
    .bind(user)
    .bind(name)
    .bind(mode.as_str())
    .bind(secret.display_prefix())
    .bind(secret.last4())
    .bind(secret.hash())
    .bind(scopes)
    .bind(expires_at)
    .bind(now)
    .bind(rotated_from)
    .execute(&mut *tx)
    .await?;
    Ok((id, secret))
}

/// Creates a key for `user`, who must still be a member allowed to manage
/// keys when the key is written (their role is read then, under lock).
pub async fn create(
    db: &PgPool,
    org: Uuid,
    user: Uuid,
    input: NewKey,
    now: OffsetDateTime,
) -> Result<(Uuid, Secret), KeyError> {
    let route_scopes: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT scope FROM routes WHERE active")
            .fetch_all(db)
            .await?;
    let mut tx = db.begin().await?;
    locked_manager(&mut tx, org, user).await?;
    let (name, mode, scopes, expiry) = validate(&input, &route_scopes)?;
    let (id, secret) = insert(
        &mut tx,
        org,
        user,
        &name,
        mode,
        &scopes,
        expiry.map(|d| now + d),
        None,
        now,
    )
    .await?;
    let details = serde_json::json!({"key_id": id, "mode": mode.as_str(), "scopes": scopes});
    crate::audit::record(
        &mut tx,
        now,
        Some(user),
        Some(org),
        crate::audit::Action::ApiKeyCreated,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok((id, secret))
}

pub async fn list(db: &PgPool, org: Uuid) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC"
    ))
    .bind(org)
    .fetch_all(db)
    .await
}

/// Ends a key at once, whatever its state: active, or still working during
/// a rotation's overlap (its end moves to now).
pub async fn revoke(
    db: &PgPool,
    org: Uuid,
    user: Uuid,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<(), KeyError> {
    let mut tx = db.begin().await?;
    locked_manager(&mut tx, org, user).await?;
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = $3
         WHERE id = $1 AND org_id = $2 AND (revoked_at IS NULL OR revoked_at > $3)",
    )
    .bind(id)
    .bind(org)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(KeyError::NotFound);
    }
    crate::audit::record(
        &mut tx,
        now,
        Some(user),
        Some(org),
        crate::audit::Action::ApiKeyRevoked,
        serde_json::json!({"key_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A new key with the same name, mode and scopes. The old key keeps working
/// for `overlap_hours` (0: it stops now), so deployments can switch over.
pub async fn rotate(
    db: &PgPool,
    org: Uuid,
    user: Uuid,
    id: Uuid,
    overlap_hours: i64,
    now: OffsetDateTime,
) -> Result<(Uuid, Secret), KeyError> {
    let mut tx = db.begin().await?;
    locked_manager(&mut tx, org, user).await?;
    if !(0..=720).contains(&overlap_hours) {
        return Err(KeyError::field(
            "overlap_hours",
            "Choose an overlap between 0 and 720 hours.",
        ));
    }
    let old: Option<ApiKey> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let old = old.ok_or(KeyError::NotFound)?;
    let mode = old.mode;
    let (new_id, secret) = insert(
        &mut tx,
        org,
        user,
        &old.name,
        mode,
        &old.scopes,
        old.expires_at,
        Some(old.id),
        now,
    )
    .await?;
    // The old key ends when the overlap does (as a revocation, so calls with
    // it afterwards say "revoked", not "expired"); revoking it ends it sooner.
    sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND org_id = $2")
        .bind(old.id)
        .bind(org)
        .bind(now + Duration::hours(overlap_hours))
        .execute(&mut *tx)
        .await?;
    let details =
        serde_json::json!({"key_id": old.id, "new_key_id": new_id, "overlap_hours": overlap_hours});
    crate::audit::record(
        &mut tx,
        now,
        Some(user),
        Some(org),
        crate::audit::Action::ApiKeyRotated,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok((new_id, secret))
}

/// A key of the organization, for the explorer and the usage filters.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyLabel {
    pub id: Uuid,
    pub name: String,
    pub mode: String,
    pub prefix: String,
    pub last4: String,
    pub revoked: bool,
}

/// Every key of the organization, revoked ones too, newest first.
pub async fn labels(db: &PgPool, org: Uuid) -> Result<Vec<KeyLabel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, mode, prefix, last4, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC",
    )
    .bind(org)
    .fetch_all(db)
    .await
}

/// The organization's keys that work at `now`, test keys first.
pub async fn usable(db: &PgPool, org: Uuid, now: OffsetDateTime) -> Result<Vec<KeyLabel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, mode, prefix, last4, false AS revoked FROM api_keys
          WHERE org_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
          ORDER BY mode = 'test' DESC, created_at DESC",
    )
    .bind(org)
    .bind(now)
    .fetch_all(db)
    .await
}

/// The prefix of the newest working key `user` made in the organization, a
/// test key first (the docs' snippets show it).
pub async fn newest_prefix_of(db: &PgPool, org: Uuid, user: Uuid, now: OffsetDateTime) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT prefix FROM api_keys
          WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)
          ORDER BY mode = 'test' DESC, created_at DESC LIMIT 1",
    )
    .bind(org)
    .bind(user)
    .bind(now)
    .fetch_optional(db)
    .await
}

/// A key of the organization by id: its hash and mode (the explorer sends
/// with it; any other organization's id is not found).
pub async fn token_of(db: &PgPool, id: Uuid, org: Uuid) -> Result<Option<(Vec<u8>, String)>, sqlx::Error> {
    sqlx::query_as("SELECT token_hash, mode FROM api_keys WHERE id = $1 AND org_id = $2").bind(id).bind(org).fetch_optional(db).await
}
