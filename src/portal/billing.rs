//! The `Billing` port: the subscription and its fixes. Everyone in the
//! organization can look; owners, admins and billing members pay.

use super::{date, date_time, errors, form_member, member, Member, Portal};
use crate::billing::changes::{self, Change, Changed};
use crate::billing::payments::Collected;
use crate::billing::policy::{CUSTOM_MAX, CUSTOM_MIN, PACK_PRICES};
use crate::billing::subscriptions::Status;
use crate::billing::topups::{self, group, Limits, CURRENCY};
use crate::billing::{cards, format_money, processor, BillingError};
use app::backend::{Billing, Caller, CardForm, ChoosePlanForm, FormError, LimitsForm, TopUpForm};
use app::error::AppError;
use app::types::*;
use uuid::Uuid;

fn plan_view(p: &crate::billing::plans::Plan) -> PlanView {
    PlanView {
        code: p.code.clone(),
        name: p.name.clone(),
        price: format_money(p.price_minor, &p.currency),
        included_credits: p.included_credits,
        rate_limit_per_sec: p.rate_limit_per_sec,
        requires_approval: p.requires_approval,
        endpoints: p.endpoints.clone(),
        trial_days: p.trial_days,
    }
}

/// The member, if they may pay and change plans.
/// The member, if they may see billing (owners, admins, billing members).
fn billing_reader(caller: &Caller) -> Result<Member, AppError> {
    let m = member(caller)?;
    if m.role.manages_billing() {
        Ok(m)
    } else {
        Err(AppError::Forbidden)
    }
}

fn payer(caller: &Caller) -> Result<Member, FormError> {
    let m = form_member(caller)?;
    if m.role.manages_billing() {
        Ok(m)
    } else {
        Err(FormError::message("Only owners, admins and billing members can change billing."))
    }
}

fn card_view(c: &cards::SavedCard) -> CardView {
    CardView {
        id: c.id.to_string(),
        brand: c.brand.clone(),
        last4: c.last4.clone(),
        expiry: format!("{:02}/{}", c.exp_month, c.exp_year),
        is_default: c.is_default,
    }
}

fn packs() -> Vec<PackView> {
    PACK_PRICES
        .iter()
        .map(|(credits, price)| PackView {
            credits: *credits,
            price: format_money(*price, CURRENCY),
        })
        .collect()
}

fn line_views(lines: &[crate::billing::payments::Line], currency: &str) -> Vec<LineView> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| LineView {
            no: i as i32 + 1,
            description: l.description.clone(),
            quantity: l.quantity,
            unit: format_money(l.unit_minor, currency),
            amount: format_money(l.quantity * l.unit_minor, currency),
        })
        .collect()
}

fn key() -> String {
    Uuid::new_v4().simple().to_string()
}

/// What a paid (or pending, or failed) collection means to the customer.
fn paid_or(c: Collected, paid: String) -> Result<String, FormError> {
    match c {
        Collected::Paid => Ok(paid),
        Collected::Pending => Ok("Your payment is processing; this page shows the result when it arrives.".into()),
        Collected::ActionRequired(_) => Ok(CONFIRM.into()),
        Collected::Failed(r) => Err(FormError::message(format!(
            "{} ({}{})",
            r.message(),
            r.code,
            r.decline_code.map(|d| format!(": {d}")).unwrap_or_default()
        ))),
    }
}

use crate::billing::views::{self, InvoiceRecord};
use crate::billing::payments::{InvoiceStatus, Purpose};

async fn meters(db: &sqlx::PgPool, org: Uuid, now: time::OffsetDateTime) -> Result<views::Meters, sqlx::Error> {
    views::meters(db, org, now).await
}

