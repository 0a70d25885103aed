//! The `Accounts` port: signing up and in, password resets, members and
//! invitations.

use super::{date, date_time, errors, form_member, member, Portal};
use crate::accounts::{invitations, organizations, reset, signin, AccountsError, Role};
use app::backend::{
    Accounts, Caller, FormError, InviteForm, MemberRoleForm, ResetPasswordForm, SignInForm,
    SignUpForm, SignedIn,
};
use app::error::AppError;
use app::types::{InvitationPreview, InvitationView, MemberView, MembersPage};
use uuid::Uuid;

fn signed_in(user: Uuid, org: Option<Uuid>) -> SignedIn {
    SignedIn {
        user_id: user.to_string(),
        org_id: org.map(|o| o.to_string()),
    }
}

/// An id typed into a form: one that does not parse names nothing.
fn id(raw: &str) -> Result<Uuid, AccountsError> {
    Uuid::parse_str(raw.trim()).map_err(|_| AccountsError::NotFound)
}

#[async_trait::async_trait]
impl Accounts for Portal {
    async fn sign_up(&self, caller: &Caller, form: SignUpForm) -> Result<SignedIn, FormError> {
        let input = signin::SignUp {
            display_name: form.display_name,
            email: form.email,
            password: form.password,
            organization: form.organization,
            invitation: form.invitation,
        };
        signin::sign_up(&self.state.db, &self.state.config, input, &caller.client_ip, self.now())
            .await
            .map(|s| signed_in(s.user_id, s.org_id))
            .map_err(|e| errors::form(caller, e))
    }

    async fn sign_in(&self, caller: &Caller, form: SignInForm) -> Result<SignedIn, FormError> {
        let db = &self.state.db;
        signin::sign_in(
            db,
            &form.email,
            form.password,
            &caller.client_ip,
            self.now(),
        )
        .await
        .map(|s| signed_in(s.user_id, s.org_id))
        .map_err(|e| errors::form(caller, e))
    }

    async fn request_password_reset(
        &self,
        caller: &Caller,
        email: String,
    ) -> Result<(), FormError> {
        let (db, config) = (&self.state.db, &self.state.config);
        reset::request(db, config, &email, &caller.client_ip, self.now())
            .await
            .map_err(|e| errors::form(caller, e))
    }

