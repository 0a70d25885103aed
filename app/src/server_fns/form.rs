//! The one place where a form post is handled, for every form: the
//! anti-forgery token, who is posting (and whether they may), the action,
//! then the one-shot message and the redirect. A refused post leaves the
//! message and what was typed (never a password) and sends the browser back
//! to the form, so forms behave the same with JavaScript on, off, or not yet
//! loaded.

use super::ssr::{ctx, go};
use crate::backend::{Backend, Caller, FormError};
use crate::components::encode_component;
use crate::error::AppError;
use crate::types::Flash;
use http::request::Parts;
use std::future::Future;

/// Who may post a form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Anyone,
    /// Signed in.
    User,
    /// Signed in, acting in an organization.
    Member,
    /// A platform admin.
    Admin,
}

/// A form: its name (the page shows its messages next to it), the page it
/// came from, what was typed, and who may post it.
pub struct Form {
    pub name: &'static str,
    pub back: String,
    pub values: Vec<(&'static str, String)>,
    pub needs: Needs,
}

/// Where a form that went through leads, and the notice to show there
/// (with the form it belongs to; "" for the page as a whole).
pub struct Success {
    pub redirect: String,
    pub notice: Option<(&'static str, String)>,
}

impl Success {
    pub fn to(redirect: impl Into<String>) -> Self {
        Success {
            redirect: redirect.into(),
            notice: None,
        }
    }

    pub fn notice(mut self, form: &'static str, text: impl Into<String>) -> Self {
        self.notice = Some((form, text.into()));
        self
    }
}

/// What an action gets: the ports, the request and who posted.
pub struct Ctx {
    pub backend: Backend,
    pub parts: Parts,
    pub caller: Caller,
}

/// Only same-site paths are followed after a form, never another host.
pub fn safe_return_to(target: Option<&str>) -> Option<String> {
    let t = target?.trim();
    let ok = t.starts_with('/')
        && !t.starts_with("//")
        && !t.contains('\\')
        && !t.chars().any(char::is_control);
    ok.then(|| t.to_string())
}

/// The sign-in page, coming back to `back` afterwards.
pub fn sign_in_then(back: &str) -> String {
    format!("/login?return_to={}", encode_component(back))
}

/// Handles one form post (see the module doc).
pub async fn submit<F, Fut>(form: Form, csrf: &str, action: F) -> Result<(), AppError>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<Success, FormError>>,
{
    let (backend, parts) = ctx().await?;
    let web = backend.web.clone();
    let values = form
        .values
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if !web.csrf_matches(&parts, csrf).await {
        let flash = Flash {
            form: form.name.to_string(),
            error: Some("This form expired. Please send it again.".into()),
            values,
            ..Default::default()
        };
        web.set_flash(&parts, flash).await;
        return go(&form.back);
    }
    let caller = web.caller(&parts).await?;
    let signed_in = caller.user.is_some();
    match form.needs {
        Needs::Anyone => {}
        Needs::User | Needs::Member | Needs::Admin if !signed_in => {
            return go(&sign_in_then(&form.back));
        }
        Needs::Member if caller.org.is_none() => return go("/account"),
        Needs::Admin if !caller.platform_admin => return go(&form.back),
        _ => {}
    }
    let done = action(Ctx {
        backend,
        parts: parts.clone(),
        caller,
    })
    .await;
    match done {
        Ok(success) => {
            if let Some((name, text)) = success.notice {
                let flash = Flash {
                    form: name.to_string(),
                    notice: Some(text),
                    ..Default::default()
                };
                web.set_flash(&parts, flash).await;
            }
            go(&success.redirect)
        }
        Err(e) => {
            let flash = Flash {
                form: form.name.to_string(),
                error: Some(e.message),
                field_errors: e.fields.into_iter().collect(),
                values,
                ..Default::default()
            };
            web.set_flash(&parts, flash).await;
            go(&form.back)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(
            safe_return_to(Some("/account/keys?x=1")),
            Some("/account/keys?x=1".into())
        );
        assert_eq!(safe_return_to(Some("//evil.example")), None);
        assert_eq!(safe_return_to(Some("https://evil.example")), None);
        assert_eq!(safe_return_to(Some("/\\evil.example")), None);
        assert_eq!(safe_return_to(None), None);
    }
}