fn invoice_view(r: InvoiceRecord) -> InvoiceView {
    let currency = r.currency;
    let failed = r.status == InvoiceStatus::Failed;
    InvoiceView {
        id: r.id.to_string(),
        number: r.number,
        purpose: match r.purpose {
            Purpose::TopUp => "Credit top-up",
            Purpose::AutoTopUp => "Automatic top-up",
            Purpose::Proration => "Upgrade (prorated)",
            Purpose::Renewal => "Subscription renewal",
            Purpose::Subscription => "Subscription",
        }
        .into(),
        failure: failed.then(|| processor::message(r.failure_code.as_deref().unwrap_or(""), r.decline_code.as_deref()).to_string()),
        status: r.status.as_str().to_string(),
        total: format_money(r.total_minor, &currency),
        created: date_time(r.created_at),
        paid: r.paid_at.map(date_time),
        failure_code: r.failure_code,
        decline_code: r.decline_code,
        lines: r
            .lines
            .into_iter()
            .map(|l| LineView {
                no: l.line_no,
                description: l.description,
                quantity: l.quantity,
                unit: format_money(l.unit_minor, &currency),
                amount: format_money(l.amount_minor, &currency),
            })
            .collect(),
        refunded: {
            let sent: i64 = r.refunds.iter().filter(|x| x.status == "succeeded").map(|x| x.amount_minor).sum();
            (sent > 0).then(|| format_money(sent, &currency))
        },
        refunds: r
            .refunds
            .iter()
            .map(|x| RefundView {
                amount: format_money(x.amount_minor, &currency),
                reason: x.reason.clone(),
                status: x.status.clone(),
                date: date_time(x.at),
            })
            .collect(),
        awaiting_confirmation: r.awaiting_confirmation.is_some(),
        confirm: None,
        currency,
        org_name: r.org_name,
    }
}

fn library_view(l: processor::BrowserLibrary) -> BrowserLibraryView {
    BrowserLibraryView { script: l.script.to_string(), publishable_key: l.publishable_key, client_secret: l.client_secret }
}

/// The sentence for every refusal code, for the browser library's errors
/// (the same words as the server's).
fn sentences() -> String {
    let map: std::collections::BTreeMap<&str, &str> = processor::CODES
        .iter()
        .map(|c| (*c, processor::message(c, Some(c))))
        .chain([("_", processor::message("", None))])
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

async fn invoice_views(db: &sqlx::PgPool, org: Uuid, only: Option<Uuid>, owed_failed: bool) -> Result<Vec<InvoiceView>, sqlx::Error> {
    Ok(views::invoices(db, org, only, owed_failed).await?.into_iter().map(invoice_view).collect())
}

fn int(field: &'static str, value: &str, min: i64, max: i64, what: &str) -> Result<i64, (&'static str, String)> {
    let cleaned: String = value.trim().chars().filter(|c| *c != ',' && *c != '_').collect();
    match cleaned.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err((field, format!("{what} is a whole number from {} to {}.", group(min), group(max)))),
    }
}

#[async_trait::async_trait]
impl Billing for Portal {
    async fn plans(&self) -> Result<Vec<PlanView>, AppError> {
        let plans = crate::billing::plans::list_active(&self.state.db).await.map_err(|e| {
            tracing::error!(error = %e, "could not list plans");
            AppError::Internal { request_id: "plans".into() }
        })?;
        Ok(plans.iter().map(plan_view).collect())
    }