    async fn resend_verification(&self, caller: &Caller) -> Result<String, FormError> {
        let user = caller
            .user
            .as_ref()
            .and_then(|u| Uuid::parse_str(&u.id).ok())
            .ok_or_else(|| FormError::message("Sign in first."))?;
        let sent = crate::accounts::verify::resend(&self.state.db, &self.state.config, user, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        match sent {
            crate::accounts::verify::Resent::Sent => Ok("We sent you a new link; it works for two days.".into()),
            crate::accounts::verify::Resent::AlreadyVerified => Ok("Your address is confirmed already.".into()),
            crate::accounts::verify::Resent::Wait(secs) => Err(FormError::message(format!(
                "A link went out a moment ago; you can ask for another in {}.",
                if secs < 120 { format!("{secs} seconds") } else if secs < 7200 { format!("{} minutes", secs / 60) } else { format!("{} hours", secs / 3600) }
            ))),
        }
    }

    async fn verify_email(&self, caller: &Caller, token: String) -> Result<String, AppError> {
        match crate::accounts::verify::confirm(&self.state.db, &token, self.now()).await {
            Ok(_) => Ok("Your email address is confirmed. You can start a free trial from the plans page.".into()),
            Err(crate::accounts::AccountsError::InvalidToken) => Err(AppError::Invalid(
                "This link is invalid, used already or expired. Ask for a new one on your account page.".into(),
            )),
            Err(crate::accounts::AccountsError::Db(e)) => Err(errors::page(caller, e)),
            Err(e) => Err(errors::internal(caller, e)),
        }
    }

    async fn reset_password(
        &self,
        caller: &Caller,
        form: ResetPasswordForm,
    ) -> Result<SignedIn, FormError> {
        let db = &self.state.db;
        let user = reset::reset(
            db,
            &form.token,
            form.password,
            &caller.client_ip,
            self.now(),
        )
        .await
        .map_err(|e| errors::form(caller, e))?;
        let org = organizations::default_for_user(db, user)
            .await
            .ok()
            .flatten();
        Ok(signed_in(user, org))
    }

    async fn members(&self, caller: &Caller) -> Result<MembersPage, AppError> {
        let m = member(caller)?;
        // Who belongs and their addresses are the managers' to see.
        if !m.role.manages_members() {
            return Err(AppError::Forbidden);
        }
        let db = &self.state.db;
        let members = organizations::members(db, m.org)
            .await
            .map_err(|e| errors::page(caller, e))?;
        let invitations = if m.role.manages_members() {
            invitations::list_open(db, m.org, self.now())
                .await
                .map_err(|e| errors::page(caller, e))?
        } else {
            Vec::new()
        };
        Ok(MembersPage {
            org_name: m.org_name.clone(),
            my_role: m.role.as_str().to_string(),
            can_manage: m.role.manages_members(),
            can_grant_owner: m.role == Role::Owner,
            members: members
                .into_iter()
                .map(|x| MemberView {
                    user_id: x.user_id.to_string(),
                    is_you: x.user_id == m.user,
                    email: x.email,
                    display_name: x.display_name,
                    role: x.role.as_str().to_string(),
                    joined: date(x.created_at),
                })
                .collect(),
            invitations: invitations
                .into_iter()
                .map(|i| InvitationView {
                    id: i.id.to_string(),
                    email: i.email,
                    role: i.role.as_str().to_string(),
                    expires: date_time(i.expires_at),
                })
                .collect(),
        })
    }

    async fn invite(&self, caller: &Caller, form: InviteForm) -> Result<String, FormError> {
        let m = form_member(caller)?;
        let (db, config) = (&self.state.db, &self.state.config);
        let now = self.now();
        invitations::invite(
            db,
            config,
            m.org,
            m.user,
            m.role,
            &form.email,
            &form.role,
            now,
        )
        .await
        .map_err(|e| errors::form(caller, e))?;
        Ok(format!("Invitation sent to {}.", form.email.trim()))
    }

    async fn change_role(
        &self,
        caller: &Caller,
        form: MemberRoleForm,
    ) -> Result<String, FormError> {
        let m = form_member(caller)?;
        let result = match (id(&form.user_id), Role::parse(&form.role)) {
            (Ok(target), Some(role)) => {
                let db = &self.state.db;
                organizations::change_role(db, m.org, m.user, m.role, target, role, self.now())
                    .await
            }
            (Err(e), _) => Err(e),
            (_, None) => Err(AccountsError::field("role", "Choose a role.")),
        };
        result.map_err(|e| errors::form(caller, e))?;
        Ok("Role changed.".into())
    }

    async fn remove_member(&self, caller: &Caller, user_id: String) -> Result<String, FormError> {
        let m = form_member(caller)?;
        let result = match id(&user_id) {
            Ok(target) => {
                let db = &self.state.db;
                organizations::remove(db, m.org, m.user, m.role, target, self.now()).await
            }
            Err(e) => Err(e),
        };
        result.map_err(|e| errors::form(caller, e))?;
        Ok("Member removed. Their access ended at once.".into())
    }

    async fn revoke_invitation(
        &self,
        caller: &Caller,
        invitation_id: String,
    ) -> Result<String, FormError> {
        let m = form_member(caller)?;
        let result = match id(&invitation_id) {
            Ok(inv) => {
                let db = &self.state.db;
                invitations::revoke(db, m.org, m.user, m.role, inv, self.now()).await
            }
            Err(e) => Err(e),
        };
        result.map_err(|e| errors::form(caller, e))?;
        Ok("Invitation revoked.".into())
    }

    async fn invitation(&self, token: String) -> Result<InvitationPreview, AppError> {
        match invitations::preview(&self.state.db, &token, self.now()).await {
            Ok(i) => Ok(InvitationPreview {
                org_name: i.org_name,
                email: i.email,
                role: i.role.as_str().to_string(),
            }),
            Err(AccountsError::InvalidToken) => Err(AppError::Invalid(
                "This invitation is invalid, was already used, or has expired. Ask for a new one."
                    .into(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "could not load an invitation");
                Err(AppError::Internal {
                    request_id: "invitation".into(),
                })
            }
        }
    }

    async fn accept_invitation(&self, caller: &Caller, token: String) -> Result<String, FormError> {
        let user = caller
            .user()
            .map_err(|e| FormError::message(e.to_string()))?;
        let user = id(&user.id).map_err(|e| errors::form(caller, e))?;
        invitations::accept(&self.state.db, &token, user, self.now())
            .await
            .map(|org| org.to_string())
            .map_err(|e| errors::form(caller, e))
    }

    async fn organizations(&self, caller: &Caller) -> Result<Vec<app::types::OrgView>, AppError> {
        let user = caller.user()?;
        let id = Uuid::parse_str(&user.id).map_err(|e| errors::internal(caller, e))?;
        let rows = organizations::of_user(&self.state.db, id).await.map_err(|e| errors::page(caller, e))?;
        Ok(rows
            .into_iter()
            .map(|m| app::types::OrgView { id: m.org_id.to_string(), name: m.org_name, role: super::ui_role(m.role).as_str().to_string() })
            .collect())
    }

    async fn choose_org(&self, caller: &Caller, org_id: String) -> Result<String, FormError> {
        let user = caller.user().map_err(|e| FormError::message(e.to_string()))?;
        let user = Uuid::parse_str(&user.id).map_err(|e| FormError::message(errors::internal(caller, e).to_string()))?;
        let gone = || FormError::message("You are not a member of that organization.");
        let org = crate::admin::parse_id(&org_id).ok_or_else(gone)?;
        // Only an organization the user belongs to (`Web::switch_org` then
        // remembers it for their next sign-in).
        let chosen = organizations::membership(&self.state.db, org, user)
            .await
            .map_err(|e| FormError::message(errors::internal(caller, e).to_string()))?
            .map(|m| m.org_id);
        chosen.map(|o| o.to_string()).ok_or_else(gone)
    }
}
