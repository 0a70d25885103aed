//! The admin console: counts, the email outbox, provider routes.

use super::{Caller, FormError};
use crate::error::AppError;
use crate::types::{AdminOverview, ApprovalView, OutboxEntry, RoutesPage};

/// A provider route, as typed: a new one when `route_id` is empty.
#[derive(Clone, Debug, Default)]
pub struct RouteForm {
    pub route_id: String,
    pub path_prefix: String,
    pub upstream_url: String,
    pub endpoint: String,
    pub scope: String,
    pub pricing: String,
    pub price: String,
    pub rate_per_1k: String,
    pub plans: Vec<String>,
    pub timeout_ms: String,
    pub description: String,
    pub test_upstream_url: String,
    pub test_example: String,
}

#[async_trait::async_trait]
pub trait Admin: Send + Sync + 'static {
    async fn overview(&self, caller: &Caller) -> Result<AdminOverview, AppError>;
    async fn outbox(&self, caller: &Caller) -> Result<Vec<OutboxEntry>, AppError>;
    async fn routes(&self, caller: &Caller) -> Result<RoutesPage, AppError>;
    /// Adds a route, or (with `route_id`) changes one; returns the notice.
    async fn save_route(&self, caller: &Caller, form: RouteForm) -> Result<String, FormError>;
    /// Subscriptions waiting for approval.
    async fn approvals(&self, caller: &Caller) -> Result<Vec<ApprovalView>, AppError>;
    /// Approves or rejects one, with a note for the customer.
    async fn decide_approval(
        &self,
        caller: &Caller,
        org_id: String,
        request: String,
        approve: bool,
        note: String,
    ) -> Result<String, FormError>;
    async fn set_route_active(
        &self,
        caller: &Caller,
        route_id: String,
        active: bool,
    ) -> Result<String, FormError>;
}
