//! The implementation of the UI's ports (`app::backend`), one file per
//! area; `errors` turns domain errors into what the UI shows, in one place.
//!
//! Every method takes the [`Caller`] the web layer resolved, checks what the
//! caller may do, calls the domain once, and returns data or a form error.
//! Nothing here touches the session: that is [`web`]'s.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod console;
pub mod docs;
pub mod errors;
pub mod explorer;
pub mod keys;
pub mod usage;
pub mod visits;
pub mod web;

use crate::state::AppState;
use app::backend::{Backend, Caller, FormError, Role};
use app::error::AppError;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// The ports' implementation: one value shared by all of them.
#[derive(Clone)]
pub struct Portal {
    state: AppState,
}

impl Portal {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Every port, for Leptos context.
    pub fn backend(state: AppState) -> Backend {
        let portal = Arc::new(Portal::new(state));
        Backend {
            web: portal.clone(),
            accounts: portal.clone(),
            keys: portal.clone(),
            billing: portal.clone(),
            usage: portal.clone(),
            docs: portal.clone(),
            admin: portal,
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.state.clock.now()
    }
}

/// The domain's role as the UI names it, and back.
pub fn ui_role(role: crate::accounts::Role) -> Role {
    use crate::accounts::Role as R;
    match role {
        R::Owner => Role::Owner,
        R::Admin => Role::Admin,
        R::Developer => Role::Developer,
        R::Billing => Role::Billing,
    }
}

pub fn domain_role(role: Role) -> crate::accounts::Role {
    use crate::accounts::Role as R;
    match role {
        Role::Owner => R::Owner,
        Role::Admin => R::Admin,
        Role::Developer => R::Developer,
        Role::Billing => R::Billing,
    }
}

/// A signed-in member acting in their organization, with ids parsed.
pub struct Member {
    pub user: Uuid,
    pub org: Uuid,
    pub org_name: String,
    pub role: crate::accounts::Role,
}

/// The caller as a member, or why not.
pub fn member(caller: &Caller) -> Result<Member, AppError> {
    let (user, org) = caller.member()?;
    let parse = |s: &str| {
        Uuid::parse_str(s).map_err(|_| AppError::Internal {
            request_id: caller.request_id.clone(),
        })
    };
    Ok(Member {
        user: parse(&user.id)?,
        org: parse(&org.id)?,
        org_name: org.name.clone(),
        role: domain_role(org.role),
    })
}

/// [`member`], for a form.
pub fn form_member(caller: &Caller) -> Result<Member, FormError> {
    member(caller).map_err(|e| FormError::message(e.to_string()))
}

fn date(t: OffsetDateTime) -> String {
    format!("{} {}, {}", t.month(), t.day(), t.year())
}

fn date_time(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", date(t), t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    /// The files of a source folder, with their text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn the_portal_runs_no_sql_of_its_own() {
        let needle = ["sqlx", "::query"].concat();
        for (path, text) in sources("src/portal") {
            assert!(!text.contains(&needle), "{path} runs SQL: read models belong to the domain");
        }
    }

    #[test]
    fn only_the_processor_module_knows_which_processor_takes_payments() {
        // Billing speaks to `dyn Processor`: switching processors is
        // configuration (state.rs chooses), never a change to billing.
        let named = [["processor", "::stripe"].concat(), ["processor", "::sandbox"].concat(), ["Stripe", "::"].concat(), ["Sandbox", "::"].concat(), ["\"", "stripe\""].concat()];
        for (path, text) in sources("src/billing") {
            if path.contains("/billing/processor/") {
                continue;
            }
            for n in &named {
                assert!(!text.contains(n.as_str()), "{path} names a processor ({n})");
            }
        }
    }

    #[test]
    fn billing_never_sees_the_application_state_nor_imports_its_users() {
        // The gateway, usage and the portal use billing; billing uses none
        // of them (no import circle), and never the application state.
        let banned = [["crate", "::state"].concat(), ["App", "State"].concat(), ["crate", "::gateway"].concat(), ["crate", "::usage"].concat(), ["crate", "::portal"].concat()];
        for (path, text) in sources("src/billing") {
            for b in &banned {
                assert!(!text.contains(b.as_str()), "{path} uses {b}");
            }
        }
    }
}
