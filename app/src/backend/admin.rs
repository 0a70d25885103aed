//! The operator's console: the overview and 402 recovery, organizations
//! (suspension, credit adjustments), plans, the audit log, the email
//! outbox, provider routes, approvals. Every method is for platform admins
//! only, and says so first.

use super::{Caller, FormError};
use crate::error::AppError;
use crate::types::{
    AdminHome, ApprovalView, AuditPage, AuditQuery, OrgListPage, OrgPage, OutboxEntry, PlansAdminPage,
    ReconcilePage, ReconcileQuery, RecoveryPage, RecoveryQuery, RoutesPage,
};

/// A refund, as typed.
#[derive(Clone, Debug, Default)]
pub struct RefundForm {
    pub org_id: String,
    pub invoice_id: String,
    /// In the invoice's currency, such as "10.00"; empty for all that is left.
    pub amount: String,
    pub reason: String,
    pub idempotency_key: String,
}

/// A credit adjustment, as typed.
#[derive(Clone, Debug, Default)]
pub struct AdjustForm {
    pub org_id: String,
    /// "included" or "purchased".
    pub account: String,
    /// "add" or "remove".
    pub direction: String,
    pub amount: String,
    pub reason: String,
    pub idempotency_key: String,
}

/// A plan, as typed: a new one when `plan_id` is empty.
#[derive(Clone, Debug, Default)]
pub struct PlanForm {
    pub plan_id: String,
    pub code: String,
    pub name: String,
    pub price: String,
    pub currency: String,
    pub included_credits: String,
    pub rate_limit_per_sec: String,
    pub endpoints: Vec<String>,
    pub requires_approval: bool,
    pub trial_days: String,
    pub visible: bool,
    pub signup: bool,
}

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
    async fn home(&self, caller: &Caller) -> Result<AdminHome, AppError>;
    async fn recovery(&self, caller: &Caller, query: RecoveryQuery) -> Result<RecoveryPage, AppError>;
    async fn orgs(&self, caller: &Caller, q: String) -> Result<OrgListPage, AppError>;
    /// One organization; an id that names none (in any spelling) is "not found".
    async fn org(&self, caller: &Caller, id: String) -> Result<OrgPage, AppError>;
    /// Returns the notice.
    async fn adjust_credits(&self, caller: &Caller, form: AdjustForm) -> Result<String, FormError>;
    async fn set_keys_suspended(&self, caller: &Caller, org_id: String, suspend: bool, reason: String) -> Result<String, FormError>;
    /// Refunds (part of) a paid invoice through the processor; the notice.
    async fn refund_invoice(&self, caller: &Caller, form: RefundForm) -> Result<String, FormError>;
    /// Tollgate's charges and refunds of a period beside the processor's.
    async fn reconcile(&self, caller: &Caller, query: ReconcileQuery) -> Result<ReconcilePage, AppError>;
    async fn audit(&self, caller: &Caller, query: AuditQuery) -> Result<AuditPage, AppError>;
    /// The audit log's entries of the filters as CSV (at most 50,000).
    async fn audit_csv(&self, caller: &Caller, query: AuditQuery) -> Result<String, AppError>;
    async fn plans(&self, caller: &Caller) -> Result<PlansAdminPage, AppError>;
    async fn save_plan(&self, caller: &Caller, form: PlanForm) -> Result<String, FormError>;
    async fn set_plan_archived(&self, caller: &Caller, plan_id: String, archive: bool) -> Result<String, FormError>;
}
