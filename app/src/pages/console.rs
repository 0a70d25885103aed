//! The operator's console: the overview (revenue, subscriptions, 402s by
//! code, top organizations), 402 recovery, organizations and one
//! organization's page (suspension, credit adjustments), the plan editor
//! and the audit log. Plain server-rendered pages and forms: no script.

use crate::components::chart::{Series, StackedBars};
use crate::components::{encode_component, query_value, use_viewer, Csrf, ErrorView, FormState, Loading};
use crate::server_fns::{get_admin_audit, get_admin_home, get_admin_org, get_admin_orgs, get_admin_plans, get_admin_reconcile, get_admin_recovery};
use crate::types::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// The console's sections, on every console page.
#[component]
pub fn ConsoleNav() -> impl IntoView {
    view! {
        <nav class="subnav" aria-label="Console">
            <a href="/admin">"Overview"</a>
            <a href="/admin/recovery">"402 recovery"</a>
            <a href="/admin/orgs">"Organizations"</a>
            <a href="/admin/approvals">"Approvals"</a>
            <a href="/admin/plans">"Plans"</a>
            <a href="/admin/audit">"Audit log"</a>
            <a href="/admin/reconcile">"Reconciliation"</a>
            <a href="/admin/routes">"API routes"</a>
            <a href="/admin/outbox">"Email outbox"</a>
        </nav>
    }
}

fn org_link(id: &str, name: &str) -> impl IntoView {
    view! { <a href=format!("/admin/orgs/{id}")>{name.to_string()}</a> }
}

