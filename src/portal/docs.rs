//! The `Docs` port: pages rendered from the markdown in `content/` and from
//! the OpenAPI document (the endpoint reference), search, personalisation
//! and the explorer's set-up. Also `/docs/search.json`, which the docs
//! script asks as the reader types.

use super::Portal;
use crate::docs::highlight::{escape, highlight};
use crate::docs::Library;
use crate::gateway::catalogue::{Code, ALL};
use crate::sample_api::openapi;
use crate::state::AppState;
use app::backend::{Caller, Docs};
use app::error::AppError;
use app::types::{DocLink, DocPage, ExplorerEndpoint, ExplorerKey, ExplorerSetup, NavSection, SearchHit, SearchResults, TocEntry};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use uuid::Uuid;

/// What samples in the docs write for the reader's key.
pub const KEY_PLACEHOLDER: &str = "YOUR_API_KEY";

pub fn router() -> Router<AppState> {
    Router::new().route("/docs/search.json", get(search_json))
}

#[derive(serde::Deserialize)]
struct Q {
    #[serde(default)]
    q: String,
}

async fn search_json(State(state): State<AppState>, Query(q): Query<Q>) -> Json<Vec<SearchHit>> {
    let lib = state.docs.library().await;
    Json(hits(&lib, &q.q, 8))
}

fn hits(lib: &Library, query: &str, limit: usize) -> Vec<SearchHit> {
    let query: String = query.chars().take(200).collect();
    lib.search(&query, limit)
        .into_iter()
        .map(|h| SearchHit {
            href: if h.anchor.is_empty() { format!("/docs/{}", h.slug) } else { format!("/docs/{}#{}", h.slug, h.anchor) },
            title: h.title,
            heading: h.heading,
            snippet_html: h.snippet_html,
        })
        .collect()
}

/// One operation of the OpenAPI document.
struct Op<'a> {
    id: String,
    method: String,
    path: String,
    op: &'a Value,
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for (method, op) in item {
                    out.push(Op {
                        id: op["operationId"].as_str().unwrap_or_default().to_string(),
                        method: method.to_uppercase(),
                        path: path.clone(),
                        op,
                    });
                }
            }
        }
    }
    out
}

/// (code, name, endpoints) of the active plans, cheapest first.
type PlanRow = (String, String, Vec<String>, i64);

impl Portal {
    fn openapi(&self) -> Value {
        openapi::document(&self.state.config, &self.state.gateway.routes.all())
    }

    async fn plans(&self) -> Result<Vec<PlanRow>, AppError> {
        let mut plans = crate::billing::plans::list_active(&self.state.db).await.map_err(|e| self.internal(e))?;
        plans.sort_by_key(|p| (p.price_minor, p.sort_order));
        Ok(plans.into_iter().map(|p| (p.code, p.name, p.endpoints, p.price_minor)).collect())
    }

    fn internal(&self, e: impl std::fmt::Display) -> AppError {
        tracing::error!(error = %e, "docs");
        AppError::Internal { request_id: String::new() }
    }

    /// Names of the plans that include an operation.
    fn included_in(&self, id: &str, plans: &[PlanRow]) -> Vec<String> {
        let routes = self.state.gateway.routes.all();
        if let Some(r) = routes.iter().find(|r| id.starts_with(&format!("{}_", r.endpoint))) {
            return plans.iter().filter(|p| r.plans.is_empty() || r.plans.contains(&p.0)).map(|p| p.1.clone()).collect();
        }
        plans.iter().filter(|p| p.2.iter().any(|e| e == "*" || e == id)).map(|p| p.1.clone()).collect()
    }

    /// The reader's plan code and a sample key prefix, if signed in.
    async fn reader(&self, caller: &Caller) -> Option<(String, String, String)> {
        let org = Uuid::parse_str(&caller.org.as_ref()?.id).ok()?;
        let plan = crate::billing::subscriptions::serving_plan(&self.state.db, org).await.ok()??;
        let user = Uuid::parse_str(&caller.user.as_ref()?.id).ok()?;
        // The reader's own newest usable key, a test key first, judged by
        // the server's clock as the gateway judges keys.
        let prefix = crate::api_keys::store::newest_prefix_of(&self.state.db, org, user, self.now()).await.ok()?;
        Some((plan.0, plan.1, prefix.map(|p| format!("{p}…")).unwrap_or_else(|| "tg_test_…".into())))
    }

