//! Docs, search and the explorer's set-up.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[server(endpoint = "doc")]
pub async fn get_doc(slug: String) -> Result<DocPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.docs.page(&caller, slug).await
}

#[server(endpoint = "search_docs")]
pub async fn search_docs(query: String) -> Result<SearchResults, AppError> {
    let (backend, _) = super::ssr::ctx().await?;
    backend.docs.search(query).await
}

#[server(endpoint = "explorer_setup")]
pub async fn get_explorer() -> Result<ExplorerSetup, AppError> {
    let (backend, parts) = super::ssr::ctx().await?;
    let caller = backend.web.caller(&parts).await?;
    let csrf = if caller.user.is_some() { backend.web.csrf_token(&parts).await? } else { String::new() };
    backend.docs.explorer(&caller, csrf).await
}
