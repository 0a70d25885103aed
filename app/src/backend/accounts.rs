//! Accounts: signing up and in, password resets, members and invitations.

use super::{Caller, FormError};
use crate::error::AppError;
use crate::types::{InvitationPreview, MembersPage};

/// Holds a password: deliberately not `Debug`, so it cannot reach a log.
#[derive(Clone)]
pub struct SignUpForm {
    pub display_name: String,
    pub email: String,
    pub password: String,
    pub organization: String,
    pub invitation: Option<String>,
}

/// Holds a password: deliberately not `Debug`, so it cannot reach a log.
#[derive(Clone)]
pub struct SignInForm {
    pub email: String,
    pub password: String,
}

/// Holds a password: deliberately not `Debug`, so it cannot reach a log.
#[derive(Clone)]
pub struct ResetPasswordForm {
    pub token: String,
    pub password: String,
}

#[derive(Clone, Debug)]
pub struct InviteForm {
    pub email: String,
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct MemberRoleForm {
    pub user_id: String,
    pub role: String,
}

/// Who a session should be signed in as.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub user_id: String,
    pub org_id: Option<String>,
}

#[async_trait::async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn sign_up(&self, caller: &Caller, form: SignUpForm) -> Result<SignedIn, FormError>;
    async fn sign_in(&self, caller: &Caller, form: SignInForm) -> Result<SignedIn, FormError>;
    /// Emails a reset link if the address has an account; says the same either way.
    async fn request_password_reset(&self, caller: &Caller, email: String)
        -> Result<(), FormError>;
    /// Sets the new password and ends every session of the user.
    async fn reset_password(
        &self,
        caller: &Caller,
        form: ResetPasswordForm,
    ) -> Result<SignedIn, FormError>;

    /// Sends another email-verification link; returns the notice.
    async fn resend_verification(&self, caller: &Caller) -> Result<String, FormError>;
    /// Follows an email-verification link: what to tell the reader.
    async fn verify_email(&self, caller: &Caller, token: String) -> Result<String, AppError>;

    async fn members(&self, caller: &Caller) -> Result<MembersPage, AppError>;
    /// Returns the notice to show.
    async fn invite(&self, caller: &Caller, form: InviteForm) -> Result<String, FormError>;
    async fn change_role(&self, caller: &Caller, form: MemberRoleForm)
        -> Result<String, FormError>;
    async fn remove_member(&self, caller: &Caller, user_id: String) -> Result<String, FormError>;
    async fn revoke_invitation(
        &self,
        caller: &Caller,
        invitation_id: String,
    ) -> Result<String, FormError>;
    async fn invitation(&self, token: String) -> Result<InvitationPreview, AppError>;
    /// Joins the invitation's organization; returns its id.
    async fn accept_invitation(&self, caller: &Caller, token: String) -> Result<String, FormError>;
    /// Every organization the user belongs to, for the switcher.
    async fn organizations(&self, caller: &Caller) -> Result<Vec<crate::types::OrgView>, AppError>;
    /// Makes `org_id` the organization the user acts in, now and at their
    /// next sign-in, when they belong to it; returns its id.
    async fn choose_org(&self, caller: &Caller, org_id: String) -> Result<String, FormError>;
}