    fn nav(&self, lib: &Library, doc: &Value) -> Vec<NavSection> {
        let mut nav: Vec<NavSection> = lib
            .sections()
            .into_iter()
            .map(|(title, pages)| NavSection {
                title: title.to_string(),
                links: pages.into_iter().map(|p| DocLink { slug: p.slug.clone(), title: p.title.clone() }).collect(),
            })
            .collect();
        let mut links = vec![DocLink { slug: "reference".into(), title: "All endpoints".into() }];
        links.extend(operations(doc).into_iter().filter(|o| o.method == "GET" || o.method == "POST").map(|o| DocLink {
            slug: format!("reference/{}", o.id),
            title: format!("{} {}", o.method, o.path),
        }));
        let at = nav.iter().position(|s| s.title == "Errors").unwrap_or(nav.len());
        nav.insert(at, NavSection { title: "API reference".into(), links });
        nav
    }

    fn reference_index(&self, doc: &Value) -> String {
        let mut html = String::from(
            "<h1 id=\"api-reference\">API reference</h1>\n<p>Generated from <a href=\"/openapi.json\">the OpenAPI document</a> \
             the gateway runs on. Every call takes a key as <code>Authorization: Bearer …</code>.</p>\n\
             <table><thead><tr><th>Endpoint</th><th>What it does</th></tr></thead><tbody>\n",
        );
        for o in operations(doc) {
            html.push_str(&format!(
                "<tr><td><a href=\"/docs/reference/{}\"><code>{} {}</code></a></td><td>{}</td></tr>\n",
                escape(&o.id),
                escape(&o.method),
                escape(&o.path),
                escape(o.op["summary"].as_str().unwrap_or_default())
            ));
        }
        html.push_str("</tbody></table>\n");
        html
    }

