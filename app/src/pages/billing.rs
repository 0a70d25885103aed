//! Billing: the overview and its fix pages (plans, top-up, payment methods,
//! limits), invoices. Plain forms posting to server functions, so every page
//! works before hydration and with JavaScript off. Each fix page accepts
//! `return_to` and, after success, offers the way back.

use crate::components::{query_value, use_viewer, Csrf, ErrorView, FormState, Loading};
use crate::server_fns::{
    get_billing_overview, get_invoice, get_invoices, get_limits, get_payment_methods, get_plans_page, get_top_up_page,
};
use crate::types::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// A safe same-site `return_to` of this page, if any.
fn return_to() -> Option<String> {
    let r = query_value("return_to");
    let ok = r.starts_with('/') && !r.starts_with("//") && !r.contains('\\') && !r.chars().any(char::is_control);
    ok.then_some(r)
}

/// The hidden field that carries `return_to` through a form.
#[component]
fn ReturnField() -> impl IntoView {
    return_to().map(|r| view! { <input type="hidden" name="return_to" value=r/> })
}

/// The banner of a form, and after a success, the way back.
#[component]
fn Outcome(state: FormState) -> impl IntoView {
    let back = state
        .succeeded()
        .then(return_to)
        .flatten()
        .map(|r| {
            let label = if r.starts_with("/explorer") { "Back to the explorer" } else { "Back to where you were" };
            view! { <p><a class="button" href=r data-testid="return">{label}</a></p> }
        });
    view! { {state.banner()} {back} }
}

fn money_note(can_manage: bool) -> impl IntoView {
    (!can_manage).then(|| view! { <p class="muted">"Only owners, admins and billing members can change billing."</p> })
}

#[component]
fn BillingNav() -> impl IntoView {
    view! {
        <nav class="subnav" aria-label="Billing">
            <a href="/billing">"Overview"</a>
            <a href="/billing/plans">"Plans"</a>
            <a href="/billing/top-up">"Top up"</a>
            <a href="/billing/payment-methods">"Payment methods"</a>
            <a href="/billing/limits">"Limits"</a>
            <a href="/billing/invoices">"Invoices"</a>
        </nav>
    }
}

