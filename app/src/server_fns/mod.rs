//! Server functions, grouped by area: thin adapters that reach one port and
//! return. Every form goes through [`form`], the one place that checks the
//! anti-forgery token, resolves who is posting, leaves the one-shot message
//! and sends the browser on.
//!
//! Forms post here as plain `application/x-www-form-urlencoded` requests, so
//! they work before hydration and with JavaScript off.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod console;
pub mod docs;
#[cfg(feature = "ssr")]
pub mod form;
pub mod keys;
pub mod usage;

pub use accounts::*;
pub use admin::*;
pub use billing::*;
pub use console::*;
pub use docs::*;
pub use keys::*;
pub use usage::*;

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use crate::backend::{Backend, Caller};
    use crate::error::AppError;
    use http::request::Parts;
    use leptos::prelude::*;

    /// The ports and the request.
    pub async fn ctx() -> Result<(Backend, Parts), AppError> {
        let backend = use_context::<Backend>().ok_or_else(|| AppError::Internal {
            request_id: "backend-missing".into(),
        })?;
        let parts: Parts = leptos_axum::extract()
            .await
            .map_err(|e| AppError::Transport(e.to_string()))?;
        Ok((backend, parts))
    }

    /// The ports and who is asking.
    pub async fn caller() -> Result<(Backend, Caller), AppError> {
        let (backend, parts) = ctx().await?;
        let caller = backend.web.caller(&parts).await?;
        Ok((backend, caller))
    }

    /// Sends the browser on: a 302 for a plain form post, a client-side
    /// navigation for a hydrated caller.
    pub fn go(to: &str) -> Result<(), AppError> {
        leptos_axum::redirect(to);
        Ok(())
    }
}
