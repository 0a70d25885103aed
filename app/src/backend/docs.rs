//! Docs rendered from the markdown in `content/` and the OpenAPI document,
//! their search, and what the explorer needs.

use super::Caller;
use crate::error::AppError;
use crate::types::{DocPage, ExplorerSetup, SearchResults};

#[async_trait::async_trait]
pub trait Docs: Send + Sync + 'static {
    /// A page, personalised for a signed-in reader (their key prefix in the
    /// samples; whether their plan includes an endpoint and its price).
    async fn page(&self, caller: &Caller, slug: String) -> Result<DocPage, AppError>;
    async fn search(&self, query: String) -> Result<SearchResults, AppError>;
    /// The explorer's endpoints, the caller's keys and a CSRF token.
    async fn explorer(&self, caller: &Caller, csrf: String) -> Result<ExplorerSetup, AppError>;
}
