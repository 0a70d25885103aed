//! Billing: the subscription and its fix pages. Every fix page's forms carry
//! `return_to` (a path on this site), and lead back to their page with it,
//! so the page can offer the way back after success.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::form::{safe_return_to, submit, Form, Needs, Success};

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

#[server(endpoint = "billing_plans")]
pub async fn get_plans_page(plan: Option<String>, renew: bool) -> Result<PlansPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.plans_page(&caller, plan, renew).await
}

#[server(endpoint = "billing_payment_methods")]
pub async fn get_payment_methods() -> Result<PaymentMethodsPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.payment_methods(&caller).await
}

#[server(endpoint = "billing_top_up")]
pub async fn get_top_up_page(credits: Option<String>) -> Result<TopUpPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.top_up_page(&caller, credits).await
}

#[server(endpoint = "billing_limits")]
pub async fn get_limits() -> Result<LimitsPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.limits(&caller).await
}

#[server(endpoint = "billing_invoices")]
pub async fn get_invoices() -> Result<Vec<InvoiceView>, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.invoices(&caller).await
}

#[server(endpoint = "billing_invoice")]
pub async fn get_invoice(id: String) -> Result<InvoiceView, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.billing.invoice(&caller, id).await
}

/// `path`, keeping a safe `return_to` (and any other query pairs).
#[cfg(feature = "ssr")]
fn page(path: &str, pairs: &[(&str, String)], return_to: &Option<String>) -> String {
    let mut query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", crate::components::encode_component(v)))
        .collect();
    if let Some(r) = safe_return_to(return_to.as_deref()) {
        query.push(format!("return_to={}", crate::components::encode_component(&r)));
    }
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

#[cfg(feature = "ssr")]
fn billing_form(name: &'static str, back: String, values: Vec<(&'static str, String)>) -> Form {
    Form {
        name,
        back,
        values,
        needs: Needs::Member,
    }
}

#[server(endpoint = "choose_plan")]
pub async fn choose_plan(
    csrf: String,
    plan: String,
    expected_minor: Option<String>,
    idempotency_key: String,
    return_to: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::ChoosePlanForm;
    let back = page("/billing/plans", &[("plan", plan.clone())], &return_to);
    let form = ChoosePlanForm {
        plan: plan.clone(),
        expected_minor: expected_minor.unwrap_or_default(),
        idempotency_key,
    };
    let done = page("/billing/plans", &[], &return_to);
    submit(billing_form("plans", back, vec![("plan", plan)]), &csrf, |c| async move {
        let notice = c.backend.billing.choose_plan(&c.caller, form).await?;
        Ok(Success::to(done).notice("plans", notice))
    })
    .await
}

