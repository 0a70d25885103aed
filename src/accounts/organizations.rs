//! Organizations and their members. Every customer acts through an
//! organization; sign-up makes one with the new user as its owner.

use super::{AccountsError, Role};
use crate::billing::subscriptions;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

pub fn validate_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        Err("Enter a name for the organization.".into())
    } else if name.chars().count() > 100 {
        Err("Use at most 100 characters.".into())
    } else if has_hidden_characters(name) {
        Err("Use letters, digits, spaces and punctuation only (no control characters or line breaks).".into())
    } else {
        Ok(name.to_string())
    }
}

/// Control characters, line and paragraph separators, and the invisible
/// formatting characters (zero-width, bidirectional overrides) that could
/// make a name read differently in an email or a page than it is stored.
pub fn has_hidden_characters(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    })
}

fn slug_of(name: &str) -> String {
    let mut slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    slug = slug
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    slug.truncate(40);
    if slug.is_empty() {
        slug.push_str("org");
    }
    // A short random suffix keeps slugs unique without a retry loop.
    let suffix = &crate::crypto::random_token(6)
        .to_lowercase()
        .replace(['-', '_'], "x")[..6];
    format!("{slug}-{suffix}")
}

/// Creates an organization on the free plan, owned by `owner`.
pub async fn create_with_owner(
    conn: &mut PgConnection,
    name: &str,
    owner: Uuid,
    now: OffsetDateTime,
) -> Result<Uuid, AccountsError> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO organizations (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(name)
        .bind(slug_of(name))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    add_member(conn, id, owner, Role::Owner, now).await?;
    subscriptions::start_free(conn, id, now).await?;
    Ok(id)
}

pub async fn add_member(
    conn: &mut PgConnection,
    org: Uuid,
    user: Uuid,
    role: Role,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, user_id) DO NOTHING",
    )
    .bind(org)
    .bind(user)
    .bind(role.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The organization a user lands in: the one they chose last (while they
/// are still a member), else the first one they joined.
pub async fn default_for_user(db: &PgPool, user: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.user_id = $1
          ORDER BY (m.org_id = u.last_org_id) IS TRUE DESC, m.created_at, m.org_id LIMIT 1",
    )
    .bind(user)
    .fetch_optional(db)
    .await
}

/// Every organization the user belongs to, in the order they joined.
pub async fn of_user(db: &PgPool, user: Uuid) -> Result<Vec<Membership>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.org_id, o.name AS org_name, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id
          WHERE m.user_id = $1 ORDER BY m.created_at, o.id",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// Remembers `org` as the organization the user's next sign-in lands in,
/// while they are a member of it; `false` when they are not.
pub async fn remember_choice(db: &PgPool, user: Uuid, org: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users u SET last_org_id = m.org_id FROM memberships m
          WHERE u.id = $1 AND m.user_id = u.id AND m.org_id = $2",
    )
    .bind(user)
    .bind(org)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Membership {
    pub org_id: Uuid,
    pub org_name: String,
    pub role: Role,
}

/// The user's membership in `org`, if they still have one.
pub async fn membership(
    db: &PgPool,
    org: Uuid,
    user: Uuid,
) -> Result<Option<Membership>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.org_id, o.name AS org_name, m.role FROM memberships m
         JOIN organizations o ON o.id = m.org_id
         WHERE m.org_id = $1 AND m.user_id = $2",
    )
    .bind(org)
    .bind(user)
    .fetch_optional(db)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

pub async fn members(db: &PgPool, org: Uuid) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.email, u.display_name, m.role, m.created_at
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.org_id = $1
         ORDER BY array_position(ARRAY['owner','admin','developer','billing'], m.role), m.created_at",
    )
    .bind(org)
    .fetch_all(db)
    .await
}

/// Who may give or take the owner role: only owners.
fn check_owner_rule(actor: Role, old: Role, new: Option<Role>) -> Result<(), AccountsError> {
    if (old == Role::Owner || new == Some(Role::Owner)) && actor != Role::Owner {
        return Err(AccountsError::Forbidden(
            "only owners can grant or remove the owner role",
        ));
    }
    Ok(())
}

