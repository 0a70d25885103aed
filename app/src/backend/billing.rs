//! Billing: the plans, and the organization's plan, status and period.

use super::Caller;
use crate::error::AppError;
use crate::types::{BillingOverview, PlanView};

#[async_trait::async_trait]
pub trait Billing: Send + Sync + 'static {
    async fn plans(&self) -> Result<Vec<PlanView>, AppError>;
    async fn overview(&self, caller: &Caller) -> Result<BillingOverview, AppError>;
}
