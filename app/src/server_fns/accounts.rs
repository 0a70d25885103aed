//! Accounts: the viewer, signing up, in and out, password resets, members
//! and invitations.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::form::{safe_return_to, submit, Form, Needs, Success};
#[cfg(feature = "ssr")]
use crate::components::encode_component;

/// Signs the browser in as `signed`: a new session id and token. `false`
/// when the session could not be written (the form then goes elsewhere).
#[cfg(feature = "ssr")]
async fn start_session(c: &super::form::Ctx, signed: &crate::backend::SignedIn) -> bool {
    c.backend
        .web
        .start_session(&c.parts, &signed.user_id, signed.org_id.as_deref())
        .await
        .is_ok()
}

#[server(endpoint = "viewer")]
pub async fn get_viewer() -> Result<Viewer, AppError> {
    let (backend, parts) = super::ssr::ctx().await?;
    let caller = backend.web.caller(&parts).await?;
    let csrf = backend.web.csrf_token(&parts).await?;
    // Only a page render consumes the one-shot form message.
    let flash = if parts.uri.path().starts_with("/api/") {
        None
    } else {
        backend.web.take_flash(&parts).await
    };
    let orgs = if caller.user.is_some() { backend.accounts.organizations(&caller).await? } else { Vec::new() };
    let user = caller.user.map(|u| UserView {
        email: u.email,
        display_name: u.display_name,
        email_verified: u.email_verified,
        is_platform_admin: caller.platform_admin,
        org: caller.org.map(|o| OrgView {
            id: o.id,
            name: o.name,
            role: o.role.as_str().to_string(),
        }),
        orgs,
    });
    Ok(Viewer { user, csrf, flash })
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
    let invitation = invitation.filter(|s| !s.is_empty());
    let organization = organization.unwrap_or_default();
    let back = match &invitation {
        Some(t) => format!("/signup?invitation={}", encode_component(t)),
        None => "/signup".to_string(),
    };
    let form = Form {
        name: "signup",
        back: back.clone(),
        values: vec![
            ("display_name", display_name.clone()),
            ("email", email.clone()),
            ("organization", organization.clone()),
        ],
        needs: Needs::Anyone,
    };
    let input = SignUpForm {
        display_name,
        email,
        password,
        organization,
        invitation,
    };
    submit(form, &csrf, |c| async move {
        let signed = c.backend.accounts.sign_up(&c.caller, input).await?;
        if !start_session(&c, &signed).await {
            return Ok(Success::to("/login"));
        }
        Ok(Success::to("/account").notice("", "Welcome to Tollgate! Your account is ready."))
    })
    .await
}

#[server(endpoint = "sign_in")]
pub async fn sign_in(
    csrf: String,
    email: String,
    password: String,
    return_to: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::SignInForm;
    let return_to = safe_return_to(return_to.as_deref().filter(|s| !s.is_empty()));
    let back = match &return_to {
        Some(r) => format!("/login?return_to={}", encode_component(r)),
        None => "/login".to_string(),
    };
    let form = Form {
        name: "login",
        back: back.clone(),
        values: vec![("email", email.clone())],
        needs: Needs::Anyone,
    };
    submit(form, &csrf, |c| async move {
        let signed = c
            .backend
            .accounts
            .sign_in(&c.caller, SignInForm { email, password })
            .await?;
        if !start_session(&c, &signed).await {
            return Ok(Success::to(back));
        }
        Ok(Success::to(return_to.unwrap_or_else(|| "/account".into())))
    })
    .await
}

#[server(endpoint = "sign_out")]
pub async fn sign_out(csrf: String) -> Result<(), AppError> {
    let form = Form {
        name: "",
        back: "/account".into(),
        values: vec![],
        needs: Needs::Anyone,
    };
    submit(form, &csrf, |c| async move {
        // Deletes the session row and expires the cookie: the old id is dead.
        c.backend.web.end_session(&c.parts).await;
        Ok(Success::to("/login"))
    })
    .await
}

#[server(endpoint = "password_forgot")]
pub async fn request_password_reset(csrf: String, email: String) -> Result<(), AppError> {
    let back = "/password/forgot";
    let form = Form {
        name: "password_forgot",
        back: back.into(),
        values: vec![("email", email.clone())],
        needs: Needs::Anyone,
    };
    submit(form, &csrf, |c| async move {
        c.backend
            .accounts
            .request_password_reset(&c.caller, email)
            .await?;
        let text = "If an account exists for that address, we emailed it a link to choose a new password. The link works once, for one hour.";
        Ok(Success::to(back).notice("password_forgot", text))
    })
    .await
}