/// Locks the organization's memberships and refuses to leave it ownerless.
async fn ensure_other_owner(
    conn: &mut PgConnection,
    org: Uuid,
    target: Uuid,
) -> Result<(), AccountsError> {
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'owner' FOR UPDATE",
    )
    .bind(org)
    .fetch_all(&mut *conn)
    .await?;
    if owners.iter().all(|o| *o == target) {
        return Err(AccountsError::Forbidden(
            "an organization needs at least one owner",
        ));
    }
    Ok(())
}

async fn target_role(
    conn: &mut PgConnection,
    org: Uuid,
    target: Uuid,
) -> Result<Role, AccountsError> {
    let role: Option<Role> = sqlx::query_scalar(
        "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(org)
    .bind(target)
    .fetch_optional(&mut *conn)
    .await?;
    role.ok_or(AccountsError::NotFound)
}

pub async fn change_role(
    db: &PgPool,
    org: Uuid,
    actor: Uuid,
    actor_role: Role,
    target: Uuid,
    new: Role,
    now: OffsetDateTime,
) -> Result<(), AccountsError> {
    if !actor_role.manages_members() {
        return Err(AccountsError::Forbidden(
            "only owners and admins manage members",
        ));
    }
    if actor == target {
        return Err(AccountsError::Forbidden("you cannot change your own role"));
    }
    let mut tx = db.begin().await?;
    let old = target_role(&mut tx, org, target).await?;
    check_owner_rule(actor_role, old, Some(new))?;
    if old == Role::Owner && new != Role::Owner {
        ensure_other_owner(&mut tx, org, target).await?;
    }
    sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(org)
        .bind(target)
        .bind(new.as_str())
        .execute(&mut *tx)
        .await?;
    let details = serde_json::json!({"user_id": target, "from": old.as_str(), "to": new.as_str()});
    crate::audit::record(
        &mut tx,
        now,
        Some(actor),
        Some(org),
        crate::audit::Action::MemberRoleChanged,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a member. Their access ends at once: every request re-reads the
/// membership, and the API keys they created are revoked.
pub async fn remove(
    db: &PgPool,
    org: Uuid,
    actor: Uuid,
    actor_role: Role,
    target: Uuid,
    now: OffsetDateTime,
) -> Result<(), AccountsError> {
    if !actor_role.manages_members() {
        return Err(AccountsError::Forbidden(
            "only owners and admins manage members",
        ));
    }
    if actor == target {
        return Err(AccountsError::Forbidden("you cannot remove yourself"));
    }
    let mut tx = db.begin().await?;
    let old = target_role(&mut tx, org, target).await?;
    check_owner_rule(actor_role, old, None)?;
    if old == Role::Owner {
        ensure_other_owner(&mut tx, org, target).await?;
    }
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    // Their API keys stop with them.
    sqlx::query(
        "UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND created_by = $2 AND (revoked_at IS NULL OR revoked_at > $3)",
    )
    .bind(org)
    .bind(target)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        now,
        Some(actor),
        Some(org),
        crate::audit::Action::MemberRemoved,
        serde_json::json!({"user_id": target}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_readable_and_unique() {
        let a = slug_of("Acme, Inc.");
        assert!(a.starts_with("acme-inc-"), "{a}");
        assert_ne!(a, slug_of("Acme, Inc."));
        assert!(slug_of("!!!").starts_with("org-"));
    }

    #[test]
    fn only_owners_touch_the_owner_role() {
        assert!(check_owner_rule(Role::Admin, Role::Developer, Some(Role::Billing)).is_ok());
        assert!(check_owner_rule(Role::Admin, Role::Developer, Some(Role::Owner)).is_err());
        assert!(check_owner_rule(Role::Admin, Role::Owner, Some(Role::Admin)).is_err());
        assert!(check_owner_rule(Role::Owner, Role::Owner, Some(Role::Admin)).is_ok());
    }
}
