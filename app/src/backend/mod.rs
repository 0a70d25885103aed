//! The ports: everything the UI asks of the server, one trait per area, and
//! nothing more. The root crate implements them (`src/portal/`) and hands
//! them in as Leptos context ([`Backend`]), so this crate never depends on
//! the database, password hashing or anything else server-side.
//!
//! Area methods take a typed [`Caller`] (who is asking) and a typed form, and
//! return data (or an [`AppError`]) or, for forms, what to say
//! ([`FormError`] on failure). Sessions, the anti-forgery token, the one-shot
//! form message and redirects are not theirs: [`web::Web`] reaches the
//! session, and `server_fns::form` is the one place that checks tokens,
//! leaves messages and redirects, for every form.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod docs;
pub mod keys;
pub mod usage;
pub mod web;

pub use accounts::*;
pub use admin::*;
pub use billing::*;
pub use docs::*;
pub use keys::*;
pub use usage::*;
pub use web::*;

use crate::error::AppError;
use std::sync::Arc;

/// A member's role in an organization, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Billing,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Billing => "billing",
        }
    }
}

/// The signed-in user of a request.
#[derive(Clone, Debug)]
pub struct CallerUser {
    pub id: String,
    pub email: String,
    pub display_name: String,
    /// The address was confirmed (a link followed, or an invitation).
    pub email_verified: bool,
}

/// The organization the request acts in, and the user's role there.
#[derive(Clone, Debug)]
pub struct CallerOrg {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// Who is asking: resolved once per request from the session and the
/// database (a removed member has no organization on their next request).
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub request_id: String,
    /// The client's address (see `TOLLGATE_TRUSTED_PROXIES`), for throttles.
    pub client_ip: String,
    pub user: Option<CallerUser>,
    pub org: Option<CallerOrg>,
    pub platform_admin: bool,
}

impl Caller {
    /// The user, or "sign in first".
    pub fn user(&self) -> Result<&CallerUser, AppError> {
        self.user.as_ref().ok_or(AppError::NotSignedIn)
    }

    /// The user and their organization, or why not.
    pub fn member(&self) -> Result<(&CallerUser, &CallerOrg), AppError> {
        let user = self.user()?;
        Ok((user, self.org.as_ref().ok_or(AppError::Forbidden)?))
    }

    /// A platform admin, or why not.
    pub fn admin(&self) -> Result<&CallerUser, AppError> {
        let user = self.user()?;
        if self.platform_admin {
            Ok(user)
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// Why a form was refused: a message for the form, and messages next to
/// its fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FormError {
    pub message: String,
    /// (field, message)
    pub fields: Vec<(String, String)>,
}

impl FormError {
    pub fn message(message: impl Into<String>) -> Self {
        FormError {
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

/// Every port, as the UI finds them in Leptos context.
#[derive(Clone)]
pub struct Backend {
    pub web: Arc<dyn Web>,
    pub accounts: Arc<dyn Accounts>,
    pub keys: Arc<dyn Keys>,
    pub billing: Arc<dyn Billing>,
    pub usage: Arc<dyn Usage>,
    pub docs: Arc<dyn Docs>,
    pub admin: Arc<dyn Admin>,
}
