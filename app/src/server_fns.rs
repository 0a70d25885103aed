//! Server functions: thin adapters. Each one reaches the port once and
//! returns; the form ones then send the browser where the port says.
//!
//! Forms post here as plain `application/x-www-form-urlencoded` requests, so
//! they work before hydration and with JavaScript off.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
mod ssr {
    use crate::backend::Backend;
    use crate::error::AppError;
    use http::request::Parts;
    use leptos::prelude::*;

    pub async fn ctx() -> Result<(Backend, Parts), AppError> {
        let backend = use_context::<Backend>().ok_or_else(|| AppError::Internal {
            request_id: "backend-missing".into(),
        })?;
        let parts: Parts = leptos_axum::extract()
            .await
            .map_err(|e| AppError::Transport(e.to_string()))?;
        Ok((backend, parts))
    }

    /// Sends the browser on: a 302 for a plain form post, a client-side
    /// navigation for a hydrated caller.
    pub fn go(to: String) -> Result<(), AppError> {
        leptos_axum::redirect(&to);
        Ok(())
    }
}

#[server(endpoint = "viewer")]
pub async fn get_viewer() -> Result<Viewer, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    // Only a page render consumes the one-shot form message.
    let take_flash = !parts.uri.path().starts_with("/api/");
    backend.viewer(&parts, take_flash).await
}

#[server(endpoint = "sign_up")]
pub async fn sign_up(
    csrf: String,
    display_name: String,
    email: String,
    password: String,
    organization: Option<String>,
    invitation: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::SignUpForm;
    let (backend, parts) = ssr::ctx().await?;
    let form = SignUpForm {
        csrf,
        display_name,
        email,
        password,
        organization: organization.unwrap_or_default(),
        invitation: invitation.filter(|s| !s.is_empty()),
    };
    ssr::go(backend.sign_up(&parts, form).await)
}

#[server(endpoint = "sign_in")]
pub async fn sign_in(
    csrf: String,
    email: String,
    password: String,
    return_to: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::SignInForm;
    let (backend, parts) = ssr::ctx().await?;
    let form = SignInForm {
        csrf,
        email,
        password,
        return_to: return_to.filter(|s| !s.is_empty()),
    };
    ssr::go(backend.sign_in(&parts, form).await)
}

#[server(endpoint = "sign_out")]
pub async fn sign_out(csrf: String) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(backend.sign_out(&parts, csrf).await)
}

#[server(endpoint = "password_forgot")]
pub async fn request_password_reset(csrf: String, email: String) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(backend.request_password_reset(&parts, csrf, email).await)
}

#[server(endpoint = "password_reset")]
pub async fn reset_password(csrf: String, token: String, password: String) -> Result<(), AppError> {
    use crate::backend::ResetPasswordForm;
    let (backend, parts) = ssr::ctx().await?;
    let form = ResetPasswordForm {
        csrf,
        token,
        password,
    };
    ssr::go(backend.reset_password(&parts, form).await)
}

#[server(endpoint = "members")]
pub async fn get_members() -> Result<MembersPage, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    backend.members(&parts).await
}

#[server(endpoint = "invite_member")]
pub async fn invite_member(csrf: String, email: String, role: String) -> Result<(), AppError> {
    use crate::backend::InviteForm;
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(
        backend
            .invite_member(&parts, InviteForm { csrf, email, role })
            .await,
    )
}

#[server(endpoint = "member_role")]
pub async fn change_member_role(
    csrf: String,
    user_id: String,
    role: String,
) -> Result<(), AppError> {
    use crate::backend::MemberRoleForm;
    let (backend, parts) = ssr::ctx().await?;
    let form = MemberRoleForm {
        csrf,
        user_id,
        role,
    };
    ssr::go(backend.change_member_role(&parts, form).await)
}

#[server(endpoint = "remove_member")]
pub async fn remove_member(csrf: String, user_id: String) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(backend.remove_member(&parts, csrf, user_id).await)
}

#[server(endpoint = "revoke_invitation")]
pub async fn revoke_invitation(csrf: String, invitation_id: String) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(backend.revoke_invitation(&parts, csrf, invitation_id).await)
}

#[server(endpoint = "invitation")]
pub async fn get_invitation(token: String) -> Result<InvitationPreview, AppError> {
    let (backend, _) = ssr::ctx().await?;
    backend.invitation(token).await
}

#[server(endpoint = "accept_invitation")]
pub async fn accept_invitation(csrf: String, token: String) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(backend.accept_invitation(&parts, csrf, token).await)
}

#[server(endpoint = "plans")]
pub async fn get_plans() -> Result<Vec<PlanView>, AppError> {
    let (backend, _) = ssr::ctx().await?;
    backend.plans().await
}

#[server(endpoint = "billing")]
pub async fn get_billing_overview() -> Result<BillingOverview, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    backend.billing_overview(&parts).await
}

