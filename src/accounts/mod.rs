//! Accounts: users and their passwords, browser sessions, sign-in throttling,
//! password resets, organizations, memberships and invitations.
//!
//! This module owns the rules (who may do what, what input is valid); it does
//! not know about HTML or Leptos. `portal::errors` turns its errors into
//! messages next to form fields.

pub mod invitations;
pub mod organizations;
pub mod password;
pub mod reset;
pub mod sessions;
pub mod signin;
pub mod throttle;
pub mod users;
pub mod verify;

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Input that failed validation: (field, message) pairs.
    #[error("invalid input")]
    Invalid(Vec<(&'static str, String)>),
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins")]
    Throttled { retry_after_secs: i64 },
    /// Too many attempts at `action` (as people read it) from one address.
    #[error("too many {action} from one address")]
    AddressThrottled {
        action: &'static str,
        retry_after_secs: i64,
    },
    #[error("the link is invalid or has expired")]
    InvalidToken,
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl AccountsError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        AccountsError::Invalid(vec![(field, message.into())])
    }
}

/// A syntactically valid email address, trimmed. Compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("Enter your email address.".into());
        }
        let valid = s.len() <= 254
            && !s.chars().any(char::is_whitespace)
            && match s.rsplit_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains('@')
                }
                None => false,
            };
        if valid {
            Ok(Email(s.to_string()))
        } else {
            Err("Enter an email address like name@example.com.".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for look-ups and throttling keys.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password that meets the rules. Its `Debug` is redacted.
#[derive(Clone)]
pub struct NewPassword(String);

pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 256;

impl NewPassword {
    pub fn parse(raw: String) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_LEN {
            Err(format!("Use at least {MIN_PASSWORD_LEN} characters."))
        } else if chars > MAX_PASSWORD_LEN {
            Err(format!("Use at most {MAX_PASSWORD_LEN} characters."))
        } else if raw.trim().is_empty() {
            Err("A password cannot be only spaces.".into())
        } else {
            Ok(NewPassword(raw))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

/// A member's role in an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Billing,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "billing" => Some(Role::Billing),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Billing => "billing",
        }
    }

    /// Owners, admins and developers read the request log (every member
    /// sees usage).
    pub fn reads_request_log(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Developer)
    }

    /// Owners and admins manage members.
    pub fn manages_members(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Owners, admins and developers manage and use the organization's keys.
    pub fn manages_keys(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Developer)
    }

    /// Owners, admins and billing members see billing, pay and change plans.
    pub fn manages_billing(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Billing)
    }
}

crate::text_sqlx!(Role);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_parsing() {
        assert!(Email::parse(" Ada@Example.com ").is_ok());
        assert_eq!(
            Email::parse("Ada@Example.com").unwrap().normalized(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn password_rules() {
        assert!(NewPassword::parse("short".into()).is_err());
        assert!(NewPassword::parse("          ".into()).is_err());
        assert!(NewPassword::parse("long enough pass".into()).is_ok());
        assert_eq!(
            format!("{:?}", NewPassword::parse("secret-secret".into()).unwrap()),
            "NewPassword([redacted])"
        );
    }
}