    async fn overview(&self, caller: &Caller) -> Result<BillingOverview, AppError> {
        let m = billing_reader(caller)?;
        let db = &self.state.db;
        let now = self.now();
        let page = |e| errors::page(caller, e);
        let sub = crate::billing::subscriptions::current(db, m.org)
            .await
            .map_err(page)?
            .ok_or_else(|| errors::internal(caller, "organization without a subscription"))?;
        let plans = crate::billing::plans::list_active(db).await.map_err(page)?;
        let meters = meters(db, m.org, now).await.map_err(page)?;
        let cards = cards::list(&self.state.billing, m.org).await.map_err(page)?;
        let default_card = cards.iter().find(|c| c.is_default).map(card_view);
        let failure = crate::billing::payments::last_failure(db, m.org).await.map_err(page)?;
        let mut banners = Vec::new();
        let fix_card = Some(("Update your card".to_string(), "/billing/payment-methods?return_to=/billing".to_string()));
        let failure_text = failure
            .as_ref()
            .map(|(c, d)| format!(" ({})", processor::message(c, d.as_deref())))
            .unwrap_or_default();
        match sub.status {
            Status::PastDue => banners.push(Banner {
                kind: "past_due".into(),
                text: format!(
                    "Your renewal payment failed{failure_text}. Calls keep working until {} (grace period); after that they are refused until the payment succeeds.",
                    sub.grace_until.map(date_time).unwrap_or_default()
                ),
                link: fix_card.clone(),
            }),
            Status::Unpaid => banners.push(Banner {
                kind: "unpaid".into(),
                text: format!("Your subscription is unpaid{failure_text}: calls are refused (402 subscription_past_due) until the payment succeeds."),
                link: fix_card.clone(),
            }),
            Status::PendingApproval => banners.push(Banner {
                kind: "pending_approval".into(),
                text: format!(
                    "Your {} plan is waiting for approval by our team{}. We will email you the decision.",
                    sub.plan.name,
                    sub.fallback_plan.as_ref().map(|p| format!("; until then your {} plan keeps working", p.name)).unwrap_or_default()
                ),
                link: None,
            }),
            Status::Canceled if now < sub.period_end => banners.push(Banner {
                kind: "canceled".into(),
                text: format!("Your subscription is canceled and ends on {}. You can keep it until then.", date(sub.period_end)),
                link: Some(("Keep my plan".into(), format!("/billing/plans?plan={}", sub.plan.code))),
            }),
            Status::Expired | Status::Canceled => banners.push(Banner {
                kind: "expired".into(),
                text: "Your subscription has ended: live calls are refused (402 subscription_expired).".into(),
                link: Some(("Renew".into(), "/billing/plans?renew=1&return_to=/billing".into())),
            }),
            Status::Trialing => {
                let end = sub.trial_end.unwrap_or(sub.period_end);
                let (text, link) = if default_card.is_some() {
                    (format!("Your {} trial ends on {}; your card is charged then.", sub.plan.name, date(end)), None)
                } else if now >= end {
                    (
                        format!("Your {} trial has ended: add a card to keep calling (402 payment_method_required until then).", sub.plan.name),
                        Some(("Add a card".to_string(), "/billing/payment-methods?return_to=/billing".to_string())),
                    )
                } else {
                    (
                        format!("Your {} trial ends on {}. Add a card to keep the plan.", sub.plan.name, date(end)),
                        Some(("Add a card".to_string(), "/billing/payment-methods?return_to=/billing".to_string())),
                    )
                };
                banners.push(Banner { kind: "trial".into(), text, link });
            }
            Status::Active => {}
        }
        if sub.status != Status::PendingApproval {
            if let (Some(note), Some(at)) = (&sub.decision_note, sub.requested_at) {
                if now - at < time::Duration::days(30) && !note.is_empty() {
                    banners.push(Banner {
                        kind: "decision".into(),
                        text: format!("Our team's note on your plan request: {note}"),
                        link: None,
                    });
                }
            }
        }
        // Warnings crossed (low balance, included credits, spend cap).
        let outlook = crate::usage::outlook::outlook(db, m.org, now).await.map_err(|e| errors::page(caller, e))?;
        let outlook = super::usage::outlook_view(&outlook, "/billing");
        banners.extend(outlook.warnings.iter().cloned());
        let next_plan = sub.next_plan.as_ref().unwrap_or(&sub.plan);
        let next_charge = match sub.status {
            Status::Active | Status::PastDue | Status::Trialing if next_plan.price_minor > 0 => Some(format!(
                "{} on {}{}",
                format_money(next_plan.price_minor, &next_plan.currency),
                date(sub.period_end),
                sub.next_plan.as_ref().map(|p| format!(" (moving to the {} plan)", p.name)).unwrap_or_default()
            )),
            _ => None,
        };
        Ok(BillingOverview {
            org_name: m.org_name.clone(),
            plan: plan_view(&sub.plan),
            status: sub.status.as_str().to_string(),
            period_start: date(sub.period_start),
            period_end: date(sub.period_end),
            plans: plans.iter().map(plan_view).collect(),
            can_manage: m.role.manages_billing(),
            included_credits: meters.included,
            included_expires: meters.included_expires.map(date).unwrap_or_default(),
            purchased_credits: meters.purchased,
            sandbox_credits: meters.sandbox,
            next_charge,
            default_card,
            banners,
            period_spent: meters.period_spent,
            spend_cap: meters.spend_cap,
            outlook,
        })
    }

