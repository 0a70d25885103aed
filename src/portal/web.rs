//! The `Web` port: the session behind the request's cookie (its user and
//! organization, anti-forgery token and one-shot message), and who is
//! calling, re-read from the database on every request.

use super::{errors, ui_role, Portal};
use crate::accounts::organizations::{self, Membership};
use crate::accounts::sessions::{self, FLASH, ORG_ID};
use crate::accounts::users;
use app::backend::{Caller, CallerOrg, CallerUser, Web};
use app::error::AppError;
use app::types::Flash;
use http::request::Parts;
use tower_sessions::Session;
use uuid::Uuid;

impl Portal {
    fn session(&self, req: &Parts) -> Result<Session, AppError> {
        req.extensions.get::<Session>().cloned().ok_or_else(|| {
            let request_id = crate::http::request_id::of(req);
            tracing::error!(%request_id, "no session layer on this route");
            AppError::Internal { request_id }
        })
    }
}

/// The user's membership in the organization the session shows, falling
/// back to the one they chose last, then their first one (for example after
/// being removed from it).
pub(crate) async fn session_membership(
    db: &sqlx::PgPool,
    session: &Session,
    user: Uuid,
) -> Result<Option<Membership>, sqlx::Error> {
    if let Some(org) = sessions::get::<Uuid>(session, ORG_ID).await {
        if let Some(m) = organizations::membership(db, org, user).await? {
            return Ok(Some(m));
        }
    }
    match organizations::default_for_user(db, user).await? {
        Some(org) => organizations::membership(db, org, user).await,
        None => Ok(None),
    }
}

#[async_trait::async_trait]
impl Web for Portal {
    async fn caller(&self, req: &Parts) -> Result<Caller, AppError> {
        let mut caller = Caller {
            request_id: crate::http::request_id::of(req),
            client_ip: crate::http::client_ip(req, &self.state.config.trusted_proxies),
            ..Default::default()
        };
        let session = self.session(req)?;
        let Some(user_id) = sessions::user_id(&session).await else {
            return Ok(caller);
        };
        let user = users::by_id(&self.state.db, user_id)
            .await
            .map_err(|e| errors::internal(&caller, e))?;
        let Some(user) = user else {
            return Ok(caller);
        };
        let membership = session_membership(&self.state.db, &session, user_id)
            .await
            .map_err(|e| errors::internal(&caller, e))?;
        caller.platform_admin = user.is_platform_admin;
        caller.user = Some(CallerUser {
            id: user.id.to_string(),
            email: user.email,
            display_name: user.display_name,
            email_verified: user.email_verified_at.is_some(),
        });
        caller.org = membership.map(|m| CallerOrg {
            id: m.org_id.to_string(),
            name: m.org_name,
            role: ui_role(m.role),
        });
        Ok(caller)
    }

    async fn csrf_token(&self, req: &Parts) -> Result<String, AppError> {
        let session = self.session(req)?;
        sessions::csrf_token(&session).await.map_err(|e| {
            let request_id = crate::http::request_id::of(req);
            tracing::error!(%request_id, error = %e, "could not read the session's token");
            AppError::Internal { request_id }
        })
    }

    async fn csrf_matches(&self, req: &Parts, token: &str) -> bool {
        match self.session(req) {
            Ok(session) => sessions::csrf_matches(&session, token).await,
            Err(_) => false,
        }
    }

    async fn set_flash(&self, req: &Parts, flash: Flash) {
        if let Ok(session) = self.session(req) {
            if let Err(e) = session.insert(FLASH, flash).await {
                tracing::warn!(error = %e, "could not store the form message");
            }
        }
    }

    async fn take_flash(&self, req: &Parts) -> Option<Flash> {
        let session = self.session(req).ok()?;
        session.remove::<Flash>(FLASH).await.ok().flatten()
    }

    async fn start_session(
        &self,
        req: &Parts,
        user_id: &str,
        org_id: Option<&str>,
    ) -> Result<(), AppError> {
        let session = self.session(req)?;
        let internal = |e: &dyn std::fmt::Display| {
            let request_id = crate::http::request_id::of(req);
            tracing::error!(%request_id, error = %e, "could not start a session");
            AppError::Internal { request_id }
        };
        let user = Uuid::parse_str(user_id).map_err(|e| internal(&e))?;
        let org = org_id.and_then(|o| Uuid::parse_str(o).ok());
        sessions::establish(&session, user, org)
            .await
            .map_err(|e| internal(&e))
    }

    async fn switch_org(&self, req: &Parts, org_id: &str) {
        let (Ok(session), Ok(org)) = (self.session(req), Uuid::parse_str(org_id)) else {
            return;
        };
        let _ = session.insert(ORG_ID, org).await;
        // The next sign-in lands here too, while the user is a member.
        if let Some(user) = sessions::user_id(&session).await {
            if let Err(e) = organizations::remember_choice(&self.state.db, user, org).await {
                tracing::warn!(error = %e, "cannot remember the organization chosen");
            }
        }
    }

    async fn end_session(&self, req: &Parts) {
        if let Ok(session) = self.session(req) {
            if let Err(e) = session.flush().await {
                tracing::error!(error = %e, "could not end the session");
            }
        }
    }

    fn secure_cookies(&self) -> bool {
        self.state.config.secure_cookies
    }
}
