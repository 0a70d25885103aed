//! Billing: the organization's plan and period, and the plan catalogue.

use crate::components::{ErrorView, Loading};
use crate::server_fns::{get_billing_overview, get_plans};
use crate::types::PlanView;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn BillingPage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| get_billing_overview());
    view! {
        <Title text="Billing"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! {
                        <section class="panel">
                            <h1>"Billing for " {o.org_name}</h1>
                            <dl class="facts">
                                <dt>"Plan"</dt><dd data-testid="plan-name">{o.plan.name.clone()}</dd>
                                <dt>"Status"</dt><dd><span class="badge" data-testid="plan-status">{o.status}</span></dd>
                                <dt>"Price"</dt><dd>{o.plan.price.clone()} " / month"</dd>
                                <dt>"Included credits"</dt><dd>{o.plan.included_credits} " per month"</dd>
                                <dt>"Current period"</dt><dd>{o.period_start} " – " {o.period_end}</dd>
                            </dl>
                            <p class="muted">
                                "Upgrades, credit top-ups, payment methods and invoices arrive with the "
                                "metered API and the payment processor; they are not built yet."
                            </p>
                        </section>
                        <PlanTable plans=o.plans current=Some(o.plan.code)/>
                    }
                    .into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn PlansPage() -> impl IntoView {
    let plans = Resource::new(|| (), |_| get_plans());
    view! {
        <Title text="Plans"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match plans.await {
                    Ok(p) => view! { <PlanTable plans=p current=None/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn PlanTable(plans: Vec<PlanView>, current: Option<String>) -> impl IntoView {
    let cards = plans
        .into_iter()
        .map(|p| {
            let is_current = current.as_deref() == Some(p.code.as_str());
            view! {
                <article class="card plan" class:plan-current=is_current data-plan=p.code.clone()>
                    <h2>{p.name}</h2>
                    <p class="plan-price">{p.price}<span>" / month"</span></p>
                    <ul>
                        <li>{p.included_credits} " credits included each month"</li>
                        <li>{p.rate_limit_per_sec} " requests per second"</li>
                        <li>"Endpoints: " {p.endpoints.join(", ")}</li>
                        {p.requires_approval.then(|| view! { <li>"Needs approval by our team"</li> })}
                    </ul>
                    {is_current.then(|| view! { <p class="badge">"Your plan"</p> })}
                </article>
            }
        })
        .collect_view();
    view! {
        <section>
            <h2>"Plans"</h2>
            <div class="cards">{cards}</div>
        </section>
    }
}
