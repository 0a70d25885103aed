//! Usage: the usage page, the dashboard and the request log (reads only;
//! the CSV export is a plain route of the server, `/account/usage.csv`).

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[server(endpoint = "usage")]
pub async fn get_usage(query: UsageQuery) -> Result<UsagePage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.usage.usage_page(&caller, query).await
}

#[server(endpoint = "dashboard")]
pub async fn get_dashboard() -> Result<Dashboard, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.usage.dashboard(&caller).await
}

#[server(endpoint = "logs")]
pub async fn get_log(query: LogQuery) -> Result<LogPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.usage.log_page(&caller, query).await
}

#[server(endpoint = "log_entry")]
pub async fn get_log_entry(request_id: String) -> Result<LogEntryPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.usage.log_entry(&caller, request_id).await
}
