//! The API explorer: choose an endpoint, fill its path and JSON body (checked
//! against the schema before sending), choose one of your keys (a test key
//! by default) or paste one, and send from the browser. A problem response
//! becomes a problem card whose fixes are buttons; following a fix and
//! coming back (`return_to=/explorer`) restores the request, and Retry sends
//! it again. Snippets (curl, Python, JavaScript, Rust) show the exact
//! request with the key masked; the last requests stay in this browser.
//!
//! The page is server-rendered; only the [`Explorer`] island is hydrated,
//! so this is the one page (with the keys page) that loads the wasm bundle.
//! A pasted key lives in the island's memory only: never sent to the portal,
//! never written to storage.

use crate::components::{query_value, ErrorView, Loading};
use crate::server_fns::get_explorer;
use crate::types::{ExplorerEndpoint, ExplorerSetup};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[component]
pub fn ExplorerPage() -> impl IntoView {
    let setup = Resource::new(|| (), |_| get_explorer());
    let endpoint = query_value("endpoint");
    view! {
        <Title text="Explorer"/>
        <Suspense fallback=Loading>
            {move || {
                let endpoint = endpoint.clone();
                Suspend::new(async move {
                    match setup.await {
                        Ok(setup) => view! { <Explorer setup=setup endpoint=endpoint/> }.into_any(),
                        Err(e) => view! { <ErrorView error=e/> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// What is sent, as kept in history and across a fix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub endpoint: String,
    pub sub_path: String,
    pub body: String,
    /// A key id, or "" for a pasted key.
    pub key_id: String,
    pub simulate: String,
}

/// What came back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub millis: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub draft: Draft,
    pub method: String,
    pub path: String,
    pub status: u16,
}

const PASTE: &str = "paste";
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const PENDING_KEY: &str = "tollgate.explorer.pending";
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const HISTORY_KEY: &str = "tollgate.explorer.history";

/// The path actually called, with a provider route's `{path}` filled.
pub fn call_path(e: &ExplorerEndpoint, sub_path: &str) -> String {
    e.path.replace("{path}", sub_path.trim_start_matches('/'))
}

/// Checks a body against the subset of JSON Schema the endpoints use
/// (object, required, string/integer types, maxLength, minimum, maximum):
/// `Err` lists what is wrong, one message per field.
pub fn check_body(schema: &str, body: &str) -> Result<(), Vec<String>> {
    let Ok(schema) = serde_json::from_str::<Value>(schema) else { return Ok(()) };
    let value: Value = serde_json::from_str(body).map_err(|e| vec![format!("The body is not valid JSON: {e}.")])?;
    let Some(obj) = value.as_object() else {
        return Err(vec!["The body must be a JSON object.".into()]);
    };
    let mut errors = Vec::new();
    for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !obj.contains_key(name) {
            errors.push(format!("`{name}` is required."));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, value) in obj {
            let Some(p) = props.get(name) else {
                errors.push(format!("`{name}` is not a field of this endpoint."));
                continue;
            };
            match p["type"].as_str() {
                Some("string") => match value.as_str() {
                    None => errors.push(format!("`{name}` must be a string.")),
                    Some(s) => {
                        if let Some(max) = p["maxLength"].as_u64() {
                            if s.chars().count() as u64 > max {
                                errors.push(format!("`{name}` is longer than {max} characters."));
                            }
                        }
                    }
                },
                Some("integer") => match value.as_i64() {
                    None => errors.push(format!("`{name}` must be a whole number.")),
                    Some(n) => {
                        if p["minimum"].as_i64().is_some_and(|m| n < m) || p["maximum"].as_i64().is_some_and(|m| n > m) {
                            errors.push(format!(
                                "`{name}` must be from {} to {}.",
                                p["minimum"].as_i64().unwrap_or(i64::MIN),
                                p["maximum"].as_i64().unwrap_or(i64::MAX)
                            ));
                        }
                    }
                },
                _ => {}
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Code for the exact request, the key masked.
pub fn snippet(lang: &str, method: &str, url: &str, body: Option<&str>, simulate: Option<&str>, key: &str) -> String {
    // Shell single quotes: a quote ends, is escaped, and reopens.
    let q = |s: &str| s.replace('\'', "'\\''");
    match lang {
        "python" => {
            let mut s = format!("import requests\n\nresponse = requests.request(\n    \"{method}\",\n    \"{url}\",\n    headers={{\n        \"Authorization\": \"Bearer {key}\",\n");
            if let Some(code) = simulate {
                s.push_str(&format!("        \"Tollgate-Simulate\": \"{code}\",\n"));
            }
            s.push_str("    },\n");
            if let Some(b) = body {
                // The JSON text as a Python string literal, parsed by json.
                let literal = serde_json::to_string(b).unwrap_or_default();
                s = s.replacen("import requests\n", "import json\nimport requests\n", 1);
                s.push_str(&format!("    json=json.loads({literal}),\n"));
            }
            s.push_str(")\nprint(response.status_code, response.json())\n");
            s
        }
        "javascript" => {
            let mut s = format!("const response = await fetch(\"{url}\", {{\n  method: \"{method}\",\n  headers: {{\n    Authorization: \"Bearer {key}\",\n");
            if body.is_some() {
                s.push_str("    \"Content-Type\": \"application/json\",\n");
            }
            if let Some(code) = simulate {
                s.push_str(&format!("    \"Tollgate-Simulate\": \"{code}\",\n"));
            }
            s.push_str("  },\n");
            if let Some(b) = body {
                s.push_str(&format!("  body: JSON.stringify({b}),\n"));
            }
            s.push_str("});\nconsole.log(response.status, await response.json());\n");
            s
        }
        "rust" => {
            let mut s = format!(
                "let response = reqwest::Client::new()\n    .request(reqwest::Method::{method}, \"{url}\")\n    .bearer_auth(\"{key}\")\n"
            );
            if let Some(code) = simulate {
                s.push_str(&format!("    .header(\"Tollgate-Simulate\", \"{code}\")\n"));
            }
            if let Some(b) = body {
                // A raw string with more `#` than any run of them in the body.
                let hashes = "#".repeat((1..).find(|n| !b.contains(&format!("\"{}", "#".repeat(*n)))).unwrap_or(1));
                s.push_str(&format!("    .header(\"Content-Type\", \"application/json\")\n    .body(r{hashes}\"{b}\"{hashes})\n"));
            }
            s.push_str("    .send()\n    .await?;\nprintln!(\"{} {}\", response.status(), response.text().await?);\n");
            s
        }
        _ => {
            let mut s = format!("curl -X {method} '{}' \\\n  -H 'Authorization: Bearer {key}'", q(url));
            if let Some(code) = simulate {
                s.push_str(&format!(" \\\n  -H 'Tollgate-Simulate: {code}'"));
            }
            if let Some(b) = body {
                s.push_str(&format!(" \\\n  -H 'Content-Type: application/json' \\\n  -d '{}'", q(b)));
            }
            s.push('\n');
            s
        }
    }
}

/// A problem body's parts the card shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProblemView {
    pub title: String,
    pub detail: String,
    pub code: String,
    pub status: u16,
    pub docs: String,
    pub request_id: String,
    pub balance: Option<String>,
    pub required: Option<String>,
    pub actions: Vec<(String, String)>,
}

/// Whether a link from a response may be offered: a path on this site, or
/// an address on `origin` (a provider route's upstream can answer with a
/// body of its own: its links are shown as text, never as buttons).
pub fn same_site(href: &str, origin: &str) -> bool {
    // Browsers drop tabs and newlines inside URLs and read `\` as `/`:
    // any of them (or another control character) disqualifies a link.
    if href.chars().any(|c| c <= ' ' || c == '\\' || c == '\u{7f}') {
        return false;
    }
    (href.starts_with('/') && !href.starts_with("//"))
        || (!origin.is_empty() && href.strip_prefix(origin).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

pub fn problem_of(answer: &Answer, origin: &str) -> Option<ProblemView> {
    // Only the gateway's own problems (marked by a header no upstream can
    // pass through) become cards; anything else is shown as a body.
    let marked = answer.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("tollgate-problem")).map(|(_, v)| v.as_str());
    let v: Value = serde_json::from_str(&answer.body).ok()?;
    let code = v["code"].as_str()?.to_string();
    if marked != Some(code.as_str()) {
        return None;
    }
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Some(ProblemView {
        title: s("title"),
        detail: s("detail"),
        status: v["status"].as_u64().unwrap_or(answer.status as u64) as u16,
        docs: Some(s("type")).filter(|t| same_site(t, origin)).unwrap_or_default(),
        request_id: s("request_id"),
        balance: v["balance"]["available"].as_str().map(str::to_string),
        required: v["required"]["amount"].as_str().map(str::to_string),
        actions: v["resolution"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["label"].as_str()?.to_string(), r["href"].as_str()?.to_string())))
            // Only links into this portal are offered as buttons.
            .filter(|(_, href)| same_site(href, origin))
            .collect(),
        code,
    })
}

/// This page's origin, for snippets (empty on the server).
fn origin() -> String {
    #[cfg(feature = "hydrate")]
    return window().location().origin().unwrap_or_default();
    #[cfg(not(feature = "hydrate"))]
    return String::new();
}

fn pretty(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

#[island]
pub fn Explorer(setup: ExplorerSetup, endpoint: String) -> impl IntoView {
    let setup = StoredValue::new(setup);
    let endpoints = setup.with_value(|s| s.endpoints.clone());
    let first = endpoints
        .iter()
        .find(|e| e.id == endpoint)
        .or_else(|| endpoints.first())
        .map(|e| e.id.clone())
        .unwrap_or_default();
    let default_key = setup.with_value(|s| s.keys.first().map(|k| k.id.clone()).unwrap_or_else(|| PASTE.to_string()));
    let endpoint_id = RwSignal::new(first);
    let sub_path = RwSignal::new(String::new());
    let body = RwSignal::new(String::new());
    let key_choice = RwSignal::new(default_key);
    let pasted = RwSignal::new(String::new());
    let simulate = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<String>::new());
    let answer = RwSignal::new(None::<Answer>);
    let sending = RwSignal::new(false);
    let restored = RwSignal::new(false);
    let lang = RwSignal::new("curl".to_string());
    let history = RwSignal::new(Vec::<HistoryItem>::new());

    let current = move || {
        let id = endpoint_id.get();
        setup.with_value(|s| s.endpoints.iter().find(|e| e.id == id).cloned())
    };
    // A new endpoint brings its example body.
    let pick = move |id: String| {
        let example = setup.with_value(|s| s.endpoints.iter().find(|e| e.id == id).and_then(|e| e.body_example.clone()));
        endpoint_id.set(id);
        body.set(example.unwrap_or_default());
        errors.set(Vec::new());
    };
    if body.get_untracked().is_empty() {
        pick(endpoint_id.get_untracked());
    }
    let is_test = move || {
        let choice = key_choice.get();
        if choice == PASTE {
            pasted.get().trim().starts_with("tg_test_")
        } else {
            setup.with_value(|s| s.keys.iter().any(|k| k.id == choice && k.mode == "test"))
        }
    };
    let draft = move || Draft {
        endpoint: endpoint_id.get_untracked(),
        sub_path: sub_path.get_untracked(),
        body: body.get_untracked(),
        key_id: {
            let k = key_choice.get_untracked();
            if k == PASTE {
                String::new()
            } else {
                k
            }
        },
        simulate: simulate.get_untracked(),
    };
    let apply = move |d: Draft| {
        if setup.with_value(|s| s.endpoints.iter().any(|e| e.id == d.endpoint)) {
            endpoint_id.set(d.endpoint);
        }
        sub_path.set(d.sub_path);
        body.set(d.body);
        if !d.key_id.is_empty() && setup.with_value(|s| s.keys.iter().any(|k| k.id == d.key_id)) {
            key_choice.set(d.key_id);
        }
        simulate.set(d.simulate);
    };

    // In the browser: restore a request left to follow a fix, and the history.
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            history.set(browser::load::<Vec<HistoryItem>>(HISTORY_KEY, false).unwrap_or_default());
            if let Some((d, a)) = browser::load::<(Draft, Option<Answer>)>(PENDING_KEY, true) {
                browser::remove(PENDING_KEY);
                apply(d);
                answer.set(a);
                restored.set(true);
            }
            if let Some(body) = document().body() {
                let _ = body.set_attribute("data-hydrated", "true");
            }
        }
    });

    let send = move || {
        let Some(e) = current() else { return };
        errors.set(Vec::new());
        let method = e.method.clone();
        let takes_body = e.body_schema.is_some() && method != "GET";
        let body_text = body.get_untracked();
        if let Some(schema) = e.body_schema.as_ref().filter(|_| takes_body) {
            if let Err(list) = check_body(schema, &body_text) {
                errors.set(list);
                return;
            }
        }
        if e.path.contains("{path}") && sub_path.get_untracked().trim().is_empty() {
            errors.set(vec!["Fill in the path below the route's prefix.".into()]);
            return;
        }
        let key = key_choice.get_untracked();
        let secret = pasted.get_untracked().trim().to_string();
        if key == PASTE && secret.is_empty() {
            errors.set(vec!["Paste a key, or choose one of yours.".into()]);
            return;
        }
        let d = draft();
        let path = call_path(&e, &d.sub_path);
        let simulate_code = (!d.simulate.is_empty()).then(|| d.simulate.clone());
        let csrf = setup.with_value(|s| s.csrf.clone());
        sending.set(true);
        let _ = (&method, &path, &simulate_code, &csrf, &secret, takes_body, &body_text);
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let body = takes_body.then_some(body_text);
            let result = if d.key_id.is_empty() {
                browser::direct(&method, &path, body.as_deref(), &secret, simulate_code.as_deref()).await
            } else {
                browser::via_portal(&csrf, &d.key_id, &method, &path, body.as_deref(), simulate_code.as_deref()).await
            };
            sending.set(false);
            match result {
                Ok(a) => {
                    let mut h = history.get_untracked();
                    h.retain(|i| !(i.draft == d));
                    h.insert(0, HistoryItem { draft: d.clone(), method: method.clone(), path: path.clone(), status: a.status });
                    h.truncate(10);
                    browser::save(HISTORY_KEY, &h, false);
                    history.set(h);
                    answer.set(Some(a));
                }
                Err(why) => errors.set(vec![why]),
            }
        });
    };

    // Before following a fix: keep the request (never a pasted key) and
    // the answer, to come back to.
    let keep = move |_| {
        #[cfg(feature = "hydrate")]
        browser::save(PENDING_KEY, &(draft(), answer.get_untracked()), true);
    };

    let endpoint_options = endpoints
        .iter()
        .map(|e| view! { <option value=e.id.clone()>{format!("{} {}", e.method, e.path)}</option> })
        .collect_view();
    let key_options = setup.with_value(|s| {
        s.keys
            .iter()
            .map(|k| view! { <option value=k.id.clone()>{format!("{} · {}", k.label, k.mode)}</option> })
            .collect_view()
    });
    let codes = setup.with_value(|s| s.codes.clone());
    let signed_in = setup.with_value(|s| s.signed_in);

    let masked_key = move || {
        let choice = key_choice.get();
        if choice == PASTE {
            let p = pasted.get();
            let p = p.trim();
            if p.chars().count() > 12 {
                format!("{}…", p.chars().take(12).collect::<String>())
            } else {
                "tg_test_…".into()
            }
        } else {
            setup.with_value(|s| {
                s.keys
                    .iter()
                    .find(|k| k.id == choice)
                    .and_then(|k| k.label.split('(').nth(1).map(|l| l.trim_end_matches(')').split('…').next().unwrap_or("").to_string() + "…"))
                    .unwrap_or_else(|| "tg_test_…".into())
            })
        }
    };
    let snippet_text = move || {
        let Some(e) = current() else { return String::new() };
        let url = format!("{}{}", origin(), call_path(&e, &sub_path.get()));
        let takes_body = e.body_schema.is_some() && e.method != "GET";
        let b = body.get();
        let compact = serde_json::from_str::<Value>(&b).ok().map(|v| v.to_string()).unwrap_or(b);
        let sim = simulate.get();
        snippet(&lang.get(), &e.method, &url, takes_body.then_some(compact.as_str()), (!sim.is_empty()).then_some(sim.as_str()), &masked_key())
    };

    view! {
        <div class="explorer">
            <section class="panel explorer-request" aria-labelledby="explorer-title">
                <h1 id="explorer-title">"API explorer"</h1>
                {(!signed_in).then(|| view! {
                    <p class="banner banner-notice">
                        <a href="/login?return_to=%2Fexplorer">"Sign in"</a>
                        " to send with one of your keys, or paste a key below."
                    </p>
                })}
                {move || restored.get().then(|| view! {
                    <p class="banner banner-success" role="status" data-testid="restored">
                        "Welcome back: your request is restored. Retry it when you are ready."
                    </p>
                })}
                <div class="field">
                    <label for="ex-endpoint">"Endpoint"</label>
                    <select id="ex-endpoint" prop:value=move || endpoint_id.get() on:change=move |ev| pick(event_target_value(&ev))>
                        {endpoint_options}
                    </select>
                    {move || current().map(|e| view! {
                        <p class="hint">
                            {e.summary.clone()} " Price: " {e.price.clone()} ". "
                            <a href=e.docs.clone()>"Reference"</a>
                        </p>
                    })}
                </div>
                {move || current().filter(|e| e.path.contains("{path}")).map(|e| view! {
                    <div class="field">
                        <label for="ex-subpath">"Path below " <code>{e.path.replace("/{path}", "/")}</code></label>
                        <input id="ex-subpath" type="text" prop:value=move || sub_path.get() on:input=move |ev| sub_path.set(event_target_value(&ev))/>
                    </div>
                })}
                {move || current().filter(|e| e.body_schema.is_some() && e.method != "GET").map(|_| view! {
                    <div class="field">
                        <label for="ex-body">"JSON body"</label>
                        <textarea id="ex-body" rows="6" spellcheck="false" prop:value=move || body.get() on:input=move |ev| body.set(event_target_value(&ev))></textarea>
                    </div>
                })}
                <div class="field">
                    <label for="ex-key">"Key"</label>
                    <select id="ex-key" prop:value=move || key_choice.get() on:change=move |ev| key_choice.set(event_target_value(&ev))>
                        {key_options}
                        <option value=PASTE>"Paste a key…"</option>
                    </select>
                    {move || (key_choice.get() == PASTE).then(|| view! {
                        <label for="ex-pasted" class="visually-hidden">"Pasted key"</label>
                        <input id="ex-pasted" type="password" autocomplete="off" placeholder="tg_test_…" prop:value=move || pasted.get() on:input=move |ev| pasted.set(event_target_value(&ev))/>
                        <p class="hint">"Sent from this browser straight to the API; the portal never stores it."</p>
                    })}
                </div>
                {move || is_test().then(|| view! {
                    <div class="field">
                        <label for="ex-simulate">"Simulate a problem (test keys)"</label>
                        <select id="ex-simulate" prop:value=move || simulate.get() on:change=move |ev| simulate.set(event_target_value(&ev))>
                            <option value="">"None: a real call"</option>
                            {codes.iter().map(|c| view! { <option value=c.clone()>{c.clone()}</option> }).collect_view()}
                        </select>
                    </div>
                })}
                {move || {
                    let list = errors.get();
                    (!list.is_empty()).then(|| view! {
                        <ul class="field-errors" role="alert">{list.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}</ul>
                    })
                }}
                <button type="button" class="button" data-testid="send" disabled=move || sending.get() on:click=move |_| send()>
                    {move || if sending.get() { "Sending…" } else { "Send" }}
                </button>
                <details class="explorer-snippets">
                    <summary>"Code for this request"</summary>
                    <label for="ex-lang">"Language"</label>
                    <select id="ex-lang" prop:value=move || lang.get() on:change=move |ev| lang.set(event_target_value(&ev))>
                        <option value="curl">"curl"</option>
                        <option value="python">"Python"</option>
                        <option value="javascript">"JavaScript"</option>
                        <option value="rust">"Rust"</option>
                    </select>
                    <pre tabindex="0"><code data-testid="snippet">{snippet_text}</code></pre>
                </details>
            </section>
            <section class="panel explorer-response" aria-labelledby="response-title" aria-live="polite">
                <h2 id="response-title">"Response"</h2>
                {move || match answer.get() {
                    None => view! { <p class="hint">"Send a request to see its answer here."</p> }.into_any(),
                    Some(a) => {
                        let problem = problem_of(&a, &origin());
                        let status_class = if a.status < 400 { "status status-ok" } else { "status status-error" };
                        view! {
                            <p class="response-status" data-testid="status">
                                <span class=status_class>{a.status}</span>
                                " in " {a.millis} " ms"
                            </p>
                            {problem.map(|p| view! {
                                <div class="problem-card" role="region" aria-label="Problem" data-testid="problem-card" data-code=p.code.clone()>
                                    <h3>{p.title.clone()}</h3>
                                    <p>{p.detail.clone()}</p>
                                    <p><code>{p.code.clone()}</code> " · HTTP " {p.status}</p>
                                    {(p.balance.is_some() || p.required.is_some()).then(|| view! {
                                        <p data-testid="balance">
                                            "Balance " <strong>{p.balance.clone().unwrap_or_default()}</strong>
                                            " · this call needs " <strong>{p.required.clone().unwrap_or_default()}</strong> " credits"
                                        </p>
                                    })}
                                    <p class="problem-actions">
                                        {p.actions.iter().map(|(label, href)| view! {
                                            <a class="button" href=href.clone() on:click=keep data-testid="fix">{label.clone()}</a>
                                        }).collect_view()}
                                        <button type="button" class="button button-secondary" data-testid="retry" on:click=move |_| send()>"Retry"</button>
                                    </p>
                                    <p class="hint">
                                        {(!p.docs.is_empty()).then(|| view! { <a href=p.docs.clone()>"What this means and how to fix it"</a> " · " })}
                                        "Request id " <code data-testid="request-id">{p.request_id.clone()}</code>
                                    </p>
                                </div>
                            })}
                            <details>
                                <summary>"Headers"</summary>
                                <dl class="headers">
                                    {a.headers.iter().map(|(k, v)| view! { <dt>{k.clone()}</dt><dd>{v.clone()}</dd> }).collect_view()}
                                </dl>
                            </details>
                            <pre class="response-body" tabindex="0"><code data-testid="body">{pretty(&a.body)}</code></pre>
                        }
                        .into_any()
                    }
                }}
                {move || {
                    let h = history.get();
                    (!h.is_empty()).then(|| view! {
                        <h2>"History"</h2>
                        <ol class="history">
                            {h.into_iter().map(|item| {
                                let d = item.draft.clone();
                                view! {
                                    <li>
                                        <button type="button" class="link-button" on:click=move |_| apply(d.clone())>
                                            {format!("{} {} → {}", item.method, item.path, item.status)}
                                        </button>
                                    </li>
                                }
                            }).collect_view()}
                        </ol>
                    })
                }}
            </section>
        </div>
    }
}

/// The browser side: fetch and storage.
#[cfg(feature = "hydrate")]
mod browser {
    use super::Answer;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    fn storage(session: bool) -> Option<web_sys::Storage> {
        let w = web_sys::window()?;
        if session {
            w.session_storage().ok()?
        } else {
            w.local_storage().ok()?
        }
    }

    pub fn load<T: serde::de::DeserializeOwned>(key: &str, session: bool) -> Option<T> {
        serde_json::from_str(&storage(session)?.get_item(key).ok()??).ok()
    }

    pub fn save<T: serde::Serialize>(key: &str, value: &T, session: bool) {
        if let (Some(s), Ok(text)) = (storage(session), serde_json::to_string(value)) {
            let _ = s.set_item(key, &text);
        }
    }

    pub fn remove(key: &str) {
        if let Some(s) = storage(true) {
            let _ = s.remove_item(key);
        }
    }

    async fn fetch(url: &str, init: &web_sys::RequestInit) -> Result<Answer, String> {
        let window = web_sys::window().ok_or("no window")?;
        let perf = window.performance();
        let started = perf.as_ref().map(|p| p.now()).unwrap_or(0.0);
        let res: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(url, init))
            .await
            .map_err(|_| "The request could not be sent: check your connection.".to_string())?
            .dyn_into()
            .map_err(|_| "unexpected answer")?;
        let text = JsFuture::from(res.text().map_err(|_| "unreadable answer")?)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default();
        let millis = (perf.map(|p| p.now()).unwrap_or(started) - started).max(0.0) as u32;
        let mut headers = Vec::new();
        if let Ok(Some(iter)) = js_sys::try_iter(&res.headers()) {
            for pair in iter.flatten() {
                let pair: js_sys::Array = pair.unchecked_into();
                headers.push((pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_string().unwrap_or_default()));
            }
        }
        Ok(Answer { status: res.status(), millis, headers, body: text })
    }

    /// With a pasted key: straight to the API.
    pub async fn direct(method: &str, path: &str, body: Option<&str>, key: &str, simulate: Option<&str>) -> Result<Answer, String> {
        let headers = web_sys::Headers::new().map_err(|_| "headers")?;
        headers.set("Authorization", &format!("Bearer {key}")).map_err(|_| "The key holds characters a header cannot carry.")?;
        if body.is_some() {
            let _ = headers.set("Content-Type", "application/json");
        }
        if let Some(code) = simulate {
            let _ = headers.set("Tollgate-Simulate", code);
        }
        let init = web_sys::RequestInit::new();
        init.set_method(method);
        init.set_headers(&headers);
        init.set_credentials(web_sys::RequestCredentials::Omit);
        // Never follow a redirect with the key in the request.
        init.set_redirect(web_sys::RequestRedirect::Manual);
        if let Some(b) = body {
            init.set_body(&wasm_bindgen::JsValue::from_str(b));
        }
        fetch(path, &init).await
    }

    /// With one of the member's keys, named by id: through the portal.
    pub async fn via_portal(csrf: &str, key_id: &str, method: &str, path: &str, body: Option<&str>, simulate: Option<&str>) -> Result<Answer, String> {
        let payload = serde_json::json!({
            "csrf": csrf, "key_id": key_id, "method": method, "path": path, "body": body, "simulate": simulate,
        });
        let headers = web_sys::Headers::new().map_err(|_| "headers")?;
        let _ = headers.set("Content-Type", "application/json");
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_redirect(web_sys::RequestRedirect::Manual);
        init.set_body(&wasm_bindgen::JsValue::from_str(&payload.to_string()));
        fetch("/explorer/send", &init).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"object","required":["text"],"properties":{"text":{"type":"string","maxLength":5},"max_sentences":{"type":"integer","minimum":1,"maximum":20}}}"#;

    #[test]
    fn bodies_are_checked_against_the_schema_before_sending() {
        assert!(check_body(SCHEMA, r#"{"text":"hi"}"#).is_ok());
        assert_eq!(check_body(SCHEMA, "{").unwrap_err().len(), 1);
        assert_eq!(check_body(SCHEMA, "[]").unwrap_err(), vec!["The body must be a JSON object.".to_string()]);
        let errs = check_body(SCHEMA, r#"{"max_sentences": 0, "extra": 1}"#).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("`text` is required")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("from 1 to 20")));
        assert!(errs.iter().any(|e| e.contains("`extra`")));
        assert!(check_body(SCHEMA, r#"{"text":"too long"}"#).unwrap_err()[0].contains("longer than 5"));
        assert!(check_body(SCHEMA, r#"{"text":5}"#).unwrap_err()[0].contains("must be a string"));
    }

    #[test]
    fn snippets_carry_the_exact_request_with_the_key_masked() {
        let url = "https://portal.test/v1/text/summarize";
        let body = r#"{"text":"it's"}"#;
        let curl = snippet("curl", "POST", url, Some(body), Some("plan_upgrade_required"), "tg_test_AbCd…");
        assert!(curl.contains("-X POST 'https://portal.test/v1/text/summarize'"));
        assert!(curl.contains("Bearer tg_test_AbCd…") && curl.contains("Tollgate-Simulate: plan_upgrade_required"));
        assert!(curl.contains(r#"-d '{"text":"it'\''s"}'"#), "{curl}");
        let rust = snippet("rust", "POST", url, Some(r##"{"text":"a "# b"}"##), None, "k");
        assert!(rust.contains(r###"r##"{"text":"a "# b"}"##"###), "{rust}");
        let py = snippet("python", "POST", url, Some(r#"{"ok":true,"text":"true"}"#), None, "k");
        assert!(py.contains(r#"json=json.loads("{\"ok\":true,\"text\":\"true\"}")"#), "{py}");
        for lang in ["python", "javascript", "rust"] {
            let s = snippet(lang, "POST", url, Some(body), None, "tg_test_AbCd…");
            assert!(s.contains(url) && s.contains("tg_test_AbCd…") && !s.contains("Simulate"), "{lang}: {s}");
        }
    }

    #[test]
    fn a_problem_body_becomes_a_card_with_portal_links_only() {
        let body = r#"{"type":"https://p.test/docs/errors/insufficient_credits","title":"Insufficient credits","status":402,
            "detail":"d","code":"insufficient_credits","request_id":"req_1","balance":{"available":"0"},"required":{"amount":"5"},
            "resolution":[{"label":"Top up credits","href":"https://p.test/billing/top-up?credits=1000"},{"label":"x","href":"javascript:alert(1)"}]}"#;
        let marked = vec![("tollgate-problem".to_string(), "insufficient_credits".to_string())];
        assert!(problem_of(&Answer { status: 402, body: body.into(), ..Default::default() }, "https://p.test").is_none(), "no mark, no card");
        let p = problem_of(&Answer { status: 402, body: body.into(), headers: marked.clone(), ..Default::default() }, "https://p.test").unwrap();
        assert_eq!(p.code, "insufficient_credits");
        assert_eq!((p.balance.as_deref(), p.required.as_deref()), (Some("0"), Some("5")));
        assert_eq!(p.actions, vec![("Top up credits".to_string(), "https://p.test/billing/top-up?credits=1000".to_string())]);
        assert!(problem_of(&Answer { status: 200, body: r#"{"pong":true}"#.into(), ..Default::default() }, "https://p.test").is_none());
        // A body from elsewhere (an upstream behind a provider route) gets no buttons.
        let foreign = body.replace("https://p.test", "https://evil.test");
        let p = problem_of(&Answer { status: 402, body: foreign, headers: marked, ..Default::default() }, "https://p.test").unwrap();
        assert!(p.actions.is_empty() && p.docs.is_empty());
        for bad in ["//evil.test/x", "/\\evil.test", "/\t/evil.test", "/\n/evil.test", "https://p.test/\t", "https://p.test.evil/x", "https://p.testx", "javascript:alert(1)"] {
            assert!(!same_site(bad, "https://p.test"), "{bad}");
        }
        assert!(same_site("/billing", "https://p.test") && same_site("https://p.test/billing?x=1", "https://p.test"));
    }
}