fn top_table(title: &'static str, id: &'static str, rows: Vec<TopOrg>) -> impl IntoView {
    let empty = rows.is_empty();
    let body = rows
        .into_iter()
        .map(|o| view! { <tr><td>{org_link(&o.id, &o.name)}</td><td class="num">{group(o.calls)}</td><td class="num">{group(o.refused)}</td></tr> })
        .collect_view();
    view! {
        <section class="panel">
            <h2>{title}</h2>
            {if empty {
                view! { <p class="muted">"No live calls in the last 30 days."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap"><table class="table" data-testid=id>
                        <thead><tr><th scope="col">"Organization"</th><th scope="col" class="num">"Live calls"</th><th scope="col" class="num">"402s"</th></tr></thead>
                        <tbody>{body}</tbody>
                    </table></div>
                }.into_any()
            }}
        </section>
    }
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let home = Resource::new(|| (), |_| get_admin_home());
    view! {
        <Title text="Admin console"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match home.await {
                    Ok(h) => view! { <HomeView home=h/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn HomeView(home: AdminHome) -> impl IntoView {
    let h = home;
    let revenue = if h.revenue.is_empty() {
        view! { <p data-testid="revenue-none">"No paid invoices yet this month."</p> }.into_any()
    } else {
        let rows = h
            .revenue
            .iter()
            .map(|r| view! { <tr><th scope="row">{r.kind.clone()}</th><td class="num">{r.amount.clone()}</td><td class="num">{r.invoices}</td></tr> })
            .collect_view();
        view! {
            <div class="table-wrap"><table class="table" data-testid="revenue">
                <thead><tr><th scope="col">"Kind"</th><th scope="col" class="num">"Paid"</th><th scope="col" class="num">"Invoices"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        }
        .into_any()
    };
    let subs = h
        .subscriptions
        .iter()
        .map(|(plan, status, n)| view! { <tr><td>{plan.clone()}</td><td><span class="badge">{status.clone()}</span></td><td class="num">{*n}</td></tr> })
        .collect_view();
    let any_refusal = h.refusals.iter().any(|(_, v)| v.iter().any(|n| *n > 0));
    let series: Vec<Series> = h
        .refusals
        .iter()
        .enumerate()
        .map(|(i, (code, values))| Series { name: code.clone(), class: format!("bar-c{}", i % 7), values: values.clone() })
        .collect();
    let table_head = h.refusals.iter().map(|(code, _)| view! { <th scope="col" class="num"><code>{code.clone()}</code></th> }).collect_view();
    let table_rows = h
        .days
        .iter()
        .enumerate()
        .filter(|(i, _)| h.refusals.iter().any(|(_, v)| v[*i] > 0))
        .map(|(i, d)| {
            let cells = h.refusals.iter().map(|(_, v)| view! { <td class="num">{group(v[i])}</td> }).collect_view();
            view! { <tr><th scope="row">{d.clone()}</th>{cells}</tr> }
        })
        .collect_view();
    let chart = if any_refusal {
        view! {
            <StackedBars title="Live 402s per UTC day, by code".to_string() unit="402s".to_string() labels=h.days.clone() series=series id="chart-402s".to_string()/>
            <details><summary>"The numbers"</summary>
                <div class="table-wrap"><table class="table" data-testid="refusals-table">
                    <thead><tr><th scope="col">"Day (UTC)"</th>{table_head}</tr></thead>
                    <tbody>{table_rows}</tbody>
                </table></div>
            </details>
        }
        .into_any()
    } else {
        view! { <p>"No live 402s in the last 30 days."</p> }.into_any()
    };
    view! {
        <section class="panel">
            <h1>"Admin console"</h1>
            <dl class="facts">
                <dt>"Organizations"</dt><dd>{h.organizations}</dd>
                <dt>"Users"</dt><dd>{h.users}</dd>
                <dt>"Waiting for approval"</dt><dd><a href="/admin/approvals">{h.pending_approvals}</a></dd>
                <dt>"Emails not yet sent"</dt><dd><a href="/admin/outbox">{h.unsent_emails}</a></dd>
            </dl>
        </section>
        <section class="panel">
            <h2>"Revenue in " {h.month.clone()}</h2>
            <p class="muted">"Paid invoices, by what they paid for (UTC month)."</p>
            {revenue}
        </section>
        <section class="panel">
            <h2>"Subscriptions"</h2>
            <div class="table-wrap"><table class="table" data-testid="subscriptions">
                <thead><tr><th scope="col">"Plan"</th><th scope="col">"Status"</th><th scope="col" class="num">"Organizations"</th></tr></thead>
                <tbody>{subs}</tbody>
            </table></div>
        </section>
        <section class="panel">
            <h2>"402s by code"</h2>
            <p class="muted">"Live calls refused for money, per UTC day over 30 days. " <a href="/admin/recovery">"Did they recover?"</a></p>
            {chart}
        </section>
        {top_table("Most used (30 days)", "top-usage", h.top_usage.clone())}
        {top_table("Most refused (30 days)", "top-refused", h.top_refused.clone())}
    }
}

#[component]
pub fn RecoveryAdminPage() -> impl IntoView {
    let query = RecoveryQuery { from: query_value("from"), to: query_value("to"), org: query_value("org") };
    let page = Resource::new(move || query.clone(), get_admin_recovery);
    view! {
        <Title text="402 recovery"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <RecoveryView page=p/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn field_error(errors: &[(String, String)], name: &str) -> Option<impl IntoView> {
    errors
        .iter()
        .find(|(f, _)| f == name)
        .map(|(f, m)| view! { <p class="field-error" id=format!("{f}-error")>{m.clone()}</p> })
}

fn described(errors: &[(String, String)], name: &str) -> Option<String> {
    errors.iter().any(|(f, _)| f == name).then(|| format!("{name}-error"))
}

#[component]
fn RecoveryView(page: RecoveryPage) -> impl IntoView {
    let p = page;
    let rows = p
        .funnels
        .iter()
        .map(|f| {
            view! {
                <tr data-code=f.code.clone()>
                    <th scope="row"><a href=format!("/docs/errors/{}", f.code)><code>{f.code.clone()}</code></a></th>
                    <td class="num" data-step="refused">{group(f.refused)}</td>
                    <td class="num" data-step="visited">{group(f.visited)}</td>
                    <td class="num" data-step="fixed">{group(f.fixed)}</td>
                    <td class="num" data-step="recovered">{group(f.recovered)}</td>
                    <td class="num" data-step="episodes">{group(f.episodes)}</td>
                    <td class="num" data-step="median">{f.median.clone()}</td>
                    <td class="num" data-step="p90">{f.p90.clone()}</td>
                    <td class="num" data-step="revenue">{f.revenue.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let lost = p
        .unrecovered
        .iter()
        .map(|u| {
            view! {
                <tr>
                    <td>{org_link(&u.org_id, &u.name)}</td>
                    <td><code>{u.code.clone()}</code></td>
                    <td class="num">{group(u.refused)}</td>
                    <td>{if u.visited { "yes" } else { "no" }}</td>
                    <td>{u.last.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let none = p.funnels.is_empty() && p.errors.is_empty();
    let no_lost = p.unrecovered.is_empty();
    view! {
        <section class="panel">
            <h1>"402 recovery"</h1>
            <p class="muted">
                "For each 402 code: the live refusals of the range, how many led to their fix page (the link in the "
                "refusal carries its request id), how many of those were followed by the fix (a top-up paid, a plan "
                "changed, a card added, a cap raised, a renewal paid, an approval granted) and by a successful call. "
                "Time to recovery runs from an organization's first 402 of a run to its first successful call after the fix."
            </p>
            {p.org.clone().map(|(id, name)| view! {
                <p data-testid="recovery-org">"Only " {org_link(&id, &name)} ". " <a href="/admin/recovery">"Every organization"</a></p>
            })}
            {field_error(&p.errors, "org")}
            <form method="get" action="/admin/recovery" class="filters">
                {p.org.clone().map(|(id, _)| view! { <input type="hidden" name="org" value=id/> })}
                <div class="field">
                    <label for="recovery-from">"From (UTC date)"</label>
                    <input id="recovery-from" name="from" type="text" value=p.from.clone() placeholder="2026-11-01"
                        aria-invalid=described(&p.errors, "from").map(|_| "true") aria-describedby=described(&p.errors, "from")/>
                    {field_error(&p.errors, "from")}
                </div>
                <div class="field">
                    <label for="recovery-to">"To (UTC date, included)"</label>
                    <input id="recovery-to" name="to" type="text" value=p.to.clone() placeholder="2026-11-30"
                        aria-invalid=described(&p.errors, "to").map(|_| "true") aria-describedby=described(&p.errors, "to")/>
                    {field_error(&p.errors, "to")}
                </div>
                <button type="submit" class="button">"Show"</button>
            </form>
            {none.then(|| view! { <p data-testid="recovery-none">"No live 402s in this range."</p> })}
            <div class="table-wrap"><table class="table" data-testid="funnel">
                <thead><tr>
                    <th scope="col">"Code"</th><th scope="col" class="num">"402s"</th><th scope="col" class="num">"Fix page opened"</th>
                    <th scope="col" class="num">"Fix completed"</th><th scope="col" class="num">"Called again"</th>
                    <th scope="col" class="num">"Recovered runs"</th><th scope="col" class="num">"Median time"</th>
                    <th scope="col" class="num">"p90 time"</th><th scope="col" class="num">"Revenue"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        </section>
        <section class="panel">
            <h2>"Not recovered"</h2>
            <p class="muted">"Organizations whose last run of 402s of a code has no successful call after a fix yet."</p>
            {if no_lost {
                view! { <p>"Every organization refused in this range recovered."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap"><table class="table" data-testid="unrecovered">
                        <thead><tr><th scope="col">"Organization"</th><th scope="col">"Code"</th><th scope="col" class="num">"402s"</th>
                            <th scope="col">"Opened the fix"</th><th scope="col">"Last 402"</th></tr></thead>
                        <tbody>{lost}</tbody>
                    </table></div>
                }.into_any()
            }}
        </section>
    }
}

#[component]
pub fn OrgsAdminPage() -> impl IntoView {
    let q = query_value("q");
    let page = Resource::new(move || q.clone(), get_admin_orgs);
    view! {
        <Title text="Organizations"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <OrgsView page=p/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn OrgsView(page: OrgListPage) -> impl IntoView {
    let p = page;
    let empty = p.rows.is_empty();
    let rows = p
        .rows
        .into_iter()
        .map(|o| {
            view! {
                <tr data-org=o.name.clone()>
                    <td>{org_link(&o.id, &o.name)}{o.suspended.then(|| view! { " " <span class="badge badge-danger">"keys suspended"</span> })}</td>
                    <td>{o.plan}</td>
                    <td><span class="badge">{o.status}</span></td>
                    <td class="num">{group(o.included)}</td>
                    <td class="num">{group(o.purchased)}</td>
                    <td class="num">{group(o.refusals_7d)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel">
            <h1>"Organizations"</h1>
            <form method="get" action="/admin/orgs" role="search" class="filters">
                <div class="field">
                    <label for="org-search">"Name, member email or id"</label>
                    <input id="org-search" name="q" type="search" value=p.q.clone()/>
                </div>
                <button type="submit" class="button">"Search"</button>
            </form>
            {empty.then(|| view! { <p data-testid="orgs-none">"No organization matches."</p> })}
            <div class="table-wrap"><table class="table" data-testid="orgs">
                <thead><tr>
                    <th scope="col">"Organization"</th><th scope="col">"Plan"</th><th scope="col">"Status"</th>
                    <th scope="col" class="num">"Included credits"</th><th scope="col" class="num">"Purchased credits"</th>
                    <th scope="col" class="num">"402s (7 days)"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        </section>
    }
}

#[component]
pub fn OrgAdminPage() -> impl IntoView {
    let viewer = use_viewer();
    let id = use_params_map().read_untracked().get("id").unwrap_or_default();
    let page = Resource::new(move || id.clone(), get_admin_org);
    view! {
        <Title text="Organization"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                match page.await {
                    Ok(p) => view! { <OrgView page=p viewer=v/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn table<H: IntoView, B: IntoView>(id: &'static str, head: H, body: B) -> impl IntoView {
    view! { <div class="table-wrap"><table class="table" data-testid=id><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div> }
}

fn audit_table(rows: Vec<AuditRow>, with_org: bool) -> impl IntoView {
    let body = rows
        .into_iter()
        .map(|r| {
            let org = (with_org && !r.org_id.is_empty()).then(|| org_link(&r.org_id, &r.org_name));
            let action = r.action.clone();
            view! {
                <tr data-action=action>
                    <td>{r.at}</td>
                    <td>{r.actor}</td>
                    {with_org.then(|| view! { <td>{org}</td> })}
                    <td><code>{r.action}</code></td>
                    <td><code class="wrap">{r.details}</code></td>
                    <td><code class="wrap" data-testid="before">{r.before}</code></td>
                    <td><code class="wrap" data-testid="after">{r.after}</code></td>
                    <td><code>{r.request_id}</code></td>
                </tr>
            }
        })
        .collect_view();
    let head = view! {
        <th scope="col">"When (UTC)"</th><th scope="col">"Who"</th>
        {with_org.then(|| view! { <th scope="col">"Organization"</th> })}
        <th scope="col">"Action"</th><th scope="col">"Details"</th><th scope="col">"Before"</th><th scope="col">"After"</th>
        <th scope="col">"Request"</th>
    };
    table("audit", head, body)
}

#[component]
fn OrgView(page: OrgPage, viewer: Viewer) -> impl IntoView {
    let p = page;
    let adjust = FormState::new(&viewer, "adjust");
    let suspend = FormState::new(&viewer, "suspend");
    let refund = FormState::new(&viewer, "refund");
    let sub = match p.subscription.clone() {
        Some((plan, status, period, next)) => view! {
            <p data-testid="subscription"><strong>{plan}</strong> " · " <span class="badge">{status}</span> " · " {period}
                {(!next.is_empty()).then(|| view! { " · then " {next} })}</p>
        }
        .into_any(),
        None => view! { <p>"No subscription."</p> }.into_any(),
    };
    let members = p
        .members
        .iter()
        .map(|(email, name, role, joined)| view! { <tr><td>{email.clone()}</td><td>{name.clone()}</td><td>{role.clone()}</td><td>{joined.clone()}</td></tr> })
        .collect_view();
    let keys = p
        .keys
        .iter()
        .map(|(name, mode, shown, created, used, state)| {
            view! { <tr><td>{name.clone()}</td><td>{mode.clone()}</td><td><code>{shown.clone()}</code></td><td>{created.clone()}</td><td>{used.clone()}</td><td>{state.clone()}</td></tr> }
        })
        .collect_view();
    let ledger = p
        .ledger
        .iter()
        .map(|(at, kind, memo, inc, pur, sand, rid)| {
            view! { <tr><td>{at.clone()}</td><td>{kind.clone()}</td><td>{memo.clone()}</td><td class="num">{*inc}</td><td class="num">{*pur}</td><td class="num">{*sand}</td><td><code>{rid.clone()}</code></td></tr> }
        })
        .collect_view();
    let invoices = p
        .invoices
        .iter()
        .map(|(_, number, purpose, status, total, created)| {
            view! { <tr><td>{number.clone()}</td><td>{purpose.clone()}</td><td><span class="badge">{status.clone()}</span></td><td class="num">{total.clone()}</td><td>{created.clone()}</td></tr> }
        })
        .collect_view();
    let charges = p
        .charges
        .iter()
        .map(|(at, amount, status, failure)| view! { <tr><td>{at.clone()}</td><td class="num">{amount.clone()}</td><td>{status.clone()}</td><td>{failure.clone()}</td></tr> })
        .collect_view();
    let usage = p
        .usage
        .iter()
        .map(|(mode, outcome, calls, credits)| view! { <tr><td>{mode.clone()}</td><td>{outcome.clone()}</td><td class="num">{group(*calls)}</td><td class="num">{group(*credits)}</td></tr> })
        .collect_view();
    let history = p
        .subscription_history
        .iter()
        .map(|(at, action, details)| view! { <tr><td>{at.clone()}</td><td><code>{action.clone()}</code></td><td><code class="wrap">{details.clone()}</code></td></tr> })
        .collect_view();
    let suspended = p.suspended.is_some();
    let typed = |f: &FormState, name: &str, default: &str| if f.typed() { f.value(name) } else { default.to_string() };
    let account = typed(&adjust, "account", "purchased");
    let direction = typed(&adjust, "direction", "add");
    view! {
        <section class="panel">
            <h1 data-testid="org-name">{p.name.clone()}</h1>
            <p class="muted">"Id " <code>{p.id.clone()}</code> " · since " {p.created.clone()}</p>
            {sub}
            <dl class="facts">
                <dt>"Included credits"</dt><dd data-testid="included">{group(p.included)}</dd>
                <dt>"Purchased credits"</dt><dd data-testid="purchased">{group(p.purchased)}</dd>
                <dt>"Sandbox credits"</dt><dd>{group(p.sandbox)}</dd>
            </dl>
            <details><summary>"Subscription history"</summary>
                {table("subscription-history", view! { <th scope="col">"When"</th><th scope="col">"What"</th><th scope="col">"Details"</th> }, history)}
            </details>
            <p><a href=format!("/admin/audit?org={}", p.id)>"Its whole audit trail"</a> " · "
                <a href=format!("/admin/recovery?org={}", p.id)>"Its 402 recovery"</a></p>
        </section>
        <section class="panel" id="adjust">
            <h2>"Adjust credits"</h2>
            <p class="muted">"Posted through the ledger, with the reason and the balances before and after in the audit log. A balance never goes below zero."</p>
            {adjust.banner()}
            <form method="post" action="/api/adjust_credits" novalidate>
                <Csrf token=viewer.csrf.clone()/>
                <input type="hidden" name="org_id" value=p.id.clone()/>
                <input type="hidden" name="idempotency_key" value=p.idempotency_key.clone()/>
                <fieldset class="field" class:field-invalid=adjust.has_error("direction")>
                    <legend>"Add or remove"</legend>
                    <label class="check"><input type="radio" name="direction" value="add" checked=direction == "add"/>" Add"</label>
                    <label class="check"><input type="radio" name="direction" value="remove" checked=direction == "remove"/>" Remove"</label>
                    {adjust.error("direction")}
                </fieldset>
                <fieldset class="field" class:field-invalid=adjust.has_error("account")>
                    <legend>"Which credits"</legend>
                    <label class="check"><input type="radio" name="account" value="purchased" checked=account == "purchased"/>" Purchased (never expire)"</label>
                    <label class="check"><input type="radio" name="account" value="included" checked=account == "included"/>" Included (expire at the period's end)"</label>
                    {adjust.error("account")}
                </fieldset>
                <div class="field" class:field-invalid=adjust.has_error("amount")>
                    <label for="adjust-amount">"Credits"</label>
                    <input id="adjust-amount" name="amount" type="text" inputmode="numeric" value=adjust.value("amount")
                        aria-invalid=adjust.has_error("amount").then_some("true") aria-describedby=adjust.has_error("amount").then_some("amount-error")/>
                    {adjust.error("amount")}
                </div>
                <div class="field" class:field-invalid=adjust.has_error("reason")>
                    <label for="adjust-reason">"Reason"</label>
                    <input id="adjust-reason" name="reason" type="text" value=adjust.value("reason")
                        aria-invalid=adjust.has_error("reason").then_some("true") aria-describedby=adjust.has_error("reason").then_some("reason-error")/>
                    {adjust.error("reason")}
                </div>
                <button type="submit" class="button" data-testid="adjust">"Adjust"</button>
            </form>
        </section>
        <section class="panel" id="keys">
            <h2>"API keys"</h2>
            {suspend.banner()}
            {match p.suspended.clone() {
                Some(at) => view! {
                    <p class="banner banner-error" data-testid="suspended">"Every key is suspended since " {at} ": " {p.suspended_reason.clone()}</p>
                }.into_any(),
                None => view! { <p>"The keys work."</p> }.into_any(),
            }}
            <form method="post" action="/api/set_keys_suspended">
                <Csrf token=viewer.csrf.clone()/>
                <input type="hidden" name="org_id" value=p.id.clone()/>
                <input type="hidden" name="suspend" value=if suspended { "false" } else { "true" }/>
                {(!suspended).then(|| view! {
                    <div class="field" class:field-invalid=suspend.has_error("reason")>
                        <label for="suspend-reason">"Reason for the suspension"</label>
                        <input id="suspend-reason" name="reason" type="text" value=suspend.value("reason")
                            aria-invalid=suspend.has_error("reason").then_some("true") aria-describedby=suspend.has_error("reason").then_some("reason-error")/>
                        {suspend.error("reason")}
                    </div>
                })}
                <button type="submit" class=if suspended { "button" } else { "button button-danger" } data-testid="suspend">
                    {if suspended { "Restore every key" } else { "Suspend every key" }}
                </button>
            </form>
            {table("keys", view! { <th scope="col">"Name"</th><th scope="col">"Mode"</th><th scope="col">"Key"</th><th scope="col">"Created"</th><th scope="col">"Last used"</th><th scope="col">"State"</th> }, keys)}
        </section>
        <section class="panel">
            <h2>"Members"</h2>
            {table("members", view! { <th scope="col">"Email"</th><th scope="col">"Name"</th><th scope="col">"Role"</th><th scope="col">"Joined"</th> }, members)}
        </section>
        <section class="panel">
            <h2>"Usage (30 days)"</h2>
            {table("usage", view! { <th scope="col">"Mode"</th><th scope="col">"Outcome"</th><th scope="col" class="num">"Calls"</th><th scope="col" class="num">"Credits"</th> }, usage)}
        </section>
        <section class="panel">
            <h2>"Ledger (latest 50)"</h2>
            {table("ledger", view! { <th scope="col">"When"</th><th scope="col">"Kind"</th><th scope="col">"Memo"</th><th scope="col" class="num">"Included"</th><th scope="col" class="num">"Purchased"</th><th scope="col" class="num">"Sandbox"</th><th scope="col">"Request"</th> }, ledger)}
        </section>
        <section class="panel" id="refund">
            <h2>"Refund"</h2>
            <p class="muted">"Sends money back to the card that paid, through the payment processor; the invoice shows it and the audit log keeps who, how much and why. Credits stay as they are: remove them with an adjustment if they should go."</p>
            {refund.banner()}
            {if p.refundable.is_empty() {
                view! { <p data-testid="nothing-to-refund">"No paid invoice to refund."</p> }.into_any()
            } else {
                let options = p.refundable.iter().map(|(id, number, left)| {
                    let chosen = refund.value("invoice_id") == *id;
                    view! { <option value=id.clone() selected=chosen>{format!("{number} ({left} refundable)")}</option> }
                }).collect_view();
                view! {
                    <form method="post" action="/api/refund_invoice" novalidate>
                        <Csrf token=viewer.csrf.clone()/>
                        <input type="hidden" name="org_id" value=p.id.clone()/>
                        <input type="hidden" name="idempotency_key" value=p.refund_key.clone()/>
                        <div class="field">
                            <label for="refund-invoice">"Invoice"</label>
                            <select id="refund-invoice" name="invoice_id">{options}</select>
                        </div>
                        <div class="field" class:field-invalid=refund.has_error("amount")>
                            <label for="refund-amount">"Amount (empty: all that is left)"</label>
                            <input id="refund-amount" name="amount" type="text" inputmode="decimal" placeholder="10.00" value=refund.value("amount")
                                aria-invalid=refund.has_error("amount").then_some("true") aria-describedby=refund.has_error("amount").then_some("amount-error")/>
                            {refund.error("amount")}
                        </div>
                        <div class="field" class:field-invalid=refund.has_error("reason")>
                            <label for="refund-reason">"Reason"</label>
                            <input id="refund-reason" name="reason" type="text" value=refund.value("reason")
                                aria-invalid=refund.has_error("reason").then_some("true") aria-describedby=refund.has_error("reason").then_some("reason-error")/>
                            {refund.error("reason")}
                        </div>
                        <button type="submit" class="button button-danger" data-testid="refund">"Refund"</button>
                    </form>
                }.into_any()
            }}
        </section>
        <section class="panel">
            <h2>"Invoices"</h2>
            {table("invoices", view! { <th scope="col">"Number"</th><th scope="col">"For"</th><th scope="col">"Status"</th><th scope="col" class="num">"Total"</th><th scope="col">"Created"</th> }, invoices)}
            {(!p.disputes.is_empty()).then(|| {
                let rows = p.disputes.iter().map(|(at, invoice, amount, reason, status)| view! {
                    <tr data-dispute-status=status.clone()><td>{at.clone()}</td><td>{invoice.clone()}</td><td class="num">{amount.clone()}</td><td>{reason.clone()}</td><td><span class="badge">{status.clone()}</span></td></tr>
                }).collect_view();
                view! {
                    <h2>"Disputes"</h2>
                    <p class="muted">"Decided with the bank through the processor's dashboard; a lost one is listed by reconciliation."</p>
                    {table("disputes", view! { <th scope="col">"Opened"</th><th scope="col">"Invoice"</th><th scope="col" class="num">"Amount"</th><th scope="col">"Reason"</th><th scope="col">"Status"</th> }, rows)}
                }
            })}
            <h2>"Charges"</h2>
            {table("charges", view! { <th scope="col">"When"</th><th scope="col" class="num">"Amount"</th><th scope="col">"Status"</th><th scope="col">"Failure"</th> }, charges)}
        </section>
        <section class="panel">
            <h2>"Audit trail (latest 50)"</h2>
            {audit_table(p.audit.clone(), false)}
        </section>
    }
}

#[component]
pub fn ReconcileAdminPage() -> impl IntoView {
    let query = ReconcileQuery { since: query_value("since"), until: query_value("until") };
    let page = Resource::new(move || query.clone(), get_admin_reconcile);
    view! {
        <Title text="Reconciliation"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <ReconcileView page=p/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ReconcileView(page: ReconcilePage) -> impl IntoView {
    let p = page;
    let rows = p
        .differences
        .iter()
        .map(|d| {
            let org = d.org_id.clone().map(|id| view! { <a href=format!("/admin/orgs/{id}")>"organization"</a> });
            view! {
                <tr data-kind=d.kind.clone()>
                    <th scope="row">{d.label.clone()}</th>
                    <td>{d.invoice.clone().unwrap_or_else(|| "-".into())} " " {org}</td>
                    <td><code>{d.reference.clone().unwrap_or_else(|| "-".into())}</code></td>
                    <td>{d.ours.clone()}</td>
                    <td>{d.theirs.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let none = p.differences.is_empty() && p.errors.is_empty();
    let problem = p.errors.iter().find(|(f, _)| f.is_empty()).map(|(_, m)| view! { <p class="banner banner-error" role="alert">{m.clone()}</p> });
    view! {
        <section class="panel">
            <h1>"Reconciliation"</h1>
            <p class="muted">"Tollgate's charges and refunds of a period beside the payment processor's (" {p.processor.clone()} "): every difference between them."</p>
            <form method="get" action="/admin/reconcile" class="filters">
                <div class="field" class:field-invalid=p.errors.iter().any(|(f, _)| f == "since")>
                    <label for="since">"Since (UTC date)"</label>
                    <input id="since" name="since" type="date" value=p.since.clone() aria-describedby=described(&p.errors, "since")/>
                    {field_error(&p.errors, "since")}
                </div>
                <div class="field" class:field-invalid=p.errors.iter().any(|(f, _)| f == "until")>
                    <label for="until">"Until (UTC date, not included)"</label>
                    <input id="until" name="until" type="date" value=p.until.clone() aria-describedby=described(&p.errors, "until")/>
                    {field_error(&p.errors, "until")}
                </div>
                <button type="submit" class="button">"Compare"</button>
            </form>
            {problem}
            <p data-testid="reconcile-counts">{p.charges} " charges here · " {p.payments} " payments at the processor · "
                <strong data-testid="reconcile-differences">{p.differences.len()} " differences"</strong></p>
            {none.then(|| view! { <p class="banner banner-success" data-testid="reconciled">"Everything matches."</p> })}
            {(!p.differences.is_empty()).then(|| view! {
                <div class="table-wrap">
                    <table class="table" data-testid="differences">
                        <thead><tr><th scope="col">"Difference"</th><th scope="col">"Invoice"</th><th scope="col">"Processor's payment"</th><th scope="col">"Here"</th><th scope="col">"At the processor"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            })}
            <p class="muted">"The same report on the command line: " <code>"tollgate reconcile --since 2026-11-01"</code></p>
        </section>
    }
}

#[component]
pub fn AuditAdminPage() -> impl IntoView {
    let query = AuditQuery {
        actor: query_value("actor"),
        org: query_value("org"),
        action: query_value("action"),
        from: query_value("from"),
        to: query_value("to"),
        after: query_value("after"),
    };
    let page = Resource::new(move || query.clone(), get_admin_audit);
    view! {
        <Title text="Audit log"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <AuditView page=p/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn audit_query_string(q: &AuditQuery, after: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("actor", &q.actor), ("org", &q.org), ("action", &q.action), ("from", &q.from), ("to", &q.to)] {
        if !v.trim().is_empty() {
            parts.push(format!("{k}={}", encode_component(v.trim())));
        }
    }
    if let Some(a) = after {
        parts.push(format!("after={}", encode_component(a)));
    }
    parts.join("&")
}

#[component]
fn AuditView(page: AuditPage) -> impl IntoView {
    let p = page;
    let q = p.query.clone();
    let text = |name: &'static str, label: &'static str, value: String, placeholder: &'static str| {
        let id = format!("audit-{name}");
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input id=id name=name type="text" value=value placeholder=placeholder
                    aria-invalid=described(&p.errors, name).map(|_| "true") aria-describedby=described(&p.errors, name)/>
                {field_error(&p.errors, name)}
            </div>
        }
    };
    let options = p
        .actions
        .iter()
        .map(|a| view! { <option value=a.clone() selected=*a == q.action>{a.clone()}</option> })
        .collect_view();
    let csv = format!("/admin/audit.csv?{}", audit_query_string(&q, None));
    let next = p.next.clone().map(|n| format!("/admin/audit?{}", audit_query_string(&q, Some(&n))));
    let empty = p.rows.is_empty() && p.errors.is_empty();
    view! {
        <section class="panel">
            <h1>"Audit log"</h1>
            <p class="muted">"Every admin, billing and key action, newest first; entries are never changed or removed."</p>
            <form method="get" action="/admin/audit" class="filters">
                {text("actor", "Who (email)", q.actor.clone(), "ops@example.com")}
                {text("org", "Organization (id)", q.org.clone(), "")}
                <div class="field">
                    <label for="audit-action">"Action"</label>
                    <select id="audit-action" name="action"
                        aria-invalid=described(&p.errors, "action").map(|_| "true") aria-describedby=described(&p.errors, "action")>
                        <option value="" selected=q.action.is_empty()>"Any"</option>
                        {options}
                    </select>
                    {field_error(&p.errors, "action")}
                </div>
                {text("from", "From (UTC date)", q.from.clone(), "2026-11-01")}
                {text("to", "To (UTC date, included)", q.to.clone(), "2026-11-30")}
                <button type="submit" class="button">"Filter"</button>
                " " <a href=csv rel="external" download="audit.csv" data-testid="audit-csv">"Export CSV"</a>
            </form>
            {field_error(&p.errors, "after")}
            {empty.then(|| view! { <p data-testid="audit-none">"No entry matches."</p> })}
            {audit_table(p.rows.clone(), true)}
            {next.map(|href| view! { <p><a href=href class="button" data-testid="audit-next">"Older entries"</a></p> })}
        </section>
    }
}

#[component]
pub fn PlansAdminPage() -> impl IntoView {
    let viewer = use_viewer();
    let page = Resource::new(|| (), |_| get_admin_plans());
    view! {
        <Title text="Plans"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                match page.await {
                    Ok(p) => view! { <PlansView page=p viewer=v/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn PlansView(page: PlansAdminPage, viewer: Viewer) -> impl IntoView {
    let notice = FormState::new(&viewer, "plans");
    let f = FormState::new(&viewer, "plan");
    let edit_id = query_value("edit");
    let editing: Option<PlanAdminRow> = page.plans.iter().find(|p| p.id == edit_id).cloned();
    let shown = {
        let f = f.clone();
        let editing = editing.clone();
        move |field: &str| -> String {
            if f.typed() {
                return f.value(field);
            }
            let flag = |b: bool| if b { "on".to_string() } else { String::new() };
            match &editing {
                None => match field {
                    "currency" => "USD".into(),
                    "visible" => "on".into(),
                    "rate_limit_per_sec" => "10".into(),
                    "trial_days" => "0".into(),
                    _ => String::new(),
                },
                Some(p) => match field {
                    "code" => p.code.clone(),
                    "name" => p.name.clone(),
                    "price" => p.price_input.clone(),
                    "currency" => p.currency.clone(),
                    "included_credits" => p.included_credits.to_string(),
                    "rate_limit_per_sec" => p.rate_limit_per_sec.to_string(),
                    "endpoints" => p.endpoints.join(","),
                    "requires_approval" => flag(p.requires_approval),
                    "trial_days" => p.trial_days.to_string(),
                    "visible" => flag(p.visible),
                    "signup" => flag(p.signup),
                    _ => String::new(),
                },
            }
        }
    };
    let rows = page
        .plans
        .iter()
        .map(|p| {
            let roles = [
                p.signup.then_some("sign-up plan"),
                (p.trial_days > 0).then_some("trial"),
                p.requires_approval.then_some("needs approval"),
                p.archived.then_some("archived"),
                (!p.visible && !p.archived).then_some("hidden"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            let trial = if p.trial_days > 0 { format!("{} days", p.trial_days) } else { "—".into() };
            view! {
                <tr data-plan=p.code.clone()>
                    <td><strong>{p.name.clone()}</strong> " " <code>{p.code.clone()}</code></td>
                    <td class="num">{p.price.clone()}</td>
                    <td class="num" data-testid="plan-included">{group(p.included_credits)}</td>
                    <td class="num">{format!("{}/s", p.rate_limit_per_sec)}</td>
                    <td>{p.endpoints.join(", ")}</td>
                    <td>{trial}</td>
                    <td>{roles}</td>
                    <td class="num">{p.subscribers}</td>
                    <td class="actions">
                        <a href=format!("/admin/plans?edit={}#plan-form", p.id) rel="external" class="button button-small" data-testid="plan-edit">"Edit"</a>
                        <form method="post" action="/api/set_plan_archived" class="inline-form">
                            <Csrf token=viewer.csrf.clone()/>
                            <input type="hidden" name="plan_id" value=p.id.clone()/>
                            <input type="hidden" name="archive" value=if p.archived { "false" } else { "true" }/>
                            <button type="submit" class="button button-small">{if p.archived { "Restore" } else { "Archive" }}</button>
                        </form>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let typed_endpoints = shown("endpoints");
    let endpoints = page
        .endpoint_choices
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let checked = typed_endpoints.split(',').any(|x| x == e);
            let label = if e == "*" { "every endpoint".to_string() } else { e.clone() };
            view! { <label class="check"><input type="checkbox" name=format!("endpoints[{i}]") value=e.clone() checked=checked/>" " {label}</label> }
        })
        .collect_view();
    let text = {
        let f = f.clone();
        let shown = shown.clone();
        move |name: &'static str, label: &'static str, hint: &'static str| {
            let id = format!("plan-{name}");
            view! {
                <div class="field" class:field-invalid=f.has_error(name)>
                    <label for=id.clone()>{label}</label>
                    <input id=id name=name type="text" value=shown(name)
                        aria-invalid=f.has_error(name).then_some("true") aria-describedby=f.has_error(name).then(|| format!("{name}-error"))/>
                    {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
                    {f.error(name)}
                </div>
            }
        }
    };
    let check = {
        let f = f.clone();
        let shown = shown.clone();
        move |name: &'static str, label: &'static str| {
            view! {
                <div class="field" class:field-invalid=f.has_error(name)>
                    <label class="check"><input type="checkbox" name=name value="on" checked=!shown(name).is_empty()/>" " {label}</label>
                    {f.error(name)}
                </div>
            }
        }
    };
    let is_edit = editing.is_some();
    view! {
        <section class="panel">
            <h1>"Plans"</h1>
            <p class="muted">
                "A change of price or included credits reaches subscribers at their next period, and they are told by email "
                "when you save it. An archived plan keeps its subscribers and is offered to nobody new. "
                "The sign-up plan is the one new organizations start on; a plan with trial days offers that trial."
            </p>
            {notice.banner()}
            <div class="table-wrap"><table class="table" data-testid="plans">
                <thead><tr>
                    <th scope="col">"Plan"</th><th scope="col" class="num">"Price a month"</th><th scope="col" class="num">"Included credits"</th>
                    <th scope="col" class="num">"Rate limit"</th><th scope="col">"Endpoints"</th><th scope="col">"Trial"</th>
                    <th scope="col">"Roles"</th><th scope="col" class="num">"Subscribers"</th><th scope="col"></th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table></div>
        </section>
        <section class="panel" id="plan-form">
            <h2 id="plan-new">{match &editing { Some(p) => format!("Edit {}", p.name), None => "Create a plan".to_string() }}</h2>
            {f.banner()}
            <form method="post" action="/api/save_plan" novalidate>
                <Csrf token=viewer.csrf.clone()/>
                <input type="hidden" name="plan_id" value=editing.as_ref().map(|p| p.id.clone()).unwrap_or_default()/>
                {if is_edit {
                    view! { <p>"Code " <code>{shown("code")}</code> " (links and routes name the plan by it, so it stays)"</p> }.into_any()
                } else {
                    text("code", "Code", "Lowercase letters, digits, - or _; it cannot change later.").into_any()
                }}
                {text("name", "Name", "")}
                {text("price", "Price a month", "For example 29.00; 0 for a free plan.")}
                {text("currency", "Currency", "Three letters, such as USD.")}
                {text("included_credits", "Included credits a month", "")}
                {text("rate_limit_per_sec", "Rate limit (requests per second)", "")}
                <fieldset class="field" class:field-invalid=f.has_error("endpoints")>
                    <legend>"Built-in endpoints included"</legend>
                    <p class="hint">"Provider routes name their plans on the routes page."</p>
                    {endpoints}
                    {f.error("endpoints")}
                </fieldset>
                {text("trial_days", "Trial days", "0: no trial. A paid plan without approval can offer one.")}
                {check("requires_approval", "Needs an admin's approval")}
                {check("visible", "Offered to customers")}
                {check("signup", "New organizations start on this plan")}
                <button type="submit" class="button" data-testid="plan-save">{if is_edit { "Save plan" } else { "Create plan" }}</button>
                {is_edit.then(|| view! { " " <a href="/admin/plans" rel="external">"Cancel"</a> })}
            </form>
        </section>
    }
}
