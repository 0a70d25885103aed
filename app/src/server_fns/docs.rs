//! Docs.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[server(endpoint = "doc")]
pub async fn get_doc(slug: String) -> Result<DocPage, AppError> {
    let (backend, _) = super::ssr::ctx().await?;
    backend.docs.page(slug).await
}
