//! The `Billing` port: the plans, and the organization's subscription.

use super::{date, errors, member, Portal};
use app::backend::{Billing, Caller};
use app::error::AppError;
use app::types::{BillingOverview, PlanView};

fn plan_view(p: &crate::billing::plans::Plan) -> PlanView {
    PlanView {
        code: p.code.clone(),
        name: p.name.clone(),
        price: crate::billing::format_money(p.price_minor, &p.currency),
        included_credits: p.included_credits,
        rate_limit_per_sec: p.rate_limit_per_sec,
        requires_approval: p.requires_approval,
        endpoints: p.endpoints.clone(),
    }
}

#[async_trait::async_trait]
impl Billing for Portal {
    async fn plans(&self) -> Result<Vec<PlanView>, AppError> {
        let plans = crate::billing::plans::list_active(&self.state.db)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not list plans");
                AppError::Internal {
                    request_id: "plans".into(),
                }
            })?;
        Ok(plans.iter().map(plan_view).collect())
    }

    async fn overview(&self, caller: &Caller) -> Result<BillingOverview, AppError> {
        let m = member(caller)?;
        let db = &self.state.db;
        let current = crate::billing::subscriptions::current(db, m.org)
            .await
            .map_err(|e| errors::page(caller, e))?
            .ok_or_else(|| errors::internal(caller, "organization without a subscription"))?;
        let plans = crate::billing::plans::list_active(db)
            .await
            .map_err(|e| errors::page(caller, e))?;
        Ok(BillingOverview {
            org_name: m.org_name.clone(),
            plan: plan_view(&current.plan),
            status: current.status.as_str().to_string(),
            period_start: date(current.period_start),
            period_end: date(current.period_end),
            plans: plans.iter().map(plan_view).collect(),
        })
    }
}
