//! Billing: plans, and the organization's subscription.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[server(endpoint = "plans")]
pub async fn get_plans() -> Result<Vec<PlanView>, AppError> {
    let (backend, _) = super::ssr::ctx().await?;
    backend.billing.plans().await
}

#[server(endpoint = "billing")]
pub async fn get_billing_overview() -> Result<BillingOverview, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.overview(&caller).await
}