#[server(endpoint = "resend_verification")]
pub async fn resend_verification(csrf: String) -> Result<(), AppError> {
    let form = Form {
        name: "verify_email",
        back: "/account".into(),
        values: vec![],
        needs: Needs::User,
    };
    submit(form, &csrf, |c| async move {
        let notice = c.backend.accounts.resend_verification(&c.caller).await?;
        Ok(Success::to("/account").notice("verify_email", notice))
    })
    .await
}

#[server(endpoint = "verify_email")]
pub async fn get_email_verification(token: String) -> Result<String, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.accounts.verify_email(&caller, token).await
}

#[server(endpoint = "password_reset")]
pub async fn reset_password(csrf: String, token: String, password: String) -> Result<(), AppError> {
    use crate::backend::ResetPasswordForm;
    let form = Form {
        name: "password_reset",
        back: format!("/password/reset?token={}", encode_component(&token)),
        values: vec![],
        needs: Needs::Anyone,
    };
    submit(form, &csrf, |c| async move {
        let signed = c
            .backend
            .accounts
            .reset_password(&c.caller, ResetPasswordForm { token, password })
            .await?;
        if !start_session(&c, &signed).await {
            return Ok(Success::to("/login"));
        }
        let text = "Your password was changed, and every other session was signed out.";
        Ok(Success::to("/account").notice("", text))
    })
    .await
}

#[server(endpoint = "members")]
pub async fn get_members() -> Result<MembersPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.accounts.members(&caller).await
}

#[cfg(feature = "ssr")]
fn members_form(values: Vec<(&'static str, String)>) -> Form {
    Form {
        name: "members",
        back: "/account/members".into(),
        values,
        needs: Needs::Member,
    }
}

#[server(endpoint = "invite_member")]
pub async fn invite_member(csrf: String, email: String, role: String) -> Result<(), AppError> {
    use crate::backend::InviteForm;
    let form = members_form(vec![("email", email.clone())]);
    submit(form, &csrf, |c| async move {
        let notice = c
            .backend
            .accounts
            .invite(&c.caller, InviteForm { email, role })
            .await?;
        Ok(Success::to("/account/members").notice("members", notice))
    })
    .await
}

#[server(endpoint = "member_role")]
pub async fn change_member_role(
    csrf: String,
    user_id: String,
    role: String,
) -> Result<(), AppError> {
    use crate::backend::MemberRoleForm;
    submit(members_form(vec![]), &csrf, |c| async move {
        let notice = c
            .backend
            .accounts
            .change_role(&c.caller, MemberRoleForm { user_id, role })
            .await?;
        Ok(Success::to("/account/members").notice("members", notice))
    })
    .await
}

#[server(endpoint = "remove_member")]
pub async fn remove_member(csrf: String, user_id: String) -> Result<(), AppError> {
    submit(members_form(vec![]), &csrf, |c| async move {
        let notice = c.backend.accounts.remove_member(&c.caller, user_id).await?;
        Ok(Success::to("/account/members").notice("members", notice))
    })
    .await
}

#[server(endpoint = "revoke_invitation")]
pub async fn revoke_invitation(csrf: String, invitation_id: String) -> Result<(), AppError> {
    submit(members_form(vec![]), &csrf, |c| async move {
        let notice = c
            .backend
            .accounts
            .revoke_invitation(&c.caller, invitation_id)
            .await?;
        Ok(Success::to("/account/members").notice("members", notice))
    })
    .await
}

#[server(endpoint = "invitation")]
pub async fn get_invitation(token: String) -> Result<InvitationPreview, AppError> {
    let (backend, _) = super::ssr::ctx().await?;
    backend.accounts.invitation(token).await
}

#[server(endpoint = "accept_invitation")]
pub async fn accept_invitation(csrf: String, token: String) -> Result<(), AppError> {
    let form = Form {
        name: "invitation",
        back: format!("/invitations/{}", encode_component(&token)),
        values: vec![],
        needs: Needs::User,
    };
    submit(form, &csrf, |c| async move {
        let org = c
            .backend
            .accounts
            .accept_invitation(&c.caller, token)
            .await?;
        c.backend.web.switch_org(&c.parts, &org).await;
        Ok(Success::to("/account").notice("", "You joined the organization."))
    })
    .await
}

/// The header's organization switcher: every page then acts for the
/// organization chosen, and so does the next sign-in.
#[server(endpoint = "switch_org")]
pub async fn switch_org(csrf: String, org_id: String, return_to: Option<String>) -> Result<(), AppError> {
    let back = super::form::safe_return_to(return_to.as_deref()).unwrap_or_else(|| "/account".into());
    let form = Form { name: "switch_org", back: back.clone(), values: vec![], needs: Needs::User };
    submit(form, &csrf, |c| async move {
        let org = c.backend.accounts.choose_org(&c.caller, org_id).await?;
        c.backend.web.switch_org(&c.parts, &org).await;
        Ok(Success::to(back).notice("", "Switched organization."))
    })
    .await
}
