//! The request's plumbing: the session behind the cookie, its anti-forgery
//! token and one-shot form message, and who is calling.

use super::Caller;
use crate::error::AppError;
use crate::types::Flash;
use http::request::Parts;

#[async_trait::async_trait]
pub trait Web: Send + Sync + 'static {
    /// Who sends this request, re-read from the database.
    async fn caller(&self, req: &Parts) -> Result<Caller, AppError>;
    /// The session's anti-forgery token (made on first use).
    async fn csrf_token(&self, req: &Parts) -> Result<String, AppError>;
    async fn csrf_matches(&self, req: &Parts, token: &str) -> bool;
    /// Leaves the one-shot message the next page shows.
    async fn set_flash(&self, req: &Parts, flash: Flash);
    /// Takes the one-shot message (a page render does).
    async fn take_flash(&self, req: &Parts) -> Option<Flash>;
    /// Signs `user_id` in on this browser: a new session id, a new token.
    async fn start_session(
        &self,
        req: &Parts,
        user_id: &str,
        org_id: Option<&str>,
    ) -> Result<(), AppError>;
    /// The organization the session acts in from now on.
    async fn switch_org(&self, req: &Parts, org_id: &str);
    /// Ends the session on the server and expires its cookie.
    async fn end_session(&self, req: &Parts);
    /// Whether cookies must be `Secure` (the portal is served over https).
    fn secure_cookies(&self) -> bool;
}
