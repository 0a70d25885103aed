//! The metered API on `/v1`. Each call runs the pipeline of the product, in
//! order: authenticate the key (401) → scope (403) → subscription state and
//! approval (402) → plan includes the endpoint (402) → rate limit (429) →
//! spend cap (402) → reserve the credits (402) → call the upstream → capture
//! (give back what was not used) → record the usage event.
//!
//! Everything up to the reserve is one database function,
//! `gateway_authorize`: one round trip, one transaction, one row lock per
//! organization, so enforcement is exact on one instance or many. The usage
//! event is written off the hot path (see [`usage`]).

pub mod catalogue;
pub mod problem;
pub mod usage;

use crate::api_keys::{Mode, Secret};
use crate::sample_api;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use catalogue::{Code, Endpoint};
use problem::{Facts, Problem};
use std::time::Instant;
use time::OffsetDateTime;
use usage::UsageEvent;
use uuid::Uuid;

pub const SIMULATE_HEADER: &str = "tollgate-simulate";
/// Below this many credits, responses warn that the balance is low.
pub const LOW_BALANCE: i64 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/{*path}", any(handle))
        .route("/openapi.json", get(openapi))
}

/// The ping handler without the pipeline, to measure what the gateway adds.
pub fn bench_router() -> Router<AppState> {
    Router::new().route(
        "/bench/unmetered/ping",
        get(|State(state): State<AppState>| async move {
            Json(sample_api::Call::Ping.answer(state.clock.now()))
        }),
    )
}

async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(sample_api::openapi::document(&state.config))
}

/// The row `gateway_authorize` returns.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Decision {
    outcome: String,
    key_id: Option<Uuid>,
    org_id: Option<Uuid>,
    mode: Option<String>,
    plan_code: Option<String>,
    rate_per_sec: Option<i32>,
    rate_remaining: Option<i32>,
    retry_after_ms: Option<i64>,
    balance: Option<i64>,
    charged: Option<i64>,
    suggested_plan: Option<String>,
    in_grace_until: Option<OffsetDateTime>,
    spend_cap: Option<i64>,
    period_spent: Option<i64>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

struct Ctx<'a> {
    state: &'a AppState,
    started: Instant,
    now: OffsetDateTime,
    method: &'a Method,
    endpoint: &'a Endpoint,
    facts: Facts,
}