#[server(endpoint = "admin_overview")]
pub async fn get_admin_overview() -> Result<AdminOverview, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    backend.admin_overview(&parts).await
}

#[server(endpoint = "admin_outbox")]
pub async fn get_admin_outbox() -> Result<Vec<OutboxEntry>, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    backend.admin_outbox(&parts).await
}

#[server(endpoint = "doc")]
pub async fn get_doc(slug: String) -> Result<DocPage, AppError> {
    let (backend, _) = ssr::ctx().await?;
    backend.doc_page(slug).await
}

/// The cookie that carries a key just created from the form post to the page
/// that shows it once: HttpOnly, this page only, two minutes, cleared when
/// shown. The key is never stored on the server.
pub const NEW_KEY_COOKIE: &str = "tollgate_new_key";

/// The cookie's attributes: this page only, HttpOnly, same site only, and
/// `Secure` when the portal is served over https.
#[cfg(feature = "ssr")]
fn key_cookie(value: &str, max_age: u32, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{NEW_KEY_COOKIE}={value}; Path=/account/keys; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(feature = "ssr")]
fn set_cookie(cookie: &str) {
    if let (Some(res), Ok(value)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(cookie),
    ) {
        res.append_header(http::header::SET_COOKIE, value);
    }
}

#[cfg(feature = "ssr")]
fn hand_over_key(
    backend: &crate::backend::Backend,
    issued: crate::backend::KeyIssued,
) -> Result<(), AppError> {
    if let Some(secret) = issued.secret {
        set_cookie(&key_cookie(&secret, 120, backend.secure_cookies()));
    }
    ssr::go(issued.redirect)
}

#[server(endpoint = "api_keys")]
pub async fn get_api_keys() -> Result<KeysPage, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    let mut page = backend.api_keys(&parts).await?;
    let secret = parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == NEW_KEY_COOKIE)
        .map(|(_, v)| v.to_string());
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        set_cookie(&key_cookie("", 0, backend.secure_cookies()));
        if page.can_manage {
            page.new_key = Some(NewKey { secret });
        }
    }
    Ok(page)
}

#[server(endpoint = "create_api_key")]
pub async fn create_api_key(
    csrf: String,
    name: String,
    mode: String,
    /// Checkboxes named `scopes[i]`, one per scope.
    scopes: Option<Vec<String>>,
    expires_in_days: String,
) -> Result<(), AppError> {
    use crate::backend::CreateKeyForm;
    let (backend, parts) = ssr::ctx().await?;
    let form = CreateKeyForm {
        csrf,
        name,
        mode,
        scopes: scopes.unwrap_or_default(),
        expires_in_days,
    };
    let issued = backend.create_api_key(&parts, form).await;
    hand_over_key(&backend, issued)
}

#[server(endpoint = "revoke_api_key")]
pub async fn revoke_api_key(csrf: String, key_id: String) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(backend.revoke_api_key(&parts, csrf, key_id).await)
}

#[server(endpoint = "rotate_api_key")]
pub async fn rotate_api_key(
    csrf: String,
    key_id: String,
    overlap_hours: String,
) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    let issued = backend
        .rotate_api_key(&parts, csrf, key_id, overlap_hours)
        .await;
    hand_over_key(&backend, issued)
}

#[server(endpoint = "admin_routes")]
pub async fn get_admin_routes() -> Result<RoutesPage, AppError> {
    let (backend, parts) = ssr::ctx().await?;
    backend.admin_routes(&parts).await
}

#[server(endpoint = "save_route")]
#[allow(clippy::too_many_arguments)]
pub async fn save_route(
    csrf: String,
    /// Empty or absent: a new route.
    route_id: Option<String>,
    path_prefix: String,
    upstream_url: String,
    endpoint: String,
    scope: String,
    pricing: String,
    price: String,
    rate_per_1k: Option<String>,
    /// Checkboxes named `plans[i]`; none ticked means every plan.
    plans: Option<Vec<String>>,
    timeout_ms: Option<String>,
    description: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::RouteForm;
    let (backend, parts) = ssr::ctx().await?;
    let form = RouteForm {
        csrf,
        route_id: route_id.unwrap_or_default(),
        path_prefix,
        upstream_url,
        endpoint,
        scope,
        pricing,
        price,
        rate_per_1k: rate_per_1k.unwrap_or_default(),
        plans: plans.unwrap_or_default(),
        timeout_ms: timeout_ms.unwrap_or_default(),
        description: description.unwrap_or_default(),
    };
    ssr::go(backend.save_route(&parts, form).await)
}

#[server(endpoint = "set_route_active")]
pub async fn set_route_active(
    csrf: String,
    route_id: String,
    active: String,
) -> Result<(), AppError> {
    let (backend, parts) = ssr::ctx().await?;
    ssr::go(
        backend
            .set_route_active(&parts, csrf, route_id, active == "true")
            .await,
    )
}