    fn reference_page(&self, o: &Op, plans: &[PlanRow], reader: Option<&(String, String, String)>) -> (String, Vec<TocEntry>) {
        let mut toc = Vec::new();
        let mut h2 = |html: &mut String, id: &str, text: &str| {
            html.push_str(&format!("<h2 id=\"{id}\">{} <a class=\"anchor\" href=\"#{id}\" aria-label=\"Link to “{0}”\">#</a></h2>\n", escape(text)));
            toc.push(TocEntry { level: 2, id: id.into(), text: text.into() });
        };
        let mut html = format!(
            "<h1 id=\"top\"><span class=\"method method-{}\">{}</span> <code>{}</code></h1>\n<p class=\"lead\">{}</p>\n<p>{}</p>\n",
            escape(&o.method.to_lowercase()),
            escape(&o.method),
            escape(&o.path),
            escape(o.op["summary"].as_str().unwrap_or_default()),
            escape(o.op["description"].as_str().unwrap_or_default()),
        );
        let included = self.included_in(&o.id, plans);
        html.push_str(&format!("<p><strong>Plans that include it:</strong> {}.</p>\n", escape(&included.join(", "))));
        if let Some((code, name, _)) = reader {
            let plan_name = plans.iter().find(|p| &p.0 == code).map(|p| p.1.clone()).unwrap_or_else(|| name.clone());
            let yes = included.contains(&plan_name);
            let price = o.op["description"].as_str().and_then(|d| d.split("Price: ").nth(1)).map(|p| p.split('.').next().unwrap_or(p).to_string()).unwrap_or_default();
            if yes {
                html.push_str(&format!(
                    "<p class=\"banner banner-success\" data-testid=\"your-plan\">Your {} plan includes this endpoint: it costs you {}.</p>\n",
                    escape(&plan_name),
                    escape(&price)
                ));
            } else {
                let cheapest = included.first().cloned().unwrap_or_default();
                let code = plans.iter().find(|p| p.1 == cheapest).map(|p| p.0.clone()).unwrap_or_default();
                html.push_str(&format!(
                    "<p class=\"banner banner-notice\" data-testid=\"your-plan\">Your {} plan does not include this endpoint; calls get \
                     <a href=\"/docs/errors/plan_upgrade_required\">402 plan_upgrade_required</a>. \
                     <a href=\"/billing/plans?plan={}&amp;return_to=/docs/reference/{}\">Upgrade to {}</a>.</p>\n",
                    escape(&plan_name),
                    escape(&code),
                    escape(&o.id),
                    escape(&cheapest)
                ));
            }
        }
        html.push_str(&format!(
            "<p><a class=\"button\" href=\"/explorer?endpoint={}\" data-testid=\"try-it\">Try it in the explorer</a></p>\n",
            escape(&o.id)
        ));
        h2(&mut html, "parameters", "Parameters");
        html.push_str("<table><thead><tr><th>Name</th><th>In</th><th>Required</th><th>Description</th></tr></thead><tbody>\n");
        html.push_str("<tr><td><code>Authorization</code></td><td>header</td><td>yes</td><td><code>Bearer tg_live_…</code> or <code>Bearer tg_test_…</code></td></tr>\n");
        for p in o.op["parameters"].as_array().into_iter().flatten() {
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(p["name"].as_str().unwrap_or_default()),
                escape(p["in"].as_str().unwrap_or_default()),
                if p["required"].as_bool().unwrap_or(false) { "yes" } else { "no" },
                escape(p["description"].as_str().unwrap_or_default())
            ));
        }
        html.push_str("</tbody></table>\n");
        if let Some(schema) = o.op.pointer("/requestBody/content/application~1json/schema") {
            h2(&mut html, "request-body", "Request body");
            html.push_str("<p><code>application/json</code>, checked before the call is charged:</p>\n");
            code_block(&mut html, &serde_json::to_string_pretty(schema).unwrap_or_default(), "json");
        }
        h2(&mut html, "responses", "Responses");
        if let Some(responses) = o.op["responses"].as_object() {
            for (status, r) in responses {
                html.push_str(&format!(
                    "<h3 id=\"response-{0}\">{0} <a class=\"anchor\" href=\"#response-{0}\" aria-label=\"Link to {0}\">#</a></h3>\n<p>{1}</p>\n",
                    escape(status),
                    escape(r["description"].as_str().unwrap_or_default())
                ));
                if let Some(examples) = r.pointer("/content/application~1problem+json/examples").and_then(Value::as_object) {
                    for (code, ex) in examples {
                        html.push_str(&format!(
                            "<details><summary><code>{0}</code>: {1}</summary>\n<p><a href=\"/docs/errors/{0}\">What <code>{0}</code> means and how to fix it</a></p>\n",
                            escape(code),
                            escape(ex["summary"].as_str().unwrap_or_default())
                        ));
                        code_block(&mut html, &serde_json::to_string_pretty(&ex["value"]).unwrap_or_default(), "json");
                        html.push_str("</details>\n");
                    }
                }
            }
        }
        (html, toc)
    }
}

fn code_block(html: &mut String, code: &str, lang: &str) {
    html.push_str(&format!(
        "<div class=\"code\"><button type=\"button\" class=\"copy\" data-copy hidden>Copy</button><pre tabindex=\"0\"><code class=\"language-{lang}\">{}</code></pre></div>\n",
        highlight(code, lang)
    ));
}

