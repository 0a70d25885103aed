//! Signing up and signing in.

use super::{
    invitations, organizations, password, throttle, users, AccountsError, Email, NewPassword,
};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct SignUp {
    pub display_name: String,
    pub email: String,
    pub password: String,
    pub organization: String,
    /// An invitation token: join that organization instead of creating one.
    pub invitation: Option<String>,
}

/// The user and the organization the new session should show.
#[derive(Debug)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub org_id: Option<Uuid>,
}

/// Validates every field at once, so the form shows every problem together.
/// Everything cheap (the fields, the address's throttle, a taken email) is
/// checked before the password is hashed.
pub async fn sign_up(
    db: &PgPool,
    config: &crate::config::Config,
    input: SignUp,
    ip: &str,
    now: OffsetDateTime,
) -> Result<SignedIn, AccountsError> {
    let mut errors = Vec::new();
    let name = users::validate_display_name(&input.display_name)
        .map_err(|e| errors.push(("display_name", e)));
    let email = Email::parse(&input.email).map_err(|e| errors.push(("email", e)));
    let password = NewPassword::parse(input.password).map_err(|e| errors.push(("password", e)));
    let org_name = if input.organization.trim().is_empty() {
        Ok(None)
    } else {
        organizations::validate_name(&input.organization)
            .map(Some)
            .map_err(|e| errors.push(("organization", e)))
    };
    let (Ok(name), Ok(email), Ok(password), Ok(org_name)) = (name, email, password, org_name)
    else {
        return Err(AccountsError::Invalid(errors));
    };
    throttle::admit_address(db, throttle::Action::SignUp, ip, now).await?;
    if users::by_email(db, &email).await?.is_some() {
        return Err(users::email_taken());
    }
    let hash = password::hash(password.expose().to_string()).await?;
    let mut tx = db.begin().await?;
    let user_id = users::insert(&mut tx, &email, &name, &hash, false, now).await?;
    let org_id = match input.invitation {
        Some(token) => {
            let org = invitations::accept_in(&mut tx, &token, user_id, &email, now).await?;
            // The invitation went to this address: it is proved.
            super::verify::mark_verified(&mut tx, user_id, now).await?;
            org
        }
        None => {
            let org_name = org_name.unwrap_or_else(|| format!("{name}'s organization"));
            let org = organizations::create_with_owner(&mut tx, &org_name, user_id, now).await?;
            super::verify::send(&mut tx, config, user_id, email.as_str(), &name, now).await?;
            org
        }
    };
    crate::audit::record(
        &mut tx,
        now,
        Some(user_id),
        Some(org_id),
        crate::audit::Action::UserSignedUp,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%user_id, %org_id, "user signed up");
    Ok(SignedIn {
        user_id,
        org_id: Some(org_id),
    })
}

/// Checks the throttle, then the password. Every attempt that reaches the
/// password check is recorded; refused (throttled) attempts are not, so an
/// attacker cannot extend a lock-out forever.
pub async fn sign_in(
    db: &PgPool,
    email: &str,
    password: String,
    ip: &str,
    now: OffsetDateTime,
) -> Result<SignedIn, AccountsError> {
    let parsed = Email::parse(email);
    let key = match &parsed {
        Ok(e) => e.normalized(),
        Err(_) => email.trim().to_lowercase(),
    };
    let attempt = match throttle::begin_sign_in(db, &key, ip, now).await? {
        Ok(attempt) => attempt,
        Err(retry_after_secs) => {
            tracing::warn!(ip, "sign-in refused: throttled");
            return Err(AccountsError::Throttled { retry_after_secs });
        }
    };
    let user = match &parsed {
        Ok(e) => users::by_email(db, e).await?,
        Err(_) => None,
    };
    let ok = password::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    if ok {
        throttle::succeeded(db, attempt).await?;
    }
    match (ok, user) {
        (true, Some(user)) => {
            let org_id = organizations::default_for_user(db, user.id).await?;
            Ok(SignedIn {
                user_id: user.id,
                org_id,
            })
        }
        _ => Err(AccountsError::InvalidCredentials),
    }
}
