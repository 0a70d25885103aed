//! Usage: balances, the usage page and its export, the dashboard, the
//! request log. Every member sees usage; developers and up see the log. An
//! id of another organization (a key, a request) is "not found", whatever
//! its form.

use super::Caller;
use crate::error::AppError;
use crate::types::{Balances, Dashboard, LogEntryPage, LogPage, LogQuery, UsagePage, UsageQuery};

#[async_trait::async_trait]
pub trait Usage: Send + Sync + 'static {
    /// The live balance (included and purchased) and the sandbox's.
    async fn balances(&self, caller: &Caller) -> Result<Balances, AppError>;
    async fn usage_page(&self, caller: &Caller, query: UsageQuery) -> Result<UsagePage, AppError>;
    /// The usage page's numbers as CSV: one line per bucket, endpoint, mode,
    /// outcome and code; its sums are the page's.
    async fn usage_csv(&self, caller: &Caller, query: UsageQuery) -> Result<String, AppError>;
    async fn dashboard(&self, caller: &Caller) -> Result<Dashboard, AppError>;
    async fn log_page(&self, caller: &Caller, query: LogQuery) -> Result<LogPage, AppError>;
    async fn log_entry(&self, caller: &Caller, request_id: String) -> Result<LogEntryPage, AppError>;
}