/// Example body for the explorer's editor, by endpoint.
fn body_example(id: &str) -> Option<String> {
    match id {
        "sentiment" => Some("{\n  \"text\": \"I love how clear these errors are.\"\n}".into()),
        "summarize" => Some("{\n  \"text\": \"Tollgate meters calls. A 402 says why. The fix is one click away.\",\n  \"max_sentences\": 1\n}".into()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Docs for Portal {
    async fn page(&self, caller: &Caller, slug: String) -> Result<DocPage, AppError> {
        let lib = self.state.docs.library().await;
        let doc = self.openapi();
        let nav = self.nav(&lib, &doc);
        let reader = self.reader(caller).await;
        let sample_key = reader.as_ref().map(|r| r.2.clone()).unwrap_or_else(|| "tg_test_YOUR_KEY".into());
        let personal_note = reader.as_ref().map(|r| format!("Samples show your key {} and prices on your {} plan.", r.2, r.1));
        if slug == "reference" || slug.starts_with("reference/") {
            let (title, html, toc) = if slug == "reference" {
                ("API reference".to_string(), self.reference_index(&doc), Vec::new())
            } else {
                let ops = operations(&doc);
                let id = &slug["reference/".len()..];
                let o = ops.iter().find(|o| o.id == id).ok_or(AppError::NotFound)?;
                let plans = self.plans().await?;
                let (html, toc) = self.reference_page(o, &plans, reader.as_ref());
                (format!("{} {}", o.method, o.path), html, toc)
            };
            return Ok(DocPage { slug, title, summary: None, html, toc, nav, prev: None, next: None, personal_note });
        }
        let page = lib.get(&slug).ok_or(AppError::NotFound)?;
        let mut html = page.html.replace(KEY_PLACEHOLDER, &escape(&sample_key));
        let mut toc: Vec<TocEntry> = page.toc.iter().map(|h| TocEntry { level: h.level, id: h.id.clone(), text: h.text.clone() }).collect();
        // An error page shows the exact body the gateway answers with.
        if let Some(code) = slug.strip_prefix("errors/").and_then(Code::parse) {
            html.push_str("<h2 id=\"example\">Example body <a class=\"anchor\" href=\"#example\" aria-label=\"Link to “Example body”\">#</a></h2>\n");
            html.push_str(&format!(
                "<p>What <code>{}</code> answers with (HTTP {}). With a test key, send <code>Tollgate-Simulate: {}</code> to get it on purpose.</p>\n",
                escape("/v1/text/summarize"),
                code.status().as_u16(),
                code.as_str()
            ));
            let example = openapi::example(code, &self.state.config, "/v1/text/summarize");
            code_block(&mut html, &serde_json::to_string_pretty(&example).unwrap_or_default(), "json");
            toc.push(TocEntry { level: 2, id: "example".into(), text: "Example body".into() });
        }
        let (prev, next) = lib.neighbours(&slug);
        let link = |p: &crate::docs::Page| DocLink { slug: p.slug.clone(), title: p.title.clone() };
        Ok(DocPage {
            slug: page.slug.clone(),
            title: page.title.clone(),
            summary: page.summary.clone(),
            html,
            toc,
            nav,
            prev: prev.map(link),
            next: next.map(link),
            personal_note,
        })
    }

    async fn search(&self, query: String) -> Result<SearchResults, AppError> {
        let lib = self.state.docs.library().await;
        let nav = self.nav(&lib, &self.openapi());
        Ok(SearchResults { hits: hits(&lib, &query, 20), query, nav })
    }

    async fn explorer(&self, caller: &Caller, csrf: String) -> Result<ExplorerSetup, AppError> {
        let doc = self.openapi();
        let endpoints = operations(&doc)
            .into_iter()
            .map(|o| {
                let price = o.op["description"].as_str().and_then(|d| d.split("Price: ").nth(1)).map(|p| p.split('.').next().unwrap_or(p).to_string()).unwrap_or_default();
                let body_schema = o.op.pointer("/requestBody/content/application~1json/schema").map(|s| s.to_string());
                ExplorerEndpoint {
                    body_example: body_example(&o.id),
                    docs: format!("/docs/reference/{}", o.id),
                    summary: o.op["summary"].as_str().unwrap_or_default().to_string(),
                    id: o.id,
                    method: o.method,
                    path: o.path,
                    price,
                    body_schema,
                }
            })
            .collect();
        let mut keys = Vec::new();
        let may_use = caller.org.as_ref().is_some_and(|o| super::domain_role(o.role).manages_keys());
        if let Some(org) = caller.org.as_ref().filter(|_| may_use).and_then(|o| Uuid::parse_str(&o.id).ok()) {
            keys = crate::api_keys::store::usable(&self.state.db, org, self.now())
                .await
                .map_err(|e| self.internal(e))?
                .into_iter()
                .map(|k| ExplorerKey { id: k.id.to_string(), label: format!("{} ({}…{})", k.name, k.prefix, k.last4), mode: k.mode })
                .collect();
        }
        Ok(ExplorerSetup {
            endpoints,
            keys,
            codes: ALL.iter().map(|c| c.as_str().to_string()).collect(),
            csrf,
            signed_in: caller.user.is_some(),
        })
    }
}