impl Ctx<'_> {
    /// Headers every metered response carries once the organization is known.
    fn metered_headers(&self, res: &mut Response, d: &Decision) {
        let h = res.headers_mut();
        if let Some(rate) = d.rate_per_sec {
            set(h, "ratelimit-policy", format!("\"plan\";q={rate};w=1"));
            let remaining = d.rate_remaining.unwrap_or(0).max(0);
            let reset = d
                .retry_after_ms
                .map(|ms| (ms + 999) / 1000)
                .unwrap_or(if remaining > 0 { 0 } else { 1 });
            set(h, "ratelimit", format!("\"plan\";r={remaining};t={reset}"));
        }
        if let Some(balance) = d.balance {
            set(h, "tollgate-credits-remaining", balance.to_string());
        }
        let mut warnings = Vec::new();
        if let Some(until) = d.in_grace_until {
            let date = until
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            warnings.push(format!(
                "subscription_past_due; until=\"{date}\"; fix=\"{}\"",
                self.state.config.url("/billing/payment-methods")
            ));
        }
        if d.outcome == "ok" && d.balance.is_some_and(|b| b < LOW_BALANCE) {
            warnings.push(format!(
                "low_balance; remaining={}; fix=\"{}\"",
                d.balance.unwrap_or(0),
                self.state.config.url("/billing/top-up")
            ));
        }
        if let (Some(cap), Some(spent)) = (d.spend_cap, d.period_spent) {
            if cap > 0 && spent * 5 >= cap * 4 && d.outcome == "ok" {
                warnings.push(format!(
                    "spend_cap_near; spent={spent}; cap={cap}; fix=\"{}\"",
                    self.state.config.url("/billing/limits")
                ));
            }
        }
        if !warnings.is_empty() {
            set(h, "tollgate-warning", warnings.join(", "));
        }
    }

    async fn record(&self, d: &Decision, status: StatusCode, problem: Option<&Problem>) {
        let Some(org_id) = d.org_id else { return };
        let event = UsageEvent {
            request_id: self.facts.request_id.clone(),
            org_id,
            api_key_id: d.key_id,
            mode: d.mode.clone().unwrap_or_else(|| "live".into()),
            endpoint: self.endpoint.id.to_string(),
            method: self.method.to_string(),
            status: status.as_u16(),
            problem_code: problem.map(|p| p.code.as_str().to_string()),
            credits: d.charged.unwrap_or(0),
            latency_us: self.started.elapsed().as_micros() as i64,
            problem_body: problem.map(|p| p.body.clone()),
            at: self.now,
        };
        self.state.usage.record(event).await;
    }

    async fn refuse(&self, code: Code, d: &Decision, facts: Facts) -> Response {
        let problem = Problem::new(code, &facts, &self.state.config);
        self.record(d, code.status(), Some(&problem)).await;
        let mut res = problem.into_response();
        self.metered_headers(&mut res, d);
        res
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let request_id = crate::http::request_id::of(&parts);
    let now = state.clock.now();
    let facts = Facts {
        instance: parts.uri.path().to_string(),
        request_id,
        ..Default::default()
    };
    let Some(endpoint) = catalogue::endpoint(parts.method.as_str(), parts.uri.path()) else {
        return Problem::new(Code::NotFound, &facts, &state.config).into_response();
    };
    let Some((secret, mode)) = bearer(&parts.headers).and_then(Secret::parse) else {
        return Problem::new(Code::InvalidApiKey, &facts, &state.config).into_response();
    };
    let body = match axum::body::to_bytes(body, 2 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => Bytes::new(),
    };
    let simulate = match mode {
        Mode::Test => parts
            .headers
            .get(SIMULATE_HEADER)
            .map(|v| v.to_str().unwrap_or("").trim().to_string()),
        Mode::Live => None,
    };
    let call = sample_api::parse(endpoint.id, &body);
    // Invalid input and simulations are never charged.
    let cost = match (&call, &simulate) {
        (Ok(c), None) => c.cost(),
        _ => 0,
    };
    let decision: Result<Decision, sqlx::Error> =
        sqlx::query_as("SELECT * FROM gateway_authorize($1, $2, $3, $4, $5, $6, NULL)")
            .bind(secret.hash())
            .bind(endpoint.id)
            .bind(endpoint.scope)
            .bind(cost)
            .bind(now)
            .bind(&facts.request_id)
            .fetch_one(&state.db)
            .await;
    let d = match decision {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "gateway could not reach the database");
            let body = serde_json::json!({
                "type": "about:blank", "title": "Service unavailable", "status": 503,
                "detail": "The gateway cannot reach its database; you were not charged. Retry in a moment.",
                "request_id": facts.request_id, "support": state.config.support_contact,
            });
            let mut res = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
    };
    let ctx = Ctx {
        state: &state,
        started,
        now,
        method: &parts.method,
        endpoint,
        facts: facts.clone(),
    };
    if d.outcome != "ok" {
        let code = Code::parse(&d.outcome).unwrap_or(Code::InvalidApiKey);
        let facts = Facts {
            balance: d.balance,
            required: Some(cost),
            suggested_plan: d.suggested_plan.clone(),
            plan: d.plan_code.clone(),
            retry_after_ms: d.retry_after_ms,
            spend_cap: d.spend_cap,
            period_spent: d.period_spent,
            scope: Some(endpoint.scope.to_string()),
            ..facts
        };
        return ctx.refuse(code, &d, facts).await;
    }
    if let Some(name) = simulate {
        return simulated(&ctx, &d, &name, facts).await;
    }
    let call = match call {
        Ok(c) => c,
        Err(errors) => {
            let facts = Facts { errors, ..facts };
            return ctx.refuse(Code::ValidationFailed, &d, facts).await;
        }
    };
    // The built-in upstream answers in-process and cannot fail, so the whole
    // reservation is captured. (Provider routes release what they do not use.)
    let answer = call.answer(now);
    ctx.record(&d, StatusCode::OK, None).await;
    let mut res = Json(answer).into_response();
    ctx.metered_headers(&mut res, &d);
    res
}

/// `Tollgate-Simulate: <code>` on a test key: that code's exact body, built
/// by the same code as a real refusal, with this key's real balance.
async fn simulated(ctx: &Ctx<'_>, d: &Decision, name: &str, facts: Facts) -> Response {
    let Some(code) = Code::parse(name) else {
        let known: Vec<&str> = catalogue::ALL.iter().map(|c| c.as_str()).collect();
        let facts = Facts {
            errors: vec![(
                "Tollgate-Simulate".into(),
                format!("Unknown code \"{name}\"; use one of: {}.", known.join(", ")),
            )],
            ..facts
        };
        return ctx.refuse(Code::ValidationFailed, d, facts).await;
    };
    let balance = d.balance.unwrap_or(0);
    let facts = Facts {
        balance: Some(balance),
        required: Some(balance + 1),
        suggested_plan: Some(if d.plan_code.as_deref() == Some("pro") {
            "enterprise".into()
        } else {
            "pro".into()
        }),
        plan: d.plan_code.clone(),
        retry_after_ms: Some(1000),
        spend_cap: Some(1000),
        period_spent: Some(1000),
        scope: Some(ctx.endpoint.scope.to_string()),
        errors: vec![("text".into(), "Is required.".into())],
        ..facts
    };
    let d = Decision {
        retry_after_ms: (code == Code::RateLimited).then_some(1000),
        rate_remaining: if code == Code::RateLimited {
            Some(0)
        } else {
            d.rate_remaining
        },
        outcome: code.as_str().to_string(),
        charged: Some(0),
        ..d.clone()
    };
    ctx.refuse(code, &d, facts).await
}
