//! Invitations: an owner or admin invites an address with a role; the
//! emailed link (a random token, stored only as its SHA-256) lets that
//! address join, once, within `VALID_FOR`.

use super::{AccountsError, Email, Role};
use crate::config::Config;
use crate::crypto::{random_token, sha256};
use sqlx::{PgConnection, PgPool};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const VALID_FOR: Duration = Duration::days(7);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invitation {
    pub id: Uuid,
    pub org_id: Uuid,
    pub org_name: String,
    pub email: String,
    pub role: Role,
    pub expires_at: OffsetDateTime,
}

pub async fn invite(
    db: &PgPool,
    config: &Config,
    org: Uuid,
    actor: Uuid,
    actor_role: Role,
    email: &str,
    role: &str,
    now: OffsetDateTime,
) -> Result<(), AccountsError> {
    if !actor_role.manages_members() {
        return Err(AccountsError::Forbidden(
            "only owners and admins invite members",
        ));
    }
    let mut errors = Vec::new();
    let email = Email::parse(email).map_err(|e| errors.push(("email", e)));
    let role = Role::parse(role).ok_or_else(|| errors.push(("role", "Choose a role.".to_string())));
    let (Ok(email), Ok(role)) = (email, role) else {
        return Err(AccountsError::Invalid(errors));
    };
    if role == Role::Owner && actor_role != Role::Owner {
        return Err(AccountsError::field(
            "role",
            "Only owners can invite owners.",
        ));
    }
    let already: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
                        WHERE m.org_id = $1 AND lower(u.email) = $2)",
    )
    .bind(org)
    .bind(email.normalized())
    .fetch_one(db)
    .await?;
    if already {
        return Err(AccountsError::field(
            "email",
            "This person is already a member.",
        ));
    }

    let token = random_token(32);
    let mut tx = db.begin().await?;
    // A new invitation replaces an open one for the same address.
    sqlx::query(
        "UPDATE invitations SET revoked_at = $3
         WHERE org_id = $1 AND lower(email) = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(org)
    .bind(email.normalized())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(org)
    .bind(email.as_str())
    .bind(role.as_str())
    .bind(sha256(token.as_bytes()))
    .bind(actor)
    .bind(now)
    .bind(now + VALID_FOR)
    .execute(&mut *tx)
    .await?;
    let (org_name, inviter): (String, String) = sqlx::query_as(
        "SELECT o.name, u.display_name FROM organizations o, users u WHERE o.id = $1 AND u.id = $2",
    )
    .bind(org)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    let link = config.url(&format!("/invitations/{token}"));
    let body = format!(
        "{inviter} invited you to join {org_name} on Tollgate as {role}.\n\n\
         Accept the invitation (valid for 7 days):\n{link}\n\n\
         If you did not expect this, ignore this email.\n",
        role = role.as_str()
    );
    crate::email::enqueue(
        &mut tx,
        now,
        email.as_str(),
        &format!("Join {org_name} on Tollgate"),
        &body,
        "invitation",
        &[&token],
    )
    .await?;
    let details =
        serde_json::json!({"invitation_id": id, "email": email.as_str(), "role": role.as_str()});
    crate::audit::record(
        &mut tx,
        now,
        Some(actor),
        Some(org),
        crate::audit::Action::MemberInvited,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The open, unexpired invitation behind a token.
async fn open_by_token(
    conn: &mut PgConnection,
    token: &str,
    now: OffsetDateTime,
    lock: bool,
) -> Result<Invitation, AccountsError> {
    let sql = format!(
        "SELECT i.id, i.org_id, o.name AS org_name, i.email, i.role, i.expires_at
         FROM invitations i JOIN organizations o ON o.id = i.org_id
         WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2{}",
        if lock { " FOR UPDATE OF i" } else { "" }
    );
    sqlx::query_as(&sql)
        .bind(sha256(token.as_bytes()))
        .bind(now)
        .fetch_optional(conn)
        .await?
        .ok_or(AccountsError::InvalidToken)
}

pub async fn preview(
    db: &PgPool,
    token: &str,
    now: OffsetDateTime,
) -> Result<Invitation, AccountsError> {
    let mut conn = db.acquire().await?;
    open_by_token(&mut conn, token, now, false).await
}

/// Accepts inside the caller's transaction; the invitation must be for the
/// user's own address. Returns the organization joined.
pub async fn accept_in(
    conn: &mut PgConnection,
    token: &str,
    user: Uuid,
    user_email: &Email,
    now: OffsetDateTime,
) -> Result<Uuid, AccountsError> {
    let inv = open_by_token(conn, token, now, true).await?;
    if inv.email.to_lowercase() != user_email.normalized() {
        return Err(AccountsError::Forbidden(
            "this invitation was sent to another email address",
        ));
    }
    let role = inv.role;
    super::organizations::add_member(conn, inv.org_id, user, role, now).await?;
    sqlx::query("UPDATE invitations SET accepted_at = $2 WHERE id = $1")
        .bind(inv.id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let details = serde_json::json!({"invitation_id": inv.id, "role": inv.role.as_str()});
    crate::audit::record(
        conn,
        now,
        Some(user),
        Some(inv.org_id),
        crate::audit::Action::MemberJoined,
        details,
    )
    .await?;
    Ok(inv.org_id)
}

pub async fn accept(
    db: &PgPool,
    token: &str,
    user: Uuid,
    now: OffsetDateTime,
) -> Result<Uuid, AccountsError> {
    let user_row = super::users::by_id(db, user)
        .await?
        .ok_or(AccountsError::NotFound)?;
    let email = Email::parse(&user_row.email).map_err(|_| AccountsError::NotFound)?;
    let mut tx = db.begin().await?;
    let org = accept_in(&mut tx, token, user, &email, now).await?;
    tx.commit().await?;
    Ok(org)
}

pub async fn list_open(
    db: &PgPool,
    org: Uuid,
    now: OffsetDateTime,
) -> Result<Vec<Invitation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.org_id, o.name AS org_name, i.email, i.role, i.expires_at
         FROM invitations i JOIN organizations o ON o.id = i.org_id
         WHERE i.org_id = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2
         ORDER BY i.created_at DESC",
    )
    .bind(org)
    .bind(now)
    .fetch_all(db)
    .await
}

pub async fn revoke(
    db: &PgPool,
    org: Uuid,
    actor: Uuid,
    actor_role: Role,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<(), AccountsError> {
    if !actor_role.manages_members() {
        return Err(AccountsError::Forbidden(
            "only owners and admins manage invitations",
        ));
    }
    let mut tx = db.begin().await?;
    let r = sqlx::query(
        "UPDATE invitations SET revoked_at = $3 WHERE id = $1 AND org_id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(org)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(AccountsError::NotFound);
    }
    crate::audit::record(
        &mut tx,
        now,
        Some(actor),
        Some(org),
        crate::audit::Action::InvitationRevoked,
        serde_json::json!({"invitation_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
