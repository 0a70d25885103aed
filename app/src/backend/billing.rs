//! Billing: the subscription, plans, cards, top-ups, limits, invoices.
//! Paying and changing plans need an owner, admin or billing member; every
//! member can look.

use super::{Caller, FormError};
use crate::error::AppError;
use crate::types::*;

/// A plan chosen on the plans page, with the amount the customer saw.
#[derive(Clone, Debug, Default)]
pub struct ChoosePlanForm {
    pub plan: String,
    pub expected_minor: String,
    pub idempotency_key: String,
}

/// A card as typed. The number and CVC are never echoed back.
#[derive(Clone, Default)]
pub struct CardForm {
    pub number: String,
    pub exp_month: String,
    pub exp_year: String,
    pub cvc: String,
    pub name: String,
    pub make_default: bool,
}

impl std::fmt::Debug for CardForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardForm([redacted])")
    }
}

/// A top-up: a pack's credits, or "custom" and the custom amount.
#[derive(Clone, Debug, Default)]
pub struct TopUpForm {
    pub choice: String,
    pub custom: String,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, Default)]
pub struct LimitsForm {
    /// Empty: no cap.
    pub spend_cap: String,
    pub low_balance_at: String,
    pub auto_enabled: bool,
    pub auto_threshold: String,
    pub auto_pack: String,
    pub auto_max: String,
    /// Percent; empty: off.
    pub warn_included_pct: String,
    pub warn_spend_cap_pct: String,
}

#[async_trait::async_trait]
pub trait Billing: Send + Sync + 'static {
    async fn plans(&self) -> Result<Vec<PlanView>, AppError>;
    async fn overview(&self, caller: &Caller) -> Result<BillingOverview, AppError>;
    async fn plans_page(&self, caller: &Caller, selected: Option<String>, renew: bool) -> Result<PlansPage, AppError>;
    /// Returns the notice.
    async fn choose_plan(&self, caller: &Caller, form: ChoosePlanForm) -> Result<String, FormError>;
    async fn cancel(&self, caller: &Caller) -> Result<String, FormError>;
    async fn start_trial(&self, caller: &Caller, plan: String) -> Result<String, FormError>;
    async fn payment_methods(&self, caller: &Caller) -> Result<PaymentMethodsPage, AppError>;
    async fn add_card(&self, caller: &Caller, form: CardForm) -> Result<String, FormError>;
    /// Saves a card a processor's browser library collected (its token).
    async fn save_card(&self, caller: &Caller, token: String, make_default: bool) -> Result<String, FormError>;
    /// The customer confirmed a payment with their bank in the browser.
    async fn confirm_payment(&self, caller: &Caller, charge: String) -> Result<String, FormError>;
    async fn set_default_card(&self, caller: &Caller, card_id: String) -> Result<String, FormError>;
    async fn remove_card(&self, caller: &Caller, card_id: String) -> Result<String, FormError>;
    async fn top_up_page(&self, caller: &Caller, credits: Option<String>) -> Result<TopUpPage, AppError>;
    async fn top_up(&self, caller: &Caller, form: TopUpForm) -> Result<String, FormError>;
    async fn limits(&self, caller: &Caller) -> Result<LimitsPage, AppError>;
    async fn save_limits(&self, caller: &Caller, form: LimitsForm) -> Result<String, FormError>;
    async fn invoices(&self, caller: &Caller) -> Result<Vec<InvoiceView>, AppError>;
    async fn invoice(&self, caller: &Caller, id: String) -> Result<InvoiceView, AppError>;
    async fn refill_sandbox(&self, caller: &Caller) -> Result<String, FormError>;
}