    async fn plans_page(&self, caller: &Caller, selected: Option<String>, renew: bool) -> Result<PlansPage, AppError> {
        let db = &self.state.db;
        let m = match billing_reader(caller) {
            Ok(m) => m,
            // Visitors see the catalogue, and sign up to choose.
            Err(AppError::NotSignedIn) => {
                let plans = crate::billing::plans::list_active(db).await.map_err(|e| errors::page(caller, e))?;
                return Ok(PlansPage {
                    can_manage: false,
                    status: String::new(),
                    current: String::new(),
                    options: plans
                        .iter()
                        .map(|p| PlanOption {
                            selected: selected.as_deref() == Some(p.code.as_str()),
                            plan: plan_view(p),
                            action: PlanAction::Signup,
                            amount: None,
                            amount_minor: None,
                            lines: vec![],
                            note: "Sign up to start on the free plan; change plans at any time.".into(),
                        })
                        .collect(),
                    renew: false,
                    trial: None,
                    has_card: true,
                    can_cancel: false,
                    period_end: String::new(),
                    idempotency_key: String::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let now = self.now();
        let page = |e| errors::page(caller, e);
        let sub = crate::billing::subscriptions::current(db, m.org)
            .await
            .map_err(page)?
            .ok_or_else(|| errors::internal(caller, "organization without a subscription"))?;
        let plans = crate::billing::plans::list_active(db).await.map_err(page)?;
        let has_card = cards::list(&self.state.billing, m.org).await.map_err(page)?.iter().any(|c| c.is_default);
        let ended = sub.has_ended(now);
        let selected = selected.or_else(|| (renew && ended).then(|| sub.plan.code.clone()));
        let options = plans
            .iter()
            .map(|p| {
                let (action, amount, lines, note) = match changes::change(&sub, p, now) {
                    Change::Current if sub.status == Status::Canceled => (PlanAction::Keep, None, vec![], "Canceled: ends at the period's end unless you keep it.".to_string()),
                    Change::Current if sub.next_plan.is_some() => (PlanAction::Keep, None, vec![], format!("Moving to {} at the period's end unless you keep this plan.", sub.next_plan.as_ref().map(|n| n.name.clone()).unwrap_or_default())),
                    Change::Current => (PlanAction::Current, None, vec![], "Your plan.".to_string()),
                    Change::Upgrade(q) => (
                        PlanAction::Upgrade,
                        Some(q.total_minor),
                        line_views(&q.lines, &p.currency),
                        format!(
                            "Applies at once. You pay the difference for the {} of {} days left in this period{}.",
                            q.remaining_days,
                            q.period_days,
                            if q.credits > 0 { format!(", and get {} more included credits now", group(q.credits)) } else { String::new() }
                        ),
                    ),
                    Change::Downgrade(at) => (PlanAction::Downgrade, None, vec![], format!("Takes effect on {}; nothing is charged now.", date(at))),
                    Change::NeedsApproval => (PlanAction::Approval, None, vec![], "Needs approval by our team; you are charged when it is approved.".to_string()),
                    Change::Renew(price) => (PlanAction::Renew, Some(price), vec![], "Starts a new month today.".to_string()),
                    Change::Withdraw => (PlanAction::Withdraw, None, vec![], format!("Withdraw your request for {} and stay on this plan.", sub.plan.name)),
                    Change::Unavailable(why) => (PlanAction::Unavailable, None, vec![], why),
                };
                PlanOption {
                    selected: selected.as_deref() == Some(p.code.as_str()),
                    plan: plan_view(p),
                    action,
                    amount: amount.map(|a| format_money(a, &p.currency)),
                    amount_minor: amount,
                    lines,
                    note,
                }
            })
            .collect();
        // The cheapest offered plan with a trial (list_active is by price).
        let trial = plans
            .iter()
            .find(|p| p.trial_days > 0 && p.price_minor > 0 && !p.requires_approval)
            .filter(|_| !sub.trial_used && sub.status == Status::Active && sub.plan.price_minor == 0)
            .map(plan_view);
        Ok(PlansPage {
            can_manage: m.role.manages_billing(),
            status: sub.status.as_str().into(),
            current: sub.plan.code.clone(),
            options,
            renew: ended,
            trial,
            has_card,
            can_cancel: sub.can_cancel(),
            period_end: date(sub.period_end),
            idempotency_key: key(),
        })
    }

    async fn choose_plan(&self, caller: &Caller, form: ChoosePlanForm) -> Result<String, FormError> {
        let m = payer(caller)?;
        let expected = form.expected_minor.trim().parse::<i64>().ok();
        let done = changes::choose(
            &self.state.billing,
            m.org,
            m.user,
            form.plan.trim(),
            expected,
            form.idempotency_key.trim(),
            self.now(),
            crate::billing::payments::WAIT,
        )
        .await
        .map_err(|e| errors::form(caller, e))?;
        Ok(match done {
            Changed::Upgraded => "Upgraded: your new plan applies now.".into(),
            Changed::Processing => "Your payment is processing; the plan changes as soon as it succeeds.".into(),
            Changed::ConfirmationNeeded => format!("{CONFIRM} The plan changes as soon as it succeeds."),
            Changed::DowngradeScheduled(at) => format!("Your plan changes on {}. Until then nothing changes.", date(at)),
            Changed::ApprovalRequested => "Requested: our team reviews it and you will be told by email and here.".into(),
            Changed::Renewed => "Renewed: your subscription is active again.".into(),
            Changed::Kept => "Your plan stays as it is.".into(),
            Changed::Withdrawn => "Request withdrawn: your plan stays as it was.".into(),
        })
    }

    async fn cancel(&self, caller: &Caller) -> Result<String, FormError> {
        let m = payer(caller)?;
        let end = changes::cancel(&self.state.billing, m.org, m.user, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        Ok(format!("Canceled: your plan keeps working until {}, and you can keep it until then.", date(end)))
    }

    async fn start_trial(&self, caller: &Caller, plan: String) -> Result<String, FormError> {
        let m = payer(caller)?;
        let end = changes::start_trial(&self.state.billing, m.org, m.user, plan.trim(), self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        Ok(format!("Your trial has started and ends on {}. Add a card before then to keep the plan.", date(end)))
    }

    async fn payment_methods(&self, caller: &Caller) -> Result<PaymentMethodsPage, AppError> {
        let m = billing_reader(caller)?;
        let db = &self.state.db;
        let page = |e| errors::page(caller, e);
        let cards = cards::list(&self.state.billing, m.org).await.map_err(page)?;
        let owed = invoice_views(db, m.org, None, true).await.map_err(page)?;
        let status = crate::billing::subscriptions::current(db, m.org)
            .await
            .map_err(page)?
            .map(|s| s.status.as_str().to_string())
            .unwrap_or_default();
        let can_manage = m.role.manages_billing();
        let card_form = if !can_manage {
            CardFormView::Sandbox
        } else {
            let billing = &self.state.billing;
            let customer = crate::billing::customer(db, m.org).await.map_err(page)?;
            match billing.processor.card_form(&customer, self.now()).await {
                Ok(processor::CardForm::Sandbox) => CardFormView::Sandbox,
                Ok(processor::CardForm::Browser(l)) => CardFormView::Browser { library: library_view(l), sentences: sentences() },
                Err(e) => {
                    tracing::warn!(request_id = %caller.request_id, error = %e, "the processor's card form could not be prepared");
                    CardFormView::Unavailable("The payment processor is unavailable, so no card can be added just now; try again in a moment.".into())
                }
            }
        };
        Ok(PaymentMethodsPage {
            can_manage,
            cards: cards.iter().map(card_view).collect(),
            owed,
            status,
            card_form,
        })
    }

    async fn add_card(&self, caller: &Caller, form: CardForm) -> Result<String, FormError> {
        let m = payer(caller)?;
        let input = processor::CardInput {
            number: form.number,
            exp_month: form.exp_month,
            exp_year: form.exp_year,
            cvc: form.cvc,
            name: form.name,
        };
        // The sandbox's card form: the card is checked field by field, then
        // the sandbox turns it into a token (as a processor's browser library
        // would) and billing attaches the token; the number goes no further.
        // Another processor's cards are collected by its own library in the
        // browser: no number is taken here at all.
        if self.state.billing.processor.name() != crate::billing::processor::sandbox::NAME {
            return Err(errors::form(
                caller,
                BillingError::State("Cards are entered in the secure card field of this page; reload it and try again.".into()),
            ));
        }
        let now = self.now();
        let card = processor::check_card(&input, now).map_err(|fields| errors::form(caller, BillingError::Invalid(fields)))?;
        let token = match self.state.sandbox.tokenize(&card, now).await {
            Ok(t) => t,
            Err(processor::ProcessorError::Refused(r)) if r.code == "test_card_required" => {
                return Err(errors::form(
                    caller,
                    BillingError::Invalid(vec![("number", "The sandbox processor accepts test cards only, such as 4242 4242 4242 4242.".into())]),
                ))
            }
            Err(processor::ProcessorError::Refused(r)) => return Err(errors::form(caller, BillingError::Refused(r))),
            Err(processor::ProcessorError::Unavailable(e)) => {
                tracing::warn!(request_id = %caller.request_id, error = %e, "the sandbox could not tokenize a card");
                return Err(errors::form(caller, BillingError::State("The payment processor is unavailable; try again in a moment.".into())));
            }
        };
        let outcomes = cards::add(&self.state.billing, m.org, m.user, &token, form.make_default, now)
            .await
            .map_err(|e| errors::form(caller, e))?;
        retried("Card added.", outcomes)
    }

    async fn save_card(&self, caller: &Caller, token: String, make_default: bool) -> Result<String, FormError> {
        let m = payer(caller)?;
        // Tokens from a processor's browser library only; the sandbox's
        // come from its own form (`add_card`).
        if self.state.billing.processor.name() == crate::billing::processor::sandbox::NAME {
            return Err(errors::form(caller, BillingError::State("Enter the card in the form on this page.".into())));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(errors::form(caller, BillingError::Invalid(vec![("card", "Enter your card's details.".into())])));
        }
        let outcomes = cards::add(&self.state.billing, m.org, m.user, token, make_default, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        retried("Card added.", outcomes)
    }

    async fn confirm_payment(&self, caller: &Caller, charge: String) -> Result<String, FormError> {
        let m = payer(caller)?;
        let charge = Uuid::parse_str(charge.trim()).map_err(|_| errors::form(caller, BillingError::NotFound))?;
        let outcome = crate::billing::payments::confirmed(&self.state.billing, m.org, charge, self.now())
            .await
            .map_err(|e| match e {
                sqlx::Error::RowNotFound => errors::form(caller, BillingError::NotFound),
                e => errors::form(caller, BillingError::Db(e)),
            })?;
        match outcome {
            Collected::ActionRequired(_) => Err(FormError::message(
                "Your bank has not confirmed the payment yet. Confirm it when your bank asks, or use another card.",
            )),
            c => paid_or(c, "Payment confirmed: thank you.".into()),
        }
    }

    async fn set_default_card(&self, caller: &Caller, card_id: String) -> Result<String, FormError> {
        let m = payer(caller)?;
        let outcomes = cards::make_default(&self.state.billing, m.org, m.user, &card_id, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        retried("Default card changed.", outcomes)
    }

    async fn remove_card(&self, caller: &Caller, card_id: String) -> Result<String, FormError> {
        let m = payer(caller)?;
        cards::remove(&self.state.billing, m.org, m.user, &card_id, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        Ok("Card removed.".into())
    }

    async fn top_up_page(&self, caller: &Caller, credits: Option<String>) -> Result<TopUpPage, AppError> {
        let m = billing_reader(caller)?;
        let db = &self.state.db;
        let page = |e| errors::page(caller, e);
        let wanted = credits.and_then(|c| c.trim().parse::<i64>().ok()).filter(|c| *c > 0);
        let (selected, custom) = match wanted {
            None => (PACK_PRICES[0].0, None),
            Some(n) => match PACK_PRICES.iter().find(|(c, _)| *c >= n) {
                Some((c, _)) => (*c, None),
                None => (0, Some(n.clamp(CUSTOM_MIN, CUSTOM_MAX))),
            },
        };
        let cards = cards::list(&self.state.billing, m.org).await.map_err(page)?;
        let meters = meters(db, m.org, self.now()).await.map_err(page)?;
        Ok(TopUpPage {
            can_manage: m.role.manages_billing(),
            packs: packs(),
            selected,
            custom,
            custom_min: CUSTOM_MIN,
            custom_max: CUSTOM_MAX,
            default_card: cards.iter().find(|c| c.is_default).map(card_view),
            balance: meters.included + meters.purchased,
            idempotency_key: key(),
        })
    }

    async fn top_up(&self, caller: &Caller, form: TopUpForm) -> Result<String, FormError> {
        let m = payer(caller)?;
        let credits = if form.choice == "custom" {
            int("custom", &form.custom, CUSTOM_MIN, CUSTOM_MAX, "A custom amount").map_err(|f| FormError {
                message: "Please correct the highlighted fields.".into(),
                fields: vec![(f.0.to_string(), f.1)],
            })?
        } else {
            form.choice.trim().parse::<i64>().map_err(|_| FormError {
                message: "Please correct the highlighted fields.".into(),
                fields: vec![("choice".into(), "Choose a pack or a custom amount.".into())],
            })?
        };
        let (_, collected) = topups::top_up(
            &self.state.billing,
            m.org,
            m.user,
            credits,
            form.idempotency_key.trim(),
            self.now(),
            crate::billing::payments::WAIT,
        )
        .await
        .map_err(|e| errors::form(caller, e))?;
        paid_or(collected, format!("Paid: {} credits were added to your balance.", group(credits)))
    }

    async fn limits(&self, caller: &Caller) -> Result<LimitsPage, AppError> {
        let m = billing_reader(caller)?;
        let db = &self.state.db;
        let page = |e| errors::page(caller, e);
        let limits = topups::limits(db, m.org).await.map_err(page)?;
        let meters = meters(db, m.org, self.now()).await.map_err(page)?;
        let has_card = cards::list(&self.state.billing, m.org).await.map_err(page)?.iter().any(|c| c.is_default);
        Ok(LimitsPage {
            can_manage: m.role.manages_billing(),
            spend_cap: limits.spend_cap,
            period_spent: meters.period_spent,
            low_balance_at: limits.low_balance_at,
            auto_top_up: limits.auto_top_up,
            warn_included_pct: limits.warn_included_pct,
            warn_spend_cap_pct: limits.warn_spend_cap_pct,
            packs: packs(),
            has_card,
        })
    }

    async fn save_limits(&self, caller: &Caller, form: LimitsForm) -> Result<String, FormError> {
        let m = payer(caller)?;
        let mut fields = Vec::new();
        let spend_cap = if form.spend_cap.trim().is_empty() {
            None
        } else {
            int("spend_cap", &form.spend_cap, 1, 1_000_000_000, "The spend cap").map_err(|f| fields.push(f)).ok()
        };
        let low = int("low_balance_at", &form.low_balance_at, 0, 1_000_000_000, "The alert threshold")
            .map_err(|f| fields.push(f))
            .ok();
        let pct = |name: &'static str, value: &str, what: &str, fields: &mut Vec<(&'static str, String)>| {
            if value.trim().is_empty() {
                None
            } else {
                int(name, value, 1, 100, what).map_err(|f| fields.push(f)).ok().map(|v| v as i16)
            }
        };
        let warn_included_pct = pct("warn_included_pct", &form.warn_included_pct, "The included-credits warning", &mut fields);
        let warn_spend_cap_pct = pct("warn_spend_cap_pct", &form.warn_spend_cap_pct, "The spend-cap warning", &mut fields);
        let auto = if form.auto_enabled {
            let t = int("auto_threshold", &form.auto_threshold, 1, 1_000_000_000, "The threshold").map_err(|f| fields.push(f)).ok();
            let p = form.auto_pack.trim().parse::<i64>().ok().filter(|p| PACK_PRICES.iter().any(|(c, _)| c == p));
            if p.is_none() {
                fields.push(("auto_pack", "Choose one of the packs.".into()));
            }
            let x = int("auto_max", &form.auto_max, 1, 100, "The monthly maximum").map_err(|f| fields.push(f)).ok();
            match (t, p, x) {
                (Some(t), Some(p), Some(x)) => Some((t, p, x as i32)),
                _ => None,
            }
        } else {
            None
        };
        if !fields.is_empty() {
            return Err(FormError {
                message: "Please correct the highlighted fields.".into(),
                fields: fields.into_iter().map(|(f, m)| (f.to_string(), m)).collect(),
            });
        }
        let limits = Limits {
            spend_cap,
            low_balance_at: low.unwrap_or_default(),
            auto_top_up: auto,
            warn_included_pct,
            warn_spend_cap_pct,
        };
        topups::save_limits(&self.state.billing, m.org, m.user, &limits, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        Ok("Limits saved.".into())
    }

    async fn invoices(&self, caller: &Caller) -> Result<Vec<InvoiceView>, AppError> {
        let m = billing_reader(caller)?;
        invoice_views(&self.state.db, m.org, None, false).await.map_err(|e| errors::page(caller, e))
    }

    async fn invoice(&self, caller: &Caller, id: String) -> Result<InvoiceView, AppError> {
        let m = billing_reader(caller)?;
        let id = Uuid::parse_str(id.trim()).map_err(|_| AppError::NotFound)?;
        let record = views::invoices(&self.state.db, m.org, Some(id), false)
            .await
            .map_err(|e| errors::page(caller, e))?
            .into_iter()
            .next()
            .ok_or(AppError::NotFound)?;
        let waiting = record.awaiting_confirmation;
        let mut view = invoice_view(record);
        // A payment waiting for the customer's confirmation: what the
        // processor's library needs to ask the bank, for those who may pay.
        if let (Some(charge), true) = (waiting, m.role.manages_billing()) {
            let pending = crate::billing::payments::awaiting_confirmation(&self.state.billing, m.org, charge)
                .await
                .map_err(|e| errors::page(caller, e))?;
            view.confirm = pending.map(|(library, payment_method)| ConfirmView {
                charge: charge.to_string(),
                library: library_view(library),
                payment_method,
            });
        }
        Ok(view)
    }

    async fn refill_sandbox(&self, caller: &Caller) -> Result<String, FormError> {
        let m = form_member(caller)?;
        let refill = topups::refill_sandbox(&self.state.db, m.org, Some(m.user), self.now())
            .await
            .map_err(|e| errors::form(caller, BillingError::Db(e)))?;
        match refill {
            topups::Refill::Added(added) => Ok(format!("Sandbox refilled: {} test credits added.", group(added))),
            topups::Refill::Full => Ok("Your sandbox is full already.".into()),
            topups::Refill::Limit(next) => Err(FormError::message(format!(
                "The sandbox can be refilled {} times a day; the next refill is possible from {}.",
                crate::billing::policy::SANDBOX_REFILLS_PER_DAY,
                date_time(next)
            ))),
            topups::Refill::NotInGoodStanding => Err(FormError::message(
                "The sandbox is refilled while your subscription is in good standing: pay what is owed or renew first.",
            )),
        }
    }
}

/// The notice when the card's bank wants the customer to confirm.
const CONFIRM: &str = "Your bank wants you to confirm this payment: open it under Invoices and confirm it there.";

/// The notice after a card change, with what the retried charges did.
fn retried(done: &str, outcomes: Vec<Collected>) -> Result<String, FormError> {
    if outcomes.is_empty() {
        return Ok(done.into());
    }
    if outcomes.iter().all(|c| *c == Collected::Paid) {
        return Ok(format!("{done} The failed payment went through and your access is restored."));
    }
    if let Some(Collected::Failed(r)) = outcomes.iter().find(|c| matches!(c, Collected::Failed(_))) {
        return Ok(format!("{done} Paying what is owed failed again: {}", r.message()));
    }
    if outcomes.iter().any(|c| matches!(c, Collected::ActionRequired(_))) {
        return Ok(format!("{done} {CONFIRM}"));
    }
    Ok(format!("{done} The payment of what is owed is processing."))
}
