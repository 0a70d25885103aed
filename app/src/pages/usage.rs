//! The customer's usage: the usage page (SVG charts drawn on the server,
//! each with its table), the request log and its entries. Plain GET forms
//! keep every filter in the URL; no script. Times are UTC, and say so.

use crate::components::chart::{Series, StackedBars};
use crate::components::{encode_component, query_value, ErrorView, Loading};
use crate::server_fns::{get_log, get_log_entry, get_usage};
use crate::types::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

pub use crate::types::group;

#[component]
pub fn UsageNav() -> impl IntoView {
    let viewer = crate::components::use_viewer();
    view! {
        <nav class="subnav" aria-label="Account">
            <a href="/account">"Dashboard"</a>
            <a href="/account/usage">"Usage"</a>
            // Billing members see usage, not the log.
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let v = viewer.await;
                    let role = v.user.and_then(|u| u.org).map(|o| o.role).unwrap_or_default();
                    let reads_log = !role.is_empty() && role != "billing";
                    let manages = role == "owner" || role == "admin";
                    view! {
                        {reads_log.then(|| view! { <a href="/account/logs">"Request log"</a> })}
                        {reads_log.then(|| view! { <a href="/account/keys">"API keys"</a> })}
                        {manages.then(|| view! { <a href="/account/members">"Members"</a> })}
                    }
                })}
            </Suspense>
        </nav>
    }
}

/// The warnings crossed, as banners.
#[component]
pub fn Warnings(outlook: OutlookView) -> impl IntoView {
    outlook
        .warnings
        .into_iter()
        .map(|b| {
            let link = b.link.map(|(label, href)| view! { " " <a href=href>{label}</a> });
            view! { <p class="banner banner-warning" role="status" data-banner=b.kind>{b.text} {link}</p> }
        })
        .collect_view()
}

/// "6,200 of 10,000 included credits used, reset on 31 Dec 2026", as a
/// meter, with the purchased and sandbox balances and the forecast.
#[component]
pub fn OutlookPanel(outlook: OutlookView, back: &'static str) -> impl IntoView {
    let o = outlook;
    let reset = (!o.reset_on.is_empty()).then(|| format!(", reset on {}", o.reset_on)).unwrap_or_default();
    let used_text = format!("{} of {} included credits used{reset}", group(o.included_used), group(o.included_of));
    let max = o.included_of.max(1).to_string();
    let value = o.included_used.to_string();
    let high = (o.included_of * i64::from(o.warn_included_pct.unwrap_or(80)) / 100).to_string();
    view! {
        <section class="panel" data-testid="outlook">
            <h2>"Credits"</h2>
            <p data-testid="included-used">{used_text.clone()}</p>
            <meter class="usage-meter" min="0" max=max value=value high=high aria-label=used_text></meter>
            <dl class="facts">
                <dt>"Included left"</dt><dd data-testid="included-left">{group(o.included_left)}</dd>
                <dt>"Purchased"</dt><dd data-testid="purchased-balance">{group(o.purchased)} " (never expire)"</dd>
                <dt>"Sandbox"</dt><dd data-testid="sandbox-balance">{group(o.sandbox)} " test credits"</dd>
            </dl>
            <p data-testid="forecast" class:forecast-warning=o.runs_out>{o.forecast.clone()}</p>
            <p>
                <a class="button" href=format!("/billing/top-up?return_to={}", encode_component(back))>"Top up"</a> " "
                <a class="button button-secondary" href=format!("/billing/plans?return_to={}", encode_component(back))>"Upgrade"</a>
            </p>
        </section>
    }
}

/// A filter's select; `error`, when set, is said under it and tied to it.
fn select_with(name: &'static str, label: &'static str, all: &'static str, choices: Vec<Choice>, selected: String, error: Option<String>) -> impl IntoView {
    let id = format!("filter-{name}");
    let options = choices
        .into_iter()
        .map(|c| {
            let sel = c.value == selected;
            view! { <option value=c.value selected=sel>{c.label}</option> }
        })
        .collect_view();
    let described = error.as_ref().map(|_| format!("{name}-error"));
    let invalid = error.as_ref().map(|_| "true");
    let has_error = error.is_some();
    view! {
        <div class="field" class:field-invalid=has_error>
            <label for=id.clone()>{label}</label>
            <select id=id name=name aria-invalid=invalid aria-describedby=described>
                <option value="" selected=selected.is_empty()>{all}</option>
                {options}
            </select>
            {error.map(|m| view! { <p class="field-error" id=format!("{name}-error")>{m}</p> })}
        </div>
    }
}

