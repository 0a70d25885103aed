//! The platform admin console (operators of this Tollgate, not customers).

use crate::components::{use_viewer, Csrf, ErrorView, FormState, Loading};
use super::console::ConsoleNav;
use crate::server_fns::{get_admin_approvals, get_admin_outbox, get_admin_routes};
use crate::types::{RouteView, RoutesPage, Viewer};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn OutboxPage() -> impl IntoView {
    let outbox = Resource::new(|| (), |_| get_admin_outbox());
    view! {
        <Title text="Email outbox"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match outbox.await {
                    Ok(entries) => {
                        let empty = entries.is_empty();
                        let items = entries
                            .into_iter()
                            .map(|e| {
                                let kind = e.kind.clone();
                                view! {
                                <article class="card outbox-entry" data-kind=kind>
                                    <header>
                                        <strong>{e.subject}</strong>
                                        <span class="muted">" to " <span class="outbox-to">{e.to}</span></span>
                                    </header>
                                    <p class="muted">
                                        {e.created} " · " {e.kind} " · "
                                        {e.sent.map(|s| format!("sent {s}")).unwrap_or_else(|| "not sent (no SMTP configured, or pending)".into())}
                                    </p>
                                    {e.last_error.map(|err| view! { <p class="field-error">{err}</p> })}
                                    <pre class="outbox-body">{e.body}</pre>
                                </article>
                                }
                            })
                            .collect_view();
                        view! {
                            <section>
                                <h1>"Email outbox"</h1>
                                <p class="muted">"Every email Tollgate sends, newest first."</p>
                                {empty.then(|| view! { <p>"No emails yet."</p> })}
                                {items}
                            </section>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn RoutesAdminPage() -> impl IntoView {
    let viewer = use_viewer();
    let page = Resource::new(|| (), |_| get_admin_routes());
    view! {
        <Title text="API routes"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                match page.await {
                    Ok(p) => view! { <RoutesView page=p viewer=v/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn RouteRow(route: RouteView, csrf: String) -> impl IntoView {
    let (label, next, class) = if route.active {
        ("Turn off", "false", "button button-small button-danger")
    } else {
        ("Turn on", "true", "button button-small")
    };
    let plans = if route.plans.is_empty() {
        "every plan".to_string()
    } else {
        route.plans.join(", ")
    };
    let prefix = route.path_prefix.clone();
    view! {
        <tr data-route=prefix>
            <td><code>{route.path_prefix}</code>{(!route.description.is_empty()).then(|| view! { <br/><span class="muted">{route.description.clone()}</span> })}</td>
            <td><code>{route.upstream_url}</code></td>
            <td>{route.endpoint}</td>
            <td><code>{route.scope}</code></td>
            <td>{route.price}</td>
            <td>{plans}</td>
            <td>{format!("{} ms", route.timeout_ms)}</td>
            <td><span class="badge" data-testid="route-status">{if route.active { "on" } else { "off" }}</span></td>
            <td class="actions">
                // A full page load: the edit form is a plain form like the others.
                <a href=format!("/admin/routes?edit={}", route.id) rel="external" class="button button-small">"Edit"</a>
                <form method="post" action="/api/set_route_active" class="inline-form">
                    <Csrf token=csrf/>
                    <input type="hidden" name="route_id" value=route.id/>
                    <input type="hidden" name="active" value=next/>
                    <button type="submit" class=class>{label}</button>
                </form>
            </td>
        </tr>
    }
}

#[component]
fn RoutesView(page: RoutesPage, viewer: Viewer) -> impl IntoView {
    let f = FormState::new(&viewer, "routes");
    let edit_id = use_query_map()
        .read_untracked()
        .get("edit")
        .unwrap_or_default();
    let editing: Option<RouteView> = page.routes.iter().find(|r| r.id == edit_id).cloned();
    // What the form shows: what was typed (after a failed post), else the
    // route being edited, else nothing.
    let shown = {
        let f = f.clone();
        let editing = editing.clone();
        move |field: &str| -> String {
            if f.typed() {
                return f.value(field);
            }
            let Some(r) = &editing else {
                return String::new();
            };
            match field {
                "path_prefix" => r.path_prefix.clone(),
                "upstream_url" => r.upstream_url.clone(),
                "endpoint" => r.endpoint.clone(),
                "scope" => r.scope.clone(),
                "pricing" => r.pricing.clone(),
                "price" => r.credits.to_string(),
                "rate_per_1k" => r.rate_per_1k.to_string(),
                "plans" => r.plans.join(","),
                "timeout_ms" => r.timeout_ms.to_string(),
                "description" => r.description.clone(),
                "test_upstream_url" => r.test_upstream_url.clone(),
                "test_example" => r.test_example.clone(),
                _ => String::new(),
            }
        }
    };
    let empty = page.routes.is_empty();
    let rows = page
        .routes
        .into_iter()
        .map(|r| view! { <RouteRow route=r csrf=viewer.csrf.clone()/> })
        .collect_view();
    let typed_plans = shown("plans");
    let plans = page
        .plans
        .iter()
        .enumerate()
        .map(|(i, (code, name))| {
            let field = format!("plans[{i}]");
            let checked = typed_plans.split(',').any(|p| p == code);
            view! { <label class="check"><input type="checkbox" name=field value=code.clone() checked=checked/>" " {name.clone()}</label> }
        })
        .collect_view();
    let metered = shown("pricing") == "metered";
    let test_example_value = shown("test_example");
    let text_field = move |f: &FormState,
                           name: &'static str,
                           label: &'static str,
                           placeholder: &'static str,
                           hint: &'static str| {
        let id = format!("route-{name}");
        view! {
            <div class="field" class:field-invalid=f.has_error(name)>
                <label for=id.clone()>{label}</label>
                <input id=id name=name type="text" placeholder=placeholder value=shown(name)/>
                {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
                {f.error(name)}
            </div>
        }
    };
    view! {
        <section class="panel">
            <h1>"API routes"</h1>
            <p class="muted">
                "Each route sends calls under its path prefix to your upstream, after the gateway has checked "
                "the key, the plan, the rate limit and the credits. The upstream gets the caller in "
                <code>"Tollgate-Organization"</code> ", " <code>"Tollgate-Key-Id"</code> ", "
                <code>"Tollgate-Key-Mode"</code> " and " <code>"Tollgate-Plan"</code> " (never the key), and may report a metered "
                "call's cost in a " <code>"Tollgate-Cost"</code> " response header or an OpenAI-style "
                <code>"usage.total_tokens"</code> "."
            </p>
            {f.banner()}
            <div class="table-wrap">
                <table class="table" data-testid="routes">
                    <thead><tr>
                        <th>"Prefix"</th><th>"Upstream"</th><th>"Endpoint"</th><th>"Scope"</th><th>"Price"</th>
                        <th>"Plans"</th><th>"Timeout"</th><th>"Status"</th><th></th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {empty.then(|| view! { <p>"No routes yet: only the built-in sample API answers on /v1."</p> })}
        </section>
        <section class="panel" id="route-form">
            <h2>{match &editing {
                Some(r) => format!("Edit the route {}", r.path_prefix),
                None => "Add a route".to_string(),
            }}</h2>
            <form method="post" action="/api/save_route" novalidate>
                <Csrf token=viewer.csrf.clone()/>
                <input type="hidden" name="route_id" value=editing.as_ref().map(|r| r.id.clone()).unwrap_or_default()/>
                {text_field(&f, "path_prefix", "Path prefix", "/v1/chat", "Calls to this prefix and below it; the rest of the path is appended to the upstream URL.")}
                {text_field(&f, "upstream_url", "Upstream URL", "https://models.internal/v1", "")}
                {text_field(&f, "endpoint", "Endpoint name", "chat", "How usage and invoices name these calls.")}
                {text_field(&f, "scope", "Key scope", "chat", "Keys need this scope (or *) to call the route.")}
                <fieldset class="field">
                    <legend>"Pricing"</legend>
                    <label class="check"><input type="radio" name="pricing" value="fixed" checked=!metered/>" Fixed: the price below per call"</label>
                    <label class="check"><input type="radio" name="pricing" value="metered" checked=metered/>" Metered: reserve the price below, capture what the upstream reports"</label>
                    {f.error("pricing")}
                </fieldset>
                {text_field(&f, "price", "Price (credits per call, or most per call when metered)", "1", "")}
                {text_field(&f, "rate_per_1k", "Credits per 1,000 tokens (metered, for usage.total_tokens)", "0", "")}
                <fieldset class="field" class:field-invalid=f.has_error("plans")>
                    <legend>"Included in"</legend>
                    <p class="hint">"None ticked: every plan."</p>
                    {plans}
                    {f.error("plans")}
                </fieldset>
                {text_field(&f, "timeout_ms", "Timeout (milliseconds until the upstream answers)", "30000", "")}
                {text_field(&f, "description", "Description", "Chat completions", "")}
                {text_field(&f, "test_upstream_url", "Test upstream URL (optional)", "https://models.staging.internal/v1",
                    "Where calls with test keys go. Test keys never reach the upstream above; with no test upstream they get the example answer below.")}
                <div class="field" class:field-invalid=f.has_error("test_example")>
                    <label for="route-test_example">"Example answer for test keys (JSON, optional)"</label>
                    <textarea id="route-test_example" name="test_example" rows="3" placeholder="{\"choices\": []}">{test_example_value}</textarea>
                    {f.error("test_example")}
                </div>
                <button type="submit" class="button">{if editing.is_some() { "Save route" } else { "Add route" }}</button>
                {editing.is_some().then(|| view! { " " <a href="/admin/routes" rel="external">"Cancel"</a> })}
            </form>
        </section>
    }
}

/// The approval queue: subscriptions whose plan needs an admin's decision.
#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let viewer = use_viewer();
    let queue = Resource::new(|| (), |_| get_admin_approvals());
    view! {
        <Title text="Approvals"/>
        <ConsoleNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                match queue.await {
                    Ok(items) => {
                        let f = FormState::new(&v, "approvals");
                        let empty = items.is_empty();
                        let rows = items
                            .into_iter()
                            .map(|a| {
                                let label = format!("Note for {}", a.org_name);
                                view! {
                                    <article class="card approval" data-org=a.org_name.clone()>
                                        <h2>{a.org_name.clone()}</h2>
                                        <p>"Asks for " <strong>{a.plan.clone()}</strong>
                                            {a.replaces.clone().map(|r| view! { " (now on " {r} ")" })}
                                            " · requested " {a.requested.clone()}</p>
                                        <form method="post" action="/api/decide_approval">
                                            <Csrf token=v.csrf.clone()/>
                                            <input type="hidden" name="org_id" value=a.org_id.clone()/>
                                            <input type="hidden" name="request" value=a.request.clone()/>
                                            <div class="field">
                                                <label for=format!("note-{}", a.org_id)>{label}</label>
                                                <textarea id=format!("note-{}", a.org_id) name="note" rows="2"></textarea>
                                            </div>
                                            <button type="submit" name="decision" value="approve" class="button" data-testid="approve">"Approve"</button>
                                            " "
                                            <button type="submit" name="decision" value="reject" class="button button-danger" data-testid="reject">"Reject"</button>
                                        </form>
                                    </article>
                                }
                            })
                            .collect_view();
                        view! {
                            <section class="panel">
                                <h1>"Approvals"</h1>
                                <p class="muted">"Plans that need approval wait here. Approving charges the plan and opens its period; the customer is told either way."</p>
                                {f.banner()}
                                {f.error("note")}
                                {empty.then(|| view! { <p>"Nothing is waiting."</p> })}
                            </section>
                            <div class="cards">{rows}</div>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
