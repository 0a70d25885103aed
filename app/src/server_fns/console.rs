//! The operator's console: the overview, 402 recovery, organizations,
//! plans and the audit log (the CSV export is a plain route of the server,
//! `/admin/audit.csv`). Every function reaches a port method that refuses
//! anyone but a platform admin; the forms also say `Needs::Admin`.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::form::{submit, Form, Needs, Success};

#[server(endpoint = "admin_home")]
pub async fn get_admin_home() -> Result<AdminHome, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.home(&caller).await
}

#[server(endpoint = "admin_recovery")]
pub async fn get_admin_recovery(query: RecoveryQuery) -> Result<RecoveryPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.recovery(&caller, query).await
}

#[server(endpoint = "admin_orgs")]
pub async fn get_admin_orgs(q: String) -> Result<OrgListPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.orgs(&caller, q).await
}

#[server(endpoint = "admin_org")]
pub async fn get_admin_org(id: String) -> Result<OrgPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.org(&caller, id).await
}

#[server(endpoint = "admin_audit")]
pub async fn get_admin_audit(query: AuditQuery) -> Result<AuditPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.audit(&caller, query).await
}

#[server(endpoint = "admin_plans")]
pub async fn get_admin_plans() -> Result<PlansAdminPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.plans(&caller).await
}

#[server(endpoint = "admin_reconcile")]
pub async fn get_admin_reconcile(query: ReconcileQuery) -> Result<ReconcilePage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.reconcile(&caller, query).await
}

/// The organization's page, for an id as posted (only ids go into the path).
#[cfg(feature = "ssr")]
fn org_page(org_id: &str) -> String {
    let id: String = org_id.chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').take(36).collect();
    format!("/admin/orgs/{id}")
}

#[server(endpoint = "adjust_credits")]
pub async fn adjust_credits(
    csrf: String,
    org_id: String,
    account: Option<String>,
    direction: Option<String>,
    amount: String,
    reason: String,
    idempotency_key: String,
) -> Result<(), AppError> {
    use crate::backend::AdjustForm;
    let back = org_page(&org_id);
    let form = AdjustForm {
        org_id,
        account: account.unwrap_or_default(),
        direction: direction.unwrap_or_default(),
        amount,
        reason,
        idempotency_key,
    };
    let spec = Form {
        name: "adjust",
        back: back.clone(),
        values: vec![
            ("account", form.account.clone()),
            ("direction", form.direction.clone()),
            ("amount", form.amount.clone()),
            ("reason", form.reason.clone()),
        ],
        needs: Needs::Admin,
    };
    submit(spec, &csrf, |c| async move {
        let notice = c.backend.admin.adjust_credits(&c.caller, form).await?;
        Ok(Success::to(back).notice("adjust", notice))
    })
    .await
}

#[server(endpoint = "refund_invoice")]
pub async fn refund_invoice(
    csrf: String,
    org_id: String,
    invoice_id: String,
    amount: Option<String>,
    reason: String,
    idempotency_key: String,
) -> Result<(), AppError> {
    use crate::backend::RefundForm;
    let back = format!("{}#refund", org_page(&org_id));
    let form = RefundForm { org_id, invoice_id, amount: amount.unwrap_or_default(), reason, idempotency_key };
    let spec = Form {
        name: "refund",
        back: back.clone(),
        values: vec![("amount", form.amount.clone()), ("reason", form.reason.clone()), ("invoice_id", form.invoice_id.clone())],
        needs: Needs::Admin,
    };
    submit(spec, &csrf, |c| async move {
        let notice = c.backend.admin.refund_invoice(&c.caller, form).await?;
        Ok(Success::to(back).notice("refund", notice))
    })
    .await
}

#[server(endpoint = "set_keys_suspended")]
pub async fn set_keys_suspended(csrf: String, org_id: String, suspend: String, reason: Option<String>) -> Result<(), AppError> {
    let back = org_page(&org_id);
    let reason = reason.unwrap_or_default();
    let spec = Form { name: "suspend", back: back.clone(), values: vec![("reason", reason.clone())], needs: Needs::Admin };
    submit(spec, &csrf, |c| async move {
        let notice = c.backend.admin.set_keys_suspended(&c.caller, org_id, suspend == "true", reason).await?;
        Ok(Success::to(back).notice("suspend", notice))
    })
    .await
}

#[server(endpoint = "save_plan")]
#[allow(clippy::too_many_arguments)]
pub async fn save_plan(
    csrf: String,
    plan_id: Option<String>,
    code: Option<String>,
    name: String,
    price: String,
    currency: String,
    included_credits: String,
    rate_limit_per_sec: String,
    /// Checkboxes named `endpoints[i]`.
    endpoints: Option<Vec<String>>,
    requires_approval: Option<String>,
    trial_days: Option<String>,
    visible: Option<String>,
    signup: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::PlanForm;
    let form = PlanForm {
        plan_id: plan_id.unwrap_or_default().trim().to_string(),
        code: code.unwrap_or_default(),
        name,
        price,
        currency,
        included_credits,
        rate_limit_per_sec,
        endpoints: endpoints.unwrap_or_default(),
        requires_approval: requires_approval.is_some(),
        trial_days: trial_days.unwrap_or_default(),
        visible: visible.is_some(),
        signup: signup.is_some(),
    };
    let back = match form.plan_id.as_str() {
        "" => "/admin/plans#plan-new".to_string(),
        id if id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => format!("/admin/plans?edit={id}#plan-form"),
        _ => return super::ssr::go("/admin/plans"),
    };
    let flag = |b: bool| if b { "on".to_string() } else { String::new() };
    let spec = Form {
        name: "plan",
        back,
        values: vec![
            ("code", form.code.clone()),
            ("name", form.name.clone()),
            ("price", form.price.clone()),
            ("currency", form.currency.clone()),
            ("included_credits", form.included_credits.clone()),
            ("rate_limit_per_sec", form.rate_limit_per_sec.clone()),
            ("endpoints", form.endpoints.join(",")),
            ("requires_approval", flag(form.requires_approval)),
            ("trial_days", form.trial_days.clone()),
            ("visible", flag(form.visible)),
            ("signup", flag(form.signup)),
        ],
        needs: Needs::Admin,
    };
    submit(spec, &csrf, |c| async move {
        let notice = c.backend.admin.save_plan(&c.caller, form).await?;
        Ok(Success::to("/admin/plans").notice("plans", notice))
    })
    .await
}

#[server(endpoint = "set_plan_archived")]
pub async fn set_plan_archived(csrf: String, plan_id: String, archive: String) -> Result<(), AppError> {
    let spec = Form { name: "plans", back: "/admin/plans".into(), values: vec![], needs: Needs::Admin };
    submit(spec, &csrf, |c| async move {
        let notice = c.backend.admin.set_plan_archived(&c.caller, plan_id, archive == "true").await?;
        Ok(Success::to("/admin/plans").notice("plans", notice))
    })
    .await
}