fn select(name: &'static str, label: &'static str, all: &'static str, choices: Vec<Choice>, selected: String) -> impl IntoView {
    select_with(name, label, all, choices, selected, None)
}

fn modes() -> Vec<Choice> {
    vec![
        Choice { value: "live".into(), label: "Live".into() },
        Choice { value: "test".into(), label: "Test (sandbox)".into() },
    ]
}

#[component]
pub fn UsagePage() -> impl IntoView {
    let query = UsageQuery { span: query_value("span"), key: query_value("key"), mode: query_value("mode") };
    let page = Resource::new(move || query.clone(), get_usage);
    view! {
        <Title text="Usage"/>
        <UsageNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <UsageView page=p/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

const OUTCOME_NAMES: [(&str, &str); 6] =
    [("2xx", "2xx success"), ("402", "402 payment required"), ("429", "429 rate limited"), ("4xx", "other 4xx"), ("5xx", "5xx"), ("unknown", "unknown")];

fn outcome_name(o: &str) -> String {
    OUTCOME_NAMES.iter().find(|(k, _)| *k == o).map(|(_, n)| n.to_string()).unwrap_or_else(|| o.to_string())
}

#[component]
fn UsageView(page: UsagePage) -> impl IntoView {
    let p = page;
    let q = p.query.clone();
    let csv = format!("/account/usage.csv?{}", q.to_query());
    let labels: Vec<String> = p.buckets.iter().map(|b| b.label.clone()).collect();
    let empty = p.total_calls == 0 && p.total_credits_included + p.total_credits_purchased + p.total_credits_sandbox == 0;
    let filters = view! {
        <form method="get" action="/account/usage" class="row-form filters" data-testid="usage-filters">
            {select("span", "Range", "7 days", p.spans.iter().filter(|s| s.value != "7d").cloned().collect(), if q.span == "7d" { String::new() } else { q.span.clone() })}
            {select("key", "Key", "All keys", p.keys.clone(), q.key.clone())}
            {select("mode", "Mode", "Live and test", modes(), q.mode.clone())}
            <button type="submit" class="button">"Show"</button>
        </form>
    };
    let charts = if empty {
        view! {
            <section class="panel empty-state" data-testid="usage-empty">
                <h2>"No calls in this range yet"</h2>
                <p>"Calls show up here within seconds of being made. Try one in the "
                    <a href="/explorer">"explorer"</a> " with a test key, or read the "
                    <a href="/docs">"quick start"</a> "."</p>
            </section>
        }
        .into_any()
    } else {
        let series: Vec<Series> = p
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| Series {
                name: outcome_name(o),
                class: format!("bar-{o}"),
                values: p.buckets.iter().map(|b| b.calls.get(i).copied().unwrap_or(0)).collect(),
            })
            .collect();
        let head = p.outcomes.iter().map(|o| view! { <th scope="col" class="num">{outcome_name(o)}</th> }).collect_view();
        let rows = p
            .buckets
            .iter()
            .map(|b| {
                let cells = b.calls.iter().map(|c| view! { <td class="num">{group(*c)}</td> }).collect_view();
                let total: i64 = b.calls.iter().sum();
                view! { <tr><th scope="row"><time datetime=b.start.clone()>{b.label.clone()}</time></th>{cells}<td class="num">{group(total)}</td></tr> }
            })
            .collect_view();
        let credit_series = vec![
            Series { name: "included".into(), class: "bar-included".into(), values: p.buckets.iter().map(|b| b.credits_included).collect() },
            Series { name: "purchased".into(), class: "bar-purchased".into(), values: p.buckets.iter().map(|b| b.credits_purchased).collect() },
        ];
        let sandbox_series = vec![Series { name: "sandbox".into(), class: "bar-sandbox".into(), values: p.buckets.iter().map(|b| b.credits_sandbox).collect() }];
        let credit_rows = p
            .buckets
            .iter()
            .map(|b| view! {
                <tr>
                    <th scope="row"><time datetime=b.start.clone()>{b.label.clone()}</time></th>
                    <td class="num">{group(b.credits_included)}</td>
                    <td class="num">{group(b.credits_purchased)}</td>
                    <td class="num">{group(b.credits_sandbox)}</td>
                </tr>
            })
            .collect_view();
        let endpoint_rows = p
            .endpoints
            .iter()
            .map(|e| view! {
                <tr>
                    <th scope="row"><code>{e.endpoint.clone()}</code></th>
                    <td class="num">{group(e.calls)}</td>
                    <td class="num">{group(e.refused_402)}</td>
                    <td class="num">{group(e.credits)}</td>
                    <td class="num">{e.p50.clone()}</td>
                    <td class="num">{e.p95.clone()}</td>
                </tr>
            })
            .collect_view();
        let bucket_name = p.bucket_name.clone();
        view! {
            <section class="panel">
                <h2 id="calls-heading">"Calls by outcome"</h2>
                <StackedBars title="Calls by outcome".to_string() unit="calls".to_string() labels=labels.clone() series=series id="calls-chart".to_string()/>
                <div class="table-wrap">
                    <table class="table" data-testid="calls-table" aria-labelledby="calls-heading">
                        <thead><tr><th scope="col">{bucket_name.clone()}</th>{head}<th scope="col" class="num">"Total"</th></tr></thead>
                        <tbody>{rows}</tbody>
                        <tfoot><tr><th scope="row">"Total"</th><td colspan=p.outcomes.len().to_string() ></td><td class="num" data-testid="calls-total">{group(p.total_calls)}</td></tr></tfoot>
                    </table>
                </div>
            </section>
            <section class="panel">
                <h2 id="credits-heading">"Credits spent"</h2>
                <p class="muted">"Live calls spend included credits first, then purchased ones; test calls spend the sandbox, shown apart."</p>
                <StackedBars title="Live credits spent, included and purchased".to_string() unit="credits".to_string() labels=labels.clone() series=credit_series id="credits-chart".to_string()/>
                <h3>"Sandbox (test keys)"</h3>
                <StackedBars title="Sandbox credits spent".to_string() unit="credits".to_string() labels=labels series=sandbox_series id="sandbox-chart".to_string()/>
                <div class="table-wrap">
                    <table class="table" data-testid="credits-table" aria-labelledby="credits-heading">
                        <thead><tr><th scope="col">{bucket_name}</th><th scope="col" class="num">"Included"</th><th scope="col" class="num">"Purchased"</th><th scope="col" class="num">"Sandbox"</th></tr></thead>
                        <tbody>{credit_rows}</tbody>
                        <tfoot><tr>
                            <th scope="row">"Total"</th>
                            <td class="num" data-testid="credits-included-total">{group(p.total_credits_included)}</td>
                            <td class="num" data-testid="credits-purchased-total">{group(p.total_credits_purchased)}</td>
                            <td class="num" data-testid="credits-sandbox-total">{group(p.total_credits_sandbox)}</td>
                        </tr></tfoot>
                    </table>
                </div>
            </section>
            <section class="panel">
                <h2 id="endpoints-heading">"By endpoint"</h2>
                <div class="table-wrap">
                    <table class="table" data-testid="endpoints-table" aria-labelledby="endpoints-heading">
                        <thead><tr><th scope="col">"Endpoint"</th><th scope="col" class="num">"Calls"</th><th scope="col" class="num">"402s"</th>
                            <th scope="col" class="num">"Credits"</th><th scope="col" class="num">"p50"</th><th scope="col" class="num">"p95"</th></tr></thead>
                        <tbody>{endpoint_rows}</tbody>
                    </table>
                </div>
                <p class="muted">"Latency is measured at the gateway, from the request's arrival to the answer; percentiles are read from a histogram."</p>
            </section>
        }
        .into_any()
    };
    let log_link = p.can_see_log.then(|| view! { " · " <a href="/account/logs">"Open the request log"</a> });
    view! {
        <section class="panel">
            <h1>"Usage"</h1>
            <Warnings outlook=p.outlook.clone()/>
            <p class="muted">"All times are UTC. " <a href=csv data-testid="export-csv" download="usage.csv">"Export this view as CSV"</a> {log_link}</p>
            {filters}
        </section>
        <OutlookPanel outlook=p.outlook back="/account/usage"/>
        {charts}
    }
}

#[component]
pub fn LogsPage() -> impl IntoView {
    let query = LogQuery {
        class: query_value("class"),
        code: query_value("code"),
        key: query_value("key"),
        endpoint: query_value("endpoint"),
        mode: query_value("mode"),
        from: query_value("from"),
        to: query_value("to"),
        after: query_value("after"),
    };
    let page = Resource::new(move || query.clone(), get_log);
    view! {
        <Title text="Request log"/>
        <UsageNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <LogView page=p/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn LogView(page: LogPage) -> impl IntoView {
    let p = page;
    let q = p.query.clone();
    let message = |name: &str| p.errors.iter().find(|(f, _)| f == name).map(|(_, m)| m.clone());
    let err = |name: &str| {
        p.errors.iter().find(|(f, _)| f == name).map(|(f, m)| view! { <p class="field-error" id=format!("{f}-error")>{m.clone()}</p> })
    };
    let time_field = |name: &'static str, label: &'static str, value: String| {
        let id = format!("filter-{name}");
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input id=id name=name type="text" value=value placeholder="2026-12-01 or 2026-12-01T14:30"
                    aria-describedby=p.errors.iter().any(|(f, _)| f == name).then(|| format!("{name}-error"))/>
                {err(name)}
            </div>
        }
    };
    let rows = p
        .rows
        .iter()
        .map(|r| {
            let href = format!("/account/logs/{}", r.request_id);
            let key = if r.key_revoked { format!("{} (revoked)", r.key_prefix) } else { r.key_prefix.clone() };
            view! {
                <tr data-status=r.status.to_string()>
                    <td><a href=href><time datetime=r.at.clone()>{r.at_label.clone()}</time></a></td>
                    <td>{r.method.clone()}</td>
                    <td><code>{r.endpoint.clone()}</code></td>
                    <td class="num">{r.status}</td>
                    <td>{(!r.code.is_empty()).then(|| view! { <code>{r.code.clone()}</code> })}</td>
                    <td class="num">{r.credits}</td>
                    <td class="num">{r.latency.clone()}</td>
                    <td><code>{key}</code> " " <span class="badge">{r.mode.clone()}</span></td>
                </tr>
            }
        })
        .collect_view();
    let has_rows = !p.rows.is_empty();
    let first_page = q.after.is_empty();
    let newest = format!("/account/logs?{}", q.filters_query());
    view! {
        <section class="panel">
            <h1>"Request log"</h1>
            <p class="muted">"Every call to the API, newest first. Times are UTC. Request bodies are never stored; a refused call keeps the exact problem body it got."</p>
            <form method="get" action="/account/logs" class="row-form filters" data-testid="log-filters">
                {select_with("class", "Status", "Any status", p.classes.clone(), q.class.clone(), message("class"))}
                {select_with("code", "Problem code", "Any code", p.codes.clone(), q.code.clone(), message("code"))}
                {select("key", "Key", "All keys", p.keys.clone(), q.key.clone())}
                {select_with("endpoint", "Endpoint", "All endpoints", p.endpoints.clone(), q.endpoint.clone(), message("endpoint"))}
                {select_with("mode", "Mode", "Live and test", modes(), q.mode.clone(), message("mode"))}
                {time_field("from", "From (UTC)", q.from.clone())}
                {time_field("to", "Until (UTC)", q.to.clone())}
                <button type="submit" class="button">"Filter"</button>
            </form>
        </section>
        <section class="panel">
            {if has_rows {
                view! {
                    <div class="table-wrap">
                        <table class="table log-table" data-testid="log-table">
                            <thead><tr><th scope="col">"Time (UTC)"</th><th scope="col">"Method"</th><th scope="col">"Endpoint"</th>
                                <th scope="col" class="num">"Status"</th><th scope="col">"Code"</th><th scope="col" class="num">"Credits"</th>
                                <th scope="col" class="num">"Latency"</th><th scope="col">"Key"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
                .into_any()
            } else {
                if p.errors.is_empty() {
                    view! {
                        <div class="empty-state" data-testid="log-empty">
                            <h2>"No calls match"</h2>
                            <p>"Calls appear here within seconds. Change the filters, or make a call in the " <a href="/explorer">"explorer"</a> "."</p>
                        </div>
                    }
                    .into_any()
                } else {
                    view! {
                        <div class="empty-state" data-testid="log-filter-errors">
                            <h2>"Some filters could not be read"</h2>
                            <p>"Correct the highlighted filters above to see the calls."</p>
                        </div>
                    }
                    .into_any()
                }
            }}
            <p class="pager">
                {(!first_page).then(|| view! { <a href=newest>"Newest"</a> " " })}
                {p.older.clone().map(|o| view! { <a href=o class="button button-secondary" data-testid="log-older">"Older calls"</a> })}
            </p>
        </section>
    }
}

#[component]
pub fn LogEntryPage() -> impl IntoView {
    let params = use_params_map();
    let id = params.read_untracked().get("id").unwrap_or_default();
    let entry = Resource::new(move || id.clone(), get_log_entry);
    view! {
        <Title text="Request"/>
        <UsageNav/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match entry.await {
                    Ok(e) => view! { <EntryView entry=e/> }.into_any(),
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn EntryView(entry: LogEntryPage) -> impl IntoView {
    let e = entry;
    let r = e.row.clone();
    let fixes = e
        .fixes
        .iter()
        .map(|f| view! { <a class="button" href=f.href.clone() data-testid="entry-fix">{f.label.clone()}</a> " " })
        .collect_view();
    let moved = if r.mode == "test" {
        format!("{} sandbox credits", group(e.credits_sandbox))
    } else if r.credits == 0 {
        "none".to_string()
    } else {
        format!("{} included, {} purchased", group(e.credits_included), group(e.credits_purchased))
    };
    view! {
        <section class="panel">
            <p><a href="/account/logs">"← Request log"</a></p>
            <h1>{r.method.clone()} " " <code>{r.endpoint.clone()}</code> " → " {r.status}</h1>
            {(!e.title.is_empty()).then(|| view! { <p class="lead">{e.title.clone()} ": " {e.detail.clone()}</p> })}
            <p>{fixes}</p>
            <dl class="facts">
                <dt>"Time"</dt><dd><time datetime=r.at.clone()>{r.at_label.clone()}</time></dd>
                <dt>"Request id"</dt><dd><code data-testid="entry-request-id">{r.request_id.clone()}</code></dd>
                <dt>"Status"</dt><dd data-testid="entry-status">{r.status}</dd>
                <dt>"Problem code"</dt><dd>{if r.code.is_empty() { "none".to_string() } else { r.code.clone() }}</dd>
                <dt>"Credits"</dt><dd data-testid="entry-credits">{r.credits} " (" {moved} ")"</dd>
                <dt>"Latency"</dt><dd>{r.latency.clone()}</dd>
                <dt>"Key"</dt><dd><code>{r.key_prefix.clone()}</code> {r.key_revoked.then_some(" (revoked since)")} " " <span class="badge">{r.mode.clone()}</span></dd>
                {e.docs.clone().map(|d| view! { <dt>"Documentation"</dt><dd><a href=d data-testid="entry-docs">"What this error means and how to fix it"</a></dd> })}
            </dl>
            <p><a class="button button-secondary" href=e.explorer.clone() data-testid="entry-explorer">"Open in the explorer"</a></p>
        </section>
        {e.body.clone().map(|b| view! {
            <section class="panel">
                <h2>"The response body, exactly as returned"</h2>
                <pre class="code-block" data-testid="entry-body"><code>{b}</code></pre>
            </section>
        })}
    }
}