macro_rules! page {
    ($title:expr, $resource:expr, |$data:ident, $viewer:ident| $body:expr) => {{
        let viewer = use_viewer();
        let resource = $resource;
        view! {
            <Title text=$title/>
            <BillingNav/>
            <Suspense fallback=Loading>
                {move || Suspend::new(async move {
                    let $viewer = viewer.await;
                    match resource.await {
                        Ok($data) => $body.into_any(),
                        Err(e) => view! { <ErrorView error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        }
    }};
}

#[component]
pub fn BillingPage() -> impl IntoView {
    page!("Billing", Resource::new(|| (), |_| get_billing_overview()), |o, viewer| {
        let f = FormState::new(&viewer, "sandbox");
        let banners = o
            .banners
            .iter()
            .map(|b| {
                let kind = b.kind.clone();
                let link = b.link.clone().map(|(label, href)| view! { " " <a href=href>{label}</a> });
                view! { <p class="banner banner-warning" role="status" data-banner=kind>{b.text.clone()} {link}</p> }
            })
            .collect_view();
        let card = match o.default_card.clone() {
            Some(c) => format!("{} ending {} (expires {})", c.brand, c.last4, c.expiry),
            None => "none".into(),
        };
        let cap = o.spend_cap.map(|c| format!("{} of {} credits this period", o.period_spent, c)).unwrap_or_else(|| format!("{} credits this period (no cap)", o.period_spent));
        view! {
            <section class="panel">
                <h1>"Billing for " {o.org_name.clone()}</h1>
                {banners}
                <dl class="facts">
                    <dt>"Plan"</dt><dd data-testid="plan-name">{o.plan.name.clone()}</dd>
                    <dt>"Status"</dt><dd><span class="badge" data-testid="plan-status">{o.status.clone()}</span></dd>
                    <dt>"Price"</dt><dd>{o.plan.price.clone()} " / month"</dd>
                    <dt>"Current period"</dt><dd>{o.period_start.clone()} " – " {o.period_end.clone()}</dd>
                    <dt>"Included credits"</dt><dd data-testid="included-credits">{o.included_credits} " (lapse on " {o.included_expires.clone()} ")"</dd>
                    <dt>"Purchased credits"</dt><dd data-testid="purchased-credits">{o.purchased_credits} " (never expire)"</dd>
                    <dt>"Included used"</dt><dd data-testid="billing-included-used">{o.outlook.included_used} " of " {o.outlook.included_of}</dd>
                    <dt>"Spent"</dt><dd>{cap}</dd>
                    <dt>"Next charge"</dt><dd data-testid="next-charge">{o.next_charge.clone().unwrap_or_else(|| "none".into())}</dd>
                    <dt>"Default card"</dt><dd data-testid="default-card">{card}</dd>
                </dl>
                <p>
                    <a class="button" href="/billing/plans">"Change plan"</a> " "
                    <a class="button" href="/billing/top-up">"Top up credits"</a> " "
                    <a class="button" href="/billing/payment-methods">"Payment methods"</a>
                </p>
                <p data-testid="billing-forecast" class:forecast-warning=o.outlook.runs_out>{o.outlook.forecast.clone()} " " <a href="/account/usage">"See usage"</a></p>
                {money_note(o.can_manage)}
            </section>
            <section class="panel">
                <h2>"Sandbox"</h2>
                <p>"Test keys spend a separate sandbox balance, never real money: "
                    <strong data-testid="sandbox-credits">{o.sandbox_credits}</strong> " test credits."</p>
                {f.banner()}
                <form method="post" action="/api/refill_sandbox">
                    <Csrf token=viewer.csrf.clone()/>
                    <button type="submit" class="button">"Refill the sandbox for free"</button>
                </form>
            </section>
        }
    })
}

fn plan_form(o: &PlanOption, csrf: &str, key: &str) -> AnyView {
    let label = match o.action {
        PlanAction::Upgrade => format!("Upgrade and pay {}", o.amount.clone().unwrap_or_default()),
        PlanAction::Downgrade => format!("Switch to {} at period end", o.plan.name),
        PlanAction::Approval => format!("Request {}", o.plan.name),
        PlanAction::Renew => format!("Renew on {} for {}", o.plan.name, o.amount.clone().unwrap_or_default()),
        PlanAction::Keep => format!("Keep {}", o.plan.name),
        PlanAction::Withdraw => format!("Stay on {} and withdraw the request", o.plan.name),
        PlanAction::Signup | PlanAction::Current | PlanAction::Unavailable => return ().into_any(),
    };
    let expected = o.amount_minor.map(|a| a.to_string()).unwrap_or_default();
    view! {
        <form method="post" action="/api/choose_plan">
            <Csrf token=csrf.to_string()/>
            <ReturnField/>
            <input type="hidden" name="plan" value=o.plan.code.clone()/>
            <input type="hidden" name="expected_minor" value=expected/>
            <input type="hidden" name="idempotency_key" value=key.to_string()/>
            <button type="submit" class="button" data-testid=format!("choose-{}", o.plan.code)>{label}</button>
        </form>
    }
    .into_any()
}

#[component]
pub fn PlansPage() -> impl IntoView {
    let plan = query_value("plan");
    let renew = query_value("renew") == "1";
    let plan = (!plan.is_empty()).then_some(plan);
    page!("Plans", Resource::new(move || (), move |_| get_plans_page(plan.clone(), renew)), |p, viewer| {
        let f = FormState::new(&viewer, "plans");
        let csrf = viewer.csrf.clone();
        let cards = p
            .options
            .iter()
            .map(|o| {
                let lines = (!o.lines.is_empty()).then(|| {
                    let rows = o
                        .lines
                        .iter()
                        .map(|l| view! { <tr><td>{l.description.clone()}</td><td class="num">{l.amount.clone()}</td></tr> })
                        .collect_view();
                    view! {
                        <table class="table proration" data-testid=format!("preview-{}", o.plan.code)>
                            <caption>"Charged now"</caption>
                            <tbody>{rows}</tbody>
                            <tfoot><tr><th>"Total"</th><th class="num" data-testid="preview-total">{o.amount.clone()}</th></tr></tfoot>
                        </table>
                    }
                });
                let action = if p.can_manage { plan_form(o, &csrf, &p.idempotency_key) } else { ().into_any() };
                view! {
                    <article class="card plan" class:plan-current=o.action == PlanAction::Current class:plan-selected=o.selected
                        data-plan=o.plan.code.clone() data-action=o.action.as_str() aria-current=o.selected.then_some("true")>
                        <h2>{o.plan.name.clone()}</h2>
                        <p class="plan-price">{o.plan.price.clone()}<span>" / month"</span></p>
                        <ul>
                            <li>{o.plan.included_credits} " credits included each month"</li>
                            <li>{o.plan.rate_limit_per_sec} " requests per second"</li>
                            <li>"Endpoints: " {o.plan.endpoints.join(", ")}</li>
                            {o.plan.requires_approval.then(|| view! { <li>"Needs approval by our team"</li> })}
                        </ul>
                        {o.selected.then(|| view! { <p class="badge">"Selected"</p> })}
                        <p class="muted">{o.note.clone()}</p>
                        {lines}
                        {action}
                    </article>
                }
            })
            .collect_view();
        let trial = p.trial.clone().filter(|_| p.can_manage).map(|t| view! {
            <section class="panel">
                <h2>"Try " {t.name.clone()} " free for " {t.trial_days} " days"</h2>
                <p>"No card needed to start. Without a card when the trial ends, its calls are refused until you add one."</p>
                <form method="post" action="/api/start_trial">
                    <Csrf token=viewer.csrf.clone()/>
                    <ReturnField/>
                    <input type="hidden" name="plan" value=t.code.clone()/>
                    <button type="submit" class="button" data-testid="start-trial">"Start the trial"</button>
                </form>
            </section>
        });
        let cancel = (p.can_cancel && p.can_manage).then(|| view! {
            <section class="panel">
                <h2>"Cancel"</h2>
                <p>"Your plan keeps working until " {p.period_end.clone()} ", and you can keep it until then."</p>
                <form method="post" action="/api/cancel_subscription">
                    <Csrf token=viewer.csrf.clone()/>
                    <ReturnField/>
                    <button type="submit" class="button button-danger" data-testid="cancel">"Cancel at period end"</button>
                </form>
            </section>
        });
        let add_card = format!("/billing/payment-methods?return_to={}", crate::components::encode_component(&crate::components::current_path()));
        let no_card = (!p.has_card).then(|| view! {
            <p class="muted">"Paid plans charge your default card. " <a href=add_card>"Add a card"</a> " first."</p>
        });
        view! {
            <section class="panel">
                <h1>{if p.renew { "Renew your subscription" } else { "Plans" }}</h1>
                <p class="muted">"Upgrades apply at once and charge the prorated difference; downgrades and cancellations apply at the end of the period."</p>
                <Outcome state=f/>
                {no_card}
                {money_note(p.can_manage)}
            </section>
            <div class="cards">{cards}</div>
            {trial}
            {cancel}
        }
    })
}

fn card_label(c: &CardView) -> String {
    format!("{} ending {} · expires {}", c.brand, c.last4, c.expiry)
}

#[component]
pub fn TopUpPage() -> impl IntoView {
    let credits = query_value("credits");
    let credits = (!credits.is_empty()).then_some(credits);
    page!("Top up", Resource::new(move || (), move |_| get_top_up_page(credits.clone())), |p, viewer| {
        let f = FormState::new(&viewer, "top_up");
        // The answer to a paid form is a confirmation, not the form again:
        // the second click of a double click lands on no Pay button, and
        // buying again is a deliberate step.
        if f.succeeded() {
            let more = format!("/billing/top-up{}",
                return_to().map(|r| format!("?return_to={}", crate::components::encode_component(&r))).unwrap_or_default());
            return view! {
                <section class="panel" data-testid="top-up-done">
                    <h1>"Top up credits"</h1>
                    <Outcome state=f.clone()/>
                    <p>"Your balance: " <strong data-testid="balance">{p.balance}</strong> " credits. Purchased credits never expire."</p>
                    <p>"The receipt is on " <a href="/billing/invoices">"your invoices"</a> ". "
                        <a href="/billing">"Back to billing"</a> " · "
                        <a href=more data-testid="buy-more">"Buy more credits"</a></p>
                </section>
            }.into_any();
        }
        let typed_choice = f.typed().then(|| f.value("choice"));
        let packs = p
            .packs
            .iter()
            .map(|pack| {
                let value = pack.credits.to_string();
                let checked = match &typed_choice {
                    Some(c) => *c == value,
                    None => p.selected == pack.credits,
                };
                let id = format!("pack-{}", pack.credits);
                let label_for = id.clone();
                view! {
                    <label class="check" for=label_for>
                        <input type="radio" id=id name="choice" value=value checked=checked/>
                        " " {pack.credits} " credits — " {pack.price.clone()}
                    </label>
                }
            })
            .collect_view();
        let custom_checked = match &typed_choice {
            Some(c) => c == "custom",
            None => p.selected == 0,
        };
        let custom_value = if f.typed() { f.value("custom") } else { p.custom.map(|c| c.to_string()).unwrap_or_default() };
        let here = format!("/billing/top-up?credits={}{}", if p.selected > 0 { p.selected } else { p.custom.unwrap_or(0) },
            return_to().map(|r| format!("&return_to={}", crate::components::encode_component(&r))).unwrap_or_default());
        let add_card = format!("/billing/payment-methods?return_to={}", crate::components::encode_component(&here));
        let pay = match (&p.default_card, p.can_manage) {
            (_, false) => money_note(false).into_any(),
            (None, true) => view! {
                <p class="banner banner-warning">"There is no card on file to charge. "
                    <a class="button" href=add_card data-testid="add-card-first">"Add a card"</a> " and come back here."</p>
            }.into_any(),
            (Some(c), true) => view! {
                <p>"Charged to " <strong data-testid="charged-card">{card_label(c)}</strong> ". "
                    <a href=add_card>"Use another card"</a></p>
                <button type="submit" class="button" data-testid="pay">"Pay and add credits"</button>
            }.into_any(),
        };
        view! {
            <section class="panel">
                <h1>"Top up credits"</h1>
                <p>"Your balance: " <strong data-testid="balance">{p.balance}</strong> " credits. Purchased credits never expire."</p>
                <Outcome state=f.clone()/>
                <form method="post" action="/api/top_up" novalidate>
                    <Csrf token=viewer.csrf.clone()/>
                    <ReturnField/>
                    <input type="hidden" name="idempotency_key" value=p.idempotency_key.clone()/>
                    <fieldset class="field" class:field-invalid=f.has_error("choice")>
                        <legend>"Amount"</legend>
                        {packs}
                        <label class="check" for="pack-custom">
                            <input type="radio" id="pack-custom" name="choice" value="custom" checked=custom_checked/>
                            " Custom amount ($0.01 a credit)"
                        </label>
                        {f.error("choice")}
                    </fieldset>
                    <div class="field" class:field-invalid=f.has_error("custom")>
                        <label for="custom">"Custom credits (" {p.custom_min} " to " {p.custom_max} ")"</label>
                        <input id="custom" name="custom" type="text" inputmode="numeric" value=custom_value
                            aria-describedby=f.has_error("custom").then_some("custom-error")/>
                        {f.error("custom")}
                    </div>
                    {pay}
                </form>
            </section>
        }.into_any()
    })
}

#[component]
pub fn PaymentMethodsPage() -> impl IntoView {
    page!("Payment methods", Resource::new(|| (), |_| get_payment_methods()), |p, viewer| {
        let f = FormState::new(&viewer, "cards");
        let csrf = viewer.csrf.clone();
        let manage = p.can_manage;
        let rows = p
            .cards
            .iter()
            .map(|c| {
                let controls = manage.then(|| {
                    let make_default = (!c.is_default).then(|| view! {
                        <form method="post" action="/api/set_default_card" class="inline-form">
                            <Csrf token=csrf.clone()/>
                            <ReturnField/>
                            <input type="hidden" name="card_id" value=c.id.clone()/>
                            <button type="submit" class="button button-small">"Make default"</button>
                        </form>
                    });
                    view! {
                        {make_default}
                        <form method="post" action="/api/remove_card" class="inline-form">
                            <Csrf token=csrf.clone()/>
                            <ReturnField/>
                            <input type="hidden" name="card_id" value=c.id.clone()/>
                            <button type="submit" class="button button-small button-danger">"Remove"</button>
                        </form>
                    }
                });
                view! {
                    <tr data-card=c.last4.clone()>
                        <td>{c.brand.clone()}</td><td>"•••• " {c.last4.clone()}</td><td>{c.expiry.clone()}</td>
                        <td>{c.is_default.then(|| view! { <span class="badge">"default"</span> })}</td>
                        <td class="actions">{controls}</td>
                    </tr>
                }
            })
            .collect_view();
        let owed = (!p.owed.is_empty()).then(|| {
            let items = p.owed.iter().map(|i| view! {
                <li>{i.number.clone()} ": " {i.total.clone()} " — " {i.failure.clone().unwrap_or_default()}</li>
            }).collect_view();
            view! {
                <section class="panel banner-warning" data-testid="owed">
                    <h2>"Payments that failed"</h2>
                    <ul>{items}</ul>
                    <p>"Adding a card (or making another card the default) pays them at once."</p>
                </section>
            }
        });
        let add = match (&p.card_form, manage) {
            (_, false) => None,
            (CardFormView::Browser { library, sentences }, true) => Some(view! {
                <section class="panel">
                    <h2>"Add a card"</h2>
                    <p class="muted">"Your card goes straight to our payment processor; we keep only the brand, the last 4 digits and the expiry."</p>
                    <form method="post" action="/api/save_card" novalidate data-processor-card=""
                        data-key=library.publishable_key.clone() data-secret=library.client_secret.clone() data-sentences=sentences.clone()>
                        <Csrf token=viewer.csrf.clone()/>
                        <ReturnField/>
                        <input type="hidden" name="token" value=""/>
                        <div class="field" class:field-invalid=f.has_error("card")>
                            <label for="card-element">"Card"</label>
                            <div id="card-element" class="card-element" data-testid="card-element"></div>
                            <p class="field-error" id="card-error" role="alert" hidden=!f.has_error("card")>{f.error_text("card")}</p>
                        </div>
                        <div class="field">
                            <label for="card-name">"Name on the card"</label>
                            <input id="card-name" name="name" type="text" autocomplete="cc-name" aria-describedby="name-error"/>
                            <p class="field-error" id="name-error" role="alert" hidden=true></p>
                        </div>
                        <label class="check"><input type="checkbox" name="make_default" value="on" checked=true/>" Make it the default card"</label>
                        <noscript><p class="field-error">"Adding a card needs JavaScript: the card goes from your browser to the processor, never through our server."</p></noscript>
                        <p><button type="submit" class="button" data-testid="save-card">"Save card"</button></p>
                    </form>
                    <script src=library.script.clone()></script>
                    <script src="/processor.js" defer></script>
                </section>
            }.into_any()),
            (CardFormView::Unavailable(why), true) => Some(view! {
                <section class="panel"><h2>"Add a card"</h2><p class="banner banner-error" data-testid="card-form-unavailable">{why.clone()}</p></section>
            }.into_any()),
            (CardFormView::Sandbox, true) => Some(view! {
            <section class="panel">
                <h2>"Add a card"</h2>
                <p class="muted">"Test mode: use 4242 4242 4242 4242 with any future expiry and any 3-digit CVC. We keep only the brand, the last 4 digits and the expiry."</p>
                <form method="post" action="/api/add_card" novalidate autocomplete="off">
                    <Csrf token=viewer.csrf.clone()/>
                    <ReturnField/>
                    <div class="field" class:field-invalid=f.has_error("number")>
                        <label for="card-number">"Card number"</label>
                        <input id="card-number" name="number" type="text" inputmode="numeric" autocomplete="cc-number" value=f.value("number")
                            aria-describedby=f.has_error("number").then_some("number-error")/>
                        {f.error("number")}
                    </div>
                    <div class="field-row">
                        <div class="field" class:field-invalid=f.has_error("exp_month")>
                            <label for="exp-month">"Expiry month"</label>
                            <input id="exp-month" name="exp_month" type="text" inputmode="numeric" placeholder="MM" autocomplete="cc-exp-month" value=f.value("exp_month")
                                aria-describedby=f.has_error("exp_month").then_some("exp_month-error")/>
                            {f.error("exp_month")}
                        </div>
                        <div class="field" class:field-invalid=f.has_error("exp_year")>
                            <label for="exp-year">"Expiry year"</label>
                            <input id="exp-year" name="exp_year" type="text" inputmode="numeric" placeholder="YYYY" autocomplete="cc-exp-year" value=f.value("exp_year")
                                aria-describedby=f.has_error("exp_year").then_some("exp_year-error")/>
                            {f.error("exp_year")}
                        </div>
                        <div class="field" class:field-invalid=f.has_error("cvc")>
                            <label for="cvc">"CVC"</label>
                            <input id="cvc" name="cvc" type="password" inputmode="numeric" autocomplete="cc-csc"
                                aria-describedby=f.has_error("cvc").then_some("cvc-error")/>
                            {f.error("cvc")}
                        </div>
                    </div>
                    <div class="field" class:field-invalid=f.has_error("name")>
                        <label for="card-name">"Name on the card"</label>
                        <input id="card-name" name="name" type="text" autocomplete="cc-name" value=f.value("name")
                            aria-describedby=f.has_error("name").then_some("name-error")/>
                        {f.error("name")}
                    </div>
                    <label class="check"><input type="checkbox" name="make_default" value="on" checked=true/>" Make it the default card"</label>
                    <p><button type="submit" class="button" data-testid="save-card">"Save card"</button></p>
                </form>
            </section>
        }.into_any()),
        };
        view! {
            <section class="panel">
                <h1>"Payment methods"</h1>
                <Outcome state=f.clone()/>
                <div class="table-wrap">
                    <table class="table" data-testid="cards">
                        <thead><tr><th>"Brand"</th><th>"Number"</th><th>"Expires"</th><th></th><th></th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
                {p.cards.is_empty().then(|| view! { <p class="muted">"No cards yet."</p> })}
                {money_note(manage)}
            </section>
            {owed}
            {add}
        }
    })
}

#[component]
pub fn LimitsPage() -> impl IntoView {
    page!("Limits", Resource::new(|| (), |_| get_limits()), |p, viewer| {
        let f = FormState::new(&viewer, "limits");
        let typed = f.typed();
        let pick = |field: &str, stored: String| if typed { f.value(field) } else { stored };
        let spend_cap = pick("spend_cap", p.spend_cap.map(|c| c.to_string()).unwrap_or_default());
        let low = pick("low_balance_at", p.low_balance_at.to_string());
        let auto_on = if typed { f.value("auto_enabled") == "on" } else { p.auto_top_up.is_some() };
        let (t, pk, mx) = p.auto_top_up.unwrap_or((100, 1000, 3));
        let threshold = pick("auto_threshold", t.to_string());
        let pack = pick("auto_pack", pk.to_string());
        let max = pick("auto_max", mx.to_string());
        let warn_included = pick("warn_included_pct", p.warn_included_pct.map(|v| v.to_string()).unwrap_or_default());
        let warn_cap = pick("warn_spend_cap_pct", p.warn_spend_cap_pct.map(|v| v.to_string()).unwrap_or_default());
        let options = p
            .packs
            .iter()
            .map(|o| {
                let v = o.credits.to_string();
                let sel = v == pack;
                view! { <option value=v selected=sel>{o.credits} " credits (" {o.price.clone()} ")"</option> }
            })
            .collect_view();
        let field = |name: &'static str, label: &'static str, value: String, hint: &'static str| {
            let id = format!("limit-{name}");
            let label_for = id.clone();
            view! {
                <div class="field" class:field-invalid=f.has_error(name)>
                    <label for=label_for>{label}</label>
                    <input id=id name=name type="text" inputmode="numeric" value=value
                        aria-describedby=f.has_error(name).then(|| format!("{name}-error"))/>
                    <p class="muted">{hint}</p>
                    {f.error(name)}
                </div>
            }
        };
        view! {
            <section class="panel">
                <h1>"Limits"</h1>
                <p>"Spent this period: " <strong data-testid="period-spent">{p.period_spent}</strong> " credits."</p>
                <Outcome state=f.clone()/>
                <form method="post" action="/api/save_limits" novalidate>
                    <Csrf token=viewer.csrf.clone()/>
                    <ReturnField/>
                    {field("spend_cap", "Monthly spend cap (credits)", spend_cap, "Calls that would pass it get 402 spend_cap_reached. Empty: no cap. Past 80% you get a warning header.")}
                    <fieldset class="field">
                        <legend>"Warnings before the cutoff"</legend>
                        <p class="muted">"Crossing one shows a banner on your dashboard and billing pages and sends one email (to owners, admins and billing members) per crossing. Empty: off."</p>
                        {field("low_balance_at", "Credits left: warn below (credits)", low, "Below it, responses also carry a Tollgate-Warning header.")}
                        {field("warn_included_pct", "Included credits used: warn at (percent)", warn_included, "Of the period's included credits, 1 to 100.")}
                        {field("warn_spend_cap_pct", "Spend cap: warn at (percent)", warn_cap, "Of the monthly spend cap, 1 to 100.")}
                    </fieldset>
                    <fieldset class="field">
                        <legend>"Auto top-up"</legend>
                        <label class="check"><input type="checkbox" name="auto_enabled" value="on" checked=auto_on/>" Buy a pack automatically when the balance falls below the threshold"</label>
                        {field("auto_threshold", "Threshold (credits)", threshold, "")}
                        <div class="field" class:field-invalid=f.has_error("auto_pack")>
                            <label for="limit-auto_pack">"Pack"</label>
                            <select id="limit-auto_pack" name="auto_pack">{options}</select>
                            {f.error("auto_pack")}
                        </div>
                        {field("auto_max", "At most this many a month", max, "")}
                        {(!p.has_card).then(|| view! { <p class="muted">"Auto top-up charges your default card: " <a href="/billing/payment-methods?return_to=/billing/limits">"add one"</a> "."</p> })}
                    </fieldset>
                    {p.can_manage.then(|| view! { <button type="submit" class="button" data-testid="save-limits">"Save limits"</button> })}
                </form>
                {money_note(p.can_manage)}
            </section>
        }
    })
}

fn invoice_table(i: &InvoiceView) -> impl IntoView {
    let rows = i
        .lines
        .iter()
        .map(|l| view! {
            <tr><td>{l.no}</td><td>{l.description.clone()}</td><td class="num">{l.quantity}</td><td class="num">{l.unit.clone()}</td><td class="num">{l.amount.clone()}</td></tr>
        })
        .collect_view();
    view! {
        <table class="table invoice-lines">
            <thead><tr><th>"#"</th><th>"Description"</th><th class="num">"Qty"</th><th class="num">"Unit"</th><th class="num">"Amount"</th></tr></thead>
            <tbody>{rows}</tbody>
            <tfoot><tr><th colspan="4">"Total (" {i.currency.clone()} ")"</th><th class="num" data-testid="invoice-total">{i.total.clone()}</th></tr></tfoot>
        </table>
    }
}

fn failure_text(i: &InvoiceView) -> Option<String> {
    i.failure.clone().map(|f| {
        let codes = [i.failure_code.clone(), i.decline_code.clone()].into_iter().flatten().collect::<Vec<_>>().join(" / ");
        format!("{f} ({codes})")
    })
}

#[component]
pub fn InvoicesPage() -> impl IntoView {
    page!("Invoices", Resource::new(|| (), |_| get_invoices()), |list, _viewer| {
        let empty = list.is_empty();
        let rows = list
            .iter()
            .map(|i| {
                let href = format!("/billing/invoices/{}", i.id);
                view! {
                    <tr data-invoice=i.number.clone() data-status=i.status.clone()>
                        <td><a href=href>{i.number.clone()}</a></td>
                        <td>{i.created.clone()}</td>
                        <td>{i.purpose.clone()}</td>
                        <td class="num">{i.total.clone()}</td>
                        <td><span class="badge">{i.status.clone()}</span>
                            {i.refunded.clone().map(|r| view! { " " <span class="badge">"refunded " {r}</span> })}</td>
                        <td class="decline">{failure_text(i)}
                            {i.awaiting_confirmation.then(|| view! { <a href=format!("/billing/invoices/{}", i.id) data-testid="needs-confirmation">"Confirm with your bank"</a> })}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <section class="panel">
                <h1>"Invoices"</h1>
                <p class="muted">"Every subscription charge, upgrade, renewal and top-up, newest first."</p>
                <div class="table-wrap">
                    <table class="table" data-testid="invoices">
                        <thead><tr><th>"Number"</th><th>"Date"</th><th>"For"</th><th class="num">"Total"</th><th>"Status"</th><th>"Payment"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
                {empty.then(|| view! { <p>"No invoices yet."</p> })}
            </section>
        }
    })
}

#[component]
pub fn InvoicePage() -> impl IntoView {
    let params = use_params_map();
    let id = params.read_untracked().get("id").unwrap_or_default();
    page!("Invoice", Resource::new(move || (), move |_| get_invoice(id.clone())), |i, viewer| {
        let f = FormState::new(&viewer, "invoice");
        let refunds = (!i.refunds.is_empty()).then(|| {
            let rows = i.refunds.iter().map(|r| view! {
                <tr data-refund-status=r.status.clone()>
                    <td>{r.date.clone()}</td><td class="num">{r.amount.clone()}</td><td>{r.reason.clone()}</td>
                    <td><span class="badge">{r.status.clone()}</span></td>
                </tr>
            }).collect_view();
            view! {
                <section data-testid="refunds">
                    <h2>"Refunds"</h2>
                    <table class="table">
                        <thead><tr><th>"Date"</th><th class="num">"Amount"</th><th>"Reason"</th><th>"Status"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </section>
            }
        });
        let confirm = match (&i.confirm, i.awaiting_confirmation) {
            (Some(c), _) => Some(view! {
                <section class="banner banner-warning no-print" data-testid="confirm-payment">
                    <h2>"Confirm this payment"</h2>
                    <p>"Your bank wants you to confirm this payment before it goes through. Until you do, it waits; after a day it is given up and counts as failed."</p>
                    <form method="post" action="/api/confirm_payment" data-processor-confirm=""
                        data-key=c.library.publishable_key.clone() data-secret=c.library.client_secret.clone()
                        data-payment-method=c.payment_method.clone()>
                        <Csrf token=viewer.csrf.clone()/>
                        <input type="hidden" name="charge" value=c.charge.clone()/>
                        <input type="hidden" name="invoice" value=i.id.clone()/>
                        <p class="field-error" id="confirm-error" role="alert" hidden=true></p>
                        <noscript><p class="field-error">"Confirming with your bank needs JavaScript in this browser."</p></noscript>
                        <button type="submit" class="button" data-testid="confirm">"Confirm with your bank"</button>
                    </form>
                    <script src=c.library.script.clone()></script>
                    <script src="/processor.js" defer></script>
                </section>
            }.into_any()),
            (None, true) => Some(view! {
                <p class="banner banner-warning" data-testid="confirm-payment">"A payment of this invoice waits for your bank's confirmation; a member who manages billing can confirm it here."</p>
            }.into_any()),
            (None, false) => None,
        };
        view! {
            <Outcome state=f/>
            {confirm}
            <article class="panel invoice" data-testid="invoice">
                <header>
                    <h1>"Invoice " {i.number.clone()}</h1>
                    <p>"Tollgate · billed to " <strong>{i.org_name.clone()}</strong></p>
                    <p>"Issued " {i.created.clone()} " · " {i.purpose.clone()} " · status "
                        <span class="badge" data-testid="invoice-status">{i.status.clone()}</span>
                        {i.paid.clone().map(|p| view! { " · paid " {p} })}</p>
                    {failure_text(&i).map(|f| view! { <p class="banner banner-error">"Payment failed: " {f}</p> })}
                    {i.refunded.clone().map(|r| view! { <p data-testid="refunded">"Refunded " <strong>{r}</strong> " to the card that paid it."</p> })}
                </header>
                {invoice_table(&i)}
                {refunds}
                <p class="no-print"><a href="/billing/invoices">"All invoices"</a></p>
            </article>
        }
    })
}
