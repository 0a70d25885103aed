//! The port: everything the UI asks of the server, and nothing more. The root
//! crate implements it and hands it in as Leptos context, so this crate never
//! depends on the database, password hashing or anything else server-side.
//!
//! Form methods return where the browser goes next. On failure they leave a
//! [`crate::types::Flash`] in the session and send the browser back to the
//! form, so forms behave the same with JavaScript on, off, or not yet loaded.

use crate::error::AppError;
use crate::types::*;
use http::request::Parts;
use std::sync::Arc;

#[async_trait::async_trait]
pub trait PortalBackend: Send + Sync + 'static {
    /// The viewer of the current request. `take_flash` consumes the one-shot
    /// form message (only when rendering a page, not on background calls).
    async fn viewer(&self, req: &Parts, take_flash: bool) -> Result<Viewer, AppError>;

    /// Whether cookies the UI sets must be `Secure` (the portal is served
    /// over https).
    fn secure_cookies(&self) -> bool;

    async fn sign_up(&self, req: &Parts, form: SignUpForm) -> String;
    async fn sign_in(&self, req: &Parts, form: SignInForm) -> String;
    async fn sign_out(&self, req: &Parts, csrf: String) -> String;
    async fn request_password_reset(&self, req: &Parts, csrf: String, email: String) -> String;
    async fn reset_password(&self, req: &Parts, form: ResetPasswordForm) -> String;

    async fn members(&self, req: &Parts) -> Result<MembersPage, AppError>;
    async fn invite_member(&self, req: &Parts, form: InviteForm) -> String;
    async fn change_member_role(&self, req: &Parts, form: MemberRoleForm) -> String;
    async fn remove_member(&self, req: &Parts, csrf: String, user_id: String) -> String;
    async fn revoke_invitation(&self, req: &Parts, csrf: String, invitation_id: String) -> String;
    async fn invitation(&self, token: String) -> Result<InvitationPreview, AppError>;
    async fn accept_invitation(&self, req: &Parts, csrf: String, token: String) -> String;

    /// The organization's keys. `new_key` is left empty: the server function
    /// fills it from the one-shot cookie that carries a key just created.
    async fn api_keys(&self, req: &Parts) -> Result<KeysPage, AppError>;
    async fn create_api_key(&self, req: &Parts, form: CreateKeyForm) -> KeyIssued;
    async fn revoke_api_key(&self, req: &Parts, csrf: String, key_id: String) -> String;
    async fn rotate_api_key(
        &self,
        req: &Parts,
        csrf: String,
        key_id: String,
        overlap_hours: String,
    ) -> KeyIssued;

    async fn plans(&self) -> Result<Vec<PlanView>, AppError>;
    async fn billing_overview(&self, req: &Parts) -> Result<BillingOverview, AppError>;

    async fn admin_overview(&self, req: &Parts) -> Result<AdminOverview, AppError>;
    async fn admin_outbox(&self, req: &Parts) -> Result<Vec<OutboxEntry>, AppError>;
    async fn admin_routes(&self, req: &Parts) -> Result<RoutesPage, AppError>;
    /// Adds a route, or (with `route_id`) changes one.
    async fn save_route(&self, req: &Parts, form: RouteForm) -> String;
    async fn set_route_active(
        &self,
        req: &Parts,
        csrf: String,
        route_id: String,
        active: bool,
    ) -> String;

    async fn doc_page(&self, slug: String) -> Result<DocPage, AppError>;
}

/// How the backend travels in Leptos context.
pub type Backend = Arc<dyn PortalBackend>;

/// Holds a password: deliberately not `Debug`, so it cannot reach a log.
#[derive(Clone)]
pub struct SignUpForm {
    pub csrf: String,
    pub display_name: String,
    pub email: String,
    pub password: String,
    pub organization: String,
    pub invitation: Option<String>,
}

/// Holds a password: deliberately not `Debug`, so it cannot reach a log.
#[derive(Clone)]
pub struct SignInForm {
    pub csrf: String,
    pub email: String,
    pub password: String,
    pub return_to: Option<String>,
}

/// Holds a password: deliberately not `Debug`, so it cannot reach a log.
#[derive(Clone)]
pub struct ResetPasswordForm {
    pub csrf: String,
    pub token: String,
    pub password: String,
}

#[derive(Clone, Debug)]
pub struct InviteForm {
    pub csrf: String,
    pub email: String,
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct MemberRoleForm {
    pub csrf: String,
    pub user_id: String,
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct CreateKeyForm {
    pub csrf: String,
    pub name: String,
    pub mode: String,
    pub scopes: Vec<String>,
    /// "never" or a number of days.
    pub expires_in_days: String,
}

/// A provider route, as typed: a new one when `route_id` is empty.
#[derive(Clone, Debug, Default)]
pub struct RouteForm {
    pub csrf: String,
    pub route_id: String,
    pub path_prefix: String,
    pub upstream_url: String,
    pub endpoint: String,
    pub scope: String,
    pub pricing: String,
    pub price: String,
    pub rate_per_1k: String,
    pub plans: Vec<String>,
    pub timeout_ms: String,
    pub description: String,
}

/// Where the browser goes after a key form, and the new key to show once.
pub struct KeyIssued {
    pub redirect: String,
    pub secret: Option<String>,
}

impl std::fmt::Debug for KeyIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIssued")
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}