#[server(endpoint = "cancel_subscription")]
pub async fn cancel_subscription(csrf: String, return_to: Option<String>) -> Result<(), AppError> {
    let back = page("/billing/plans", &[], &return_to);
    submit(billing_form("plans", back.clone(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.cancel(&c.caller).await?;
        Ok(Success::to(back).notice("plans", notice))
    })
    .await
}

#[server(endpoint = "start_trial")]
pub async fn start_trial(csrf: String, plan: String, return_to: Option<String>) -> Result<(), AppError> {
    let back = page("/billing/plans", &[], &return_to);
    submit(billing_form("plans", back.clone(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.start_trial(&c.caller, plan).await?;
        Ok(Success::to(back).notice("plans", notice))
    })
    .await
}

#[server(endpoint = "add_card")]
#[allow(clippy::too_many_arguments)]
pub async fn add_card(
    csrf: String,
    number: String,
    exp_month: String,
    exp_year: String,
    cvc: String,
    name: String,
    make_default: Option<String>,
    return_to: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::CardForm;
    let back = page("/billing/payment-methods", &[], &return_to);
    // What was typed comes back after a refusal, except the CVC (never) and
    // a card number that passes the checks (it would rest in the session):
    // a mistyped number is no card's number, so it can be shown to fix.
    let values = vec![
        ("exp_month", exp_month.clone()),
        ("exp_year", exp_year.clone()),
        ("name", name.clone()),
    ];
    // The card number never comes back (it would rest in the session
    // store), mistyped or not; nor does the CVC.
    let form = CardForm {
        number,
        exp_month,
        exp_year,
        cvc,
        name,
        make_default: make_default.is_some(),
    };
    submit(billing_form("cards", back.clone(), values), &csrf, |c| async move {
        let notice = c.backend.billing.add_card(&c.caller, form).await?;
        Ok(Success::to(back).notice("cards", notice))
    })
    .await
}

/// A card the processor's browser library collected: only its token comes.
#[server(endpoint = "save_card")]
pub async fn save_card(csrf: String, token: String, make_default: Option<String>, return_to: Option<String>) -> Result<(), AppError> {
    let back = page("/billing/payment-methods", &[], &return_to);
    submit(billing_form("cards", back.clone(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.save_card(&c.caller, token, make_default.is_some()).await?;
        Ok(Success::to(back).notice("cards", notice))
    })
    .await
}

/// The customer confirmed a payment with their bank (on the invoice's page).
#[server(endpoint = "confirm_payment")]
pub async fn confirm_payment(csrf: String, charge: String, invoice: String) -> Result<(), AppError> {
    let back = format!("/billing/invoices/{}", invoice.trim().chars().filter(|c| c.is_ascii_hexdigit() || *c == '-').collect::<String>());
    submit(billing_form("invoice", back.clone(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.confirm_payment(&c.caller, charge).await?;
        Ok(Success::to(back).notice("invoice", notice))
    })
    .await
}

#[server(endpoint = "set_default_card")]
pub async fn set_default_card(csrf: String, card_id: String, return_to: Option<String>) -> Result<(), AppError> {
    let back = page("/billing/payment-methods", &[], &return_to);
    submit(billing_form("cards", back.clone(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.set_default_card(&c.caller, card_id).await?;
        Ok(Success::to(back).notice("cards", notice))
    })
    .await
}

#[server(endpoint = "remove_card")]
pub async fn remove_card(csrf: String, card_id: String, return_to: Option<String>) -> Result<(), AppError> {
    let back = page("/billing/payment-methods", &[], &return_to);
    submit(billing_form("cards", back.clone(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.remove_card(&c.caller, card_id).await?;
        Ok(Success::to(back).notice("cards", notice))
    })
    .await
}

#[server(endpoint = "top_up")]
pub async fn top_up(
    csrf: String,
    choice: String,
    custom: Option<String>,
    idempotency_key: String,
    return_to: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::TopUpForm;
    let custom = custom.unwrap_or_default();
    let credits = if choice == "custom" { custom.clone() } else { choice.clone() };
    let back = page("/billing/top-up", &[("credits", credits)], &return_to);
    let done = page("/billing/top-up", &[], &return_to);
    let form = TopUpForm {
        choice: choice.clone(),
        custom: custom.clone(),
        idempotency_key,
    };
    submit(
        billing_form("top_up", back, vec![("choice", choice), ("custom", custom)]),
        &csrf,
        |c| async move {
            let notice = c.backend.billing.top_up(&c.caller, form).await?;
            Ok(Success::to(done).notice("top_up", notice))
        },
    )
    .await
}

#[server(endpoint = "save_limits")]
#[allow(clippy::too_many_arguments)]
pub async fn save_limits(
    csrf: String,
    spend_cap: String,
    low_balance_at: String,
    auto_enabled: Option<String>,
    auto_threshold: Option<String>,
    auto_pack: Option<String>,
    auto_max: Option<String>,
    warn_included_pct: Option<String>,
    warn_spend_cap_pct: Option<String>,
    return_to: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::LimitsForm;
    let back = page("/billing/limits", &[], &return_to);
    let form = LimitsForm {
        spend_cap: spend_cap.clone(),
        low_balance_at: low_balance_at.clone(),
        auto_enabled: auto_enabled.is_some(),
        auto_threshold: auto_threshold.clone().unwrap_or_default(),
        auto_pack: auto_pack.clone().unwrap_or_default(),
        auto_max: auto_max.clone().unwrap_or_default(),
        warn_included_pct: warn_included_pct.clone().unwrap_or_default(),
        warn_spend_cap_pct: warn_spend_cap_pct.clone().unwrap_or_default(),
    };
    let values = vec![
        ("spend_cap", spend_cap),
        ("low_balance_at", low_balance_at),
        ("auto_enabled", if form.auto_enabled { "on".into() } else { String::new() }),
        ("auto_threshold", auto_threshold.unwrap_or_default()),
        ("auto_pack", auto_pack.unwrap_or_default()),
        ("auto_max", auto_max.unwrap_or_default()),
        ("warn_included_pct", warn_included_pct.unwrap_or_default()),
        ("warn_spend_cap_pct", warn_spend_cap_pct.unwrap_or_default()),
    ];
    submit(billing_form("limits", back.clone(), values), &csrf, |c| async move {
        let notice = c.backend.billing.save_limits(&c.caller, form).await?;
        Ok(Success::to(back).notice("limits", notice))
    })
    .await
}

#[server(endpoint = "refill_sandbox")]
pub async fn refill_sandbox(csrf: String) -> Result<(), AppError> {
    submit(billing_form("sandbox", "/billing".into(), vec![]), &csrf, |c| async move {
        let notice = c.backend.billing.refill_sandbox(&c.caller).await?;
        Ok(Success::to("/billing").notice("sandbox", notice))
    })
    .await
}
