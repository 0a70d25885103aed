//! The metered API on `/v1`. Each call runs the pipeline of the product, in
//! order: authenticate the key (401) → scope (403) → subscription state and
//! approval (402) → plan includes the endpoint (402) → rate limit (429) →
//! spend cap (402) → reserve the credits (402) → call the upstream → capture
//! (give back what was not used) → record the usage event.
//!
//! The decision up to the rate limit is made in memory ([`cache`], kept
//! current by notifications), the rate limit from tokens claimed in blocks
//! ([`rate`]), and a live call's credits come from a lease this instance
//! holds ([`leases`]), its charge posted with others in one batch
//! ([`journal`]) before it is answered. An organization with little room
//! left, and test keys, take the exact per-call path: `gateway_authorize`,
//! one round trip, one transaction, one row lock per organization. Either
//! way enforcement is exact on one instance or many. Usage events of calls
//! that move nothing are written off the hot path (see [`usage`]).

/// The problem codes and built-in endpoints (`crate::catalogue`), which the
/// gateway, billing and the docs share.
pub use crate::catalogue;
pub mod cache;
pub mod decision;
pub mod durable;
pub mod holds;
pub mod journal;
pub mod leases;
pub mod path;
pub mod problem;
pub mod proxy;
pub mod rate;
pub mod routes;
pub mod usage;

use crate::api_keys::{Mode, Secret};
use crate::sample_api;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use catalogue::Code;
use decision::{Decision, Outcome};
use problem::{Facts, Problem};
use std::time::Instant;
use time::OffsetDateTime;
use usage::UsageEvent;

/// The gateway's parts, started together by [`Gateway::start`] and shared
/// by every call on this instance.
#[derive(Clone)]
pub struct Gateway {
    /// The gateway's pool: commits without waiting for the disk; calls that
    /// move credits wait on `durable` instead (see [`durable`]).
    pub db: sqlx::PgPool,
    pub durable: durable::Durability,
    /// Rate-limit tokens this instance has claimed (see [`rate`]).
    pub rate: rate::RateLeases,
    /// Where calls send their usage events (written in batches).
    pub usage: usage::UsageSink,
    /// The active provider routes, kept current by [`routes::follow`].
    pub routes: routes::RouteTable,
    pub upstreams: proxy::Upstreams,
    /// Keys, subscriptions and plans in memory (see [`cache`]).
    pub cache: cache::DecisionCache,
    /// Credits this instance holds in leases (see [`leases`]).
    pub leases: leases::Leases,
    /// Where charges paid from leases are posted (see [`journal`]).
    pub journal: journal::Journal,
}

impl Gateway {
    /// Starts the usage writer and the commit flusher on `db`'s database;
    /// must be called inside a Tokio runtime.
    pub fn start(db: &sqlx::PgPool, clock: &crate::clock::Clock) -> Self {
        let gateway_db = durable::async_commit_pool(db);
        let instance = uuid::Uuid::new_v4();
        let gateway = Gateway {
            durable: durable::Durability::start(db),
            rate: Default::default(),
            usage: usage::UsageSink::start(db.clone()),
            routes: Default::default(),
            upstreams: Default::default(),
            cache: cache::DecisionCache::start(db),
            leases: leases::Leases::new(gateway_db.clone(), instance),
            journal: journal::Journal::start(db, instance, clock.clone()),
            db: gateway_db,
        };
        tokio::spawn(tend_leases(db.clone(), gateway.clone(), clock.clone()));
        gateway
    }

    /// This instance's loops: the route table follows changes, and lapsed
    /// rate leases are forgotten every ten minutes.
    pub fn start_followers(
        &self,
        db: &sqlx::PgPool,
        clock: &crate::clock::Clock,
        shutdown: &crate::shutdown::Shutdown,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (rate, clock, stop) = (self.rate.clone(), clock.clone(), shutdown.clone());
        vec![
            tokio::spawn(routes::follow(
                db.clone(),
                self.routes.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(async move {
                while !stop.is_set() {
                    rate.prune(clock.now());
                    stop.sleep(std::time::Duration::from_secs(600)).await;
                }
            }),
        ]
    }

    /// Writes the usage events still queued and returns the leases; for
    /// when the server stops.
    pub async fn drain(&self, now: OffsetDateTime) {
        self.leases.return_all(now, std::time::Duration::from_secs(5)).await;
        self.usage.flush().await;
    }
}

/// This instance's leases, tended every second until the pool closes:
/// idle ones returned, ones in use renewed, the organizations whose spend
/// cap or balance changed (a notification) rotated, and every instance's
/// expired leases reclaimed every five seconds.
async fn tend_leases(db: sqlx::PgPool, gateway: Gateway, clock: crate::clock::Clock) {
    let mut changed = gateway.cache.watch();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    while !db.is_closed() {
        tokio::select! {
            org = changed.recv() => match org {
                Some(org) => gateway.leases.rotate(org).await,
                None => return,
            },
            _ = tick.tick() => {
                gateway.leases.tend(clock.now()).await;
                n += 1;
                if n % 5 == 0 {
                    if let Err(e) = leases::reclaim(&gateway.db, clock.now()).await {
                        tracing::warn!(error = %e, "could not reclaim expired leases");
                    }
                }
            }
        }
    }
}

pub const SIMULATE_HEADER: &str = "tollgate-simulate";
use crate::billing::policy;
/// The largest body a built-in endpoint reads.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// How long past a route's timeout a held reservation waits before the
/// holds job may settle it (see [`holds`]).
const HOLD_MARGIN: time::Duration = time::Duration::seconds(60);
/// How long a charged built-in call's hold waits for its usage event (which
/// settles it) before the holds job gives the charge back.
const BUILTIN_HOLD: time::Duration = time::Duration::minutes(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/{*path}", any(handle).layer(axum::middleware::from_fn(counted)))
        .route("/openapi.json", get(openapi))
}

/// Counts every answer of the gateway by outcome (served: 2xx or 3xx;
/// refused: 4xx; failed: 5xx) and problem code, with its latency.
async fn counted(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let outcome = match res.status().as_u16() {
        0..=399 => "served",
        400..=499 => "refused",
        _ => "failed",
    };
    let code = res.headers().get("tollgate-problem").and_then(|v| v.to_str().ok()).unwrap_or("");
    crate::metrics::get().decision(outcome, code, started.elapsed());
    res
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
    Json(sample_api::openapi::document(
        &state.config,
        &state.gateway.routes.all(),
    ))
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
    endpoint_id: String,
    scope: String,
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
        let low = d.low_balance_at.unwrap_or(policy::LOW_BALANCE_DEFAULT);
        if d.outcome.is_ok() && d.balance.is_some_and(|b| b < low) {
            warnings.push(format!(
                "low_balance; remaining={}; fix=\"{}\"",
                d.balance.unwrap_or(0),
                self.state.config.url("/billing/top-up")
            ));
        }
        if let (Some(cap), Some(spent)) = (d.spend_cap, d.period_spent) {
            if d.outcome.is_ok() && policy::near_spend_cap(spent, cap) {
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
        self.record_event(d, status, problem, false).await
    }

    /// The usage event of an answered built-in call; writing it settles the
    /// call's hold (its whole charge stands).
    async fn record_answered(&self, d: &Decision) {
        self.record_event(d, StatusCode::OK, None, d.charged.unwrap_or(0) > 0).await
    }

    async fn record_event(&self, d: &Decision, status: StatusCode, problem: Option<&Problem>, settles_hold: bool) {
        if d.org_id.is_none() {
            return;
        }
        let event = self.event(d, status, problem, settles_hold);
        self.state.gateway.usage.record(event).await;
    }

    fn event(&self, d: &Decision, status: StatusCode, problem: Option<&Problem>, settles_hold: bool) -> UsageEvent {
        UsageEvent {
            request_id: self.facts.request_id.clone(),
            org_id: d.org_id.unwrap_or_default(),
            api_key_id: d.key_id,
            mode: d.mode.unwrap_or(Mode::Live).as_str().to_string(),
            endpoint: self.endpoint_id.clone(),
            method: self.method.to_string(),
            status: status.as_u16(),
            problem_code: problem.map(|p| p.code.as_str().to_string()),
            credits: d.charged.unwrap_or(0),
            latency_us: self.started.elapsed().as_micros() as i64,
            problem_body: problem.map(|p| p.body.clone()),
            at: self.now,
            settles_hold,
        }
    }

    async fn refuse(&self, code: Code, d: &Decision, mut facts: Facts) -> Response {
        // A payment that failed says how, as the processor reported it.
        if code == Code::SubscriptionPastDue && facts.payment_error.is_none() {
            if let Some(org) = d.org_id {
                match crate::billing::payments::last_failure(&self.state.db, org).await {
                    Ok(found) => facts.payment_error = found,
                    Err(e) => tracing::warn!(error = %e, "could not read the failed payment"),
                }
            }
        }
        let problem = Problem::new(code, &facts, &self.state.config);
        self.record(d, code.status(), Some(&problem)).await;
        let mut res = problem.into_response();
        self.metered_headers(&mut res, d);
        res
    }

    /// The pipeline up to the reservation: the decision when the call may
    /// go on, or the response that ends it (a refusal, a simulation, or 503
    /// when the database is out of reach). A live call's credits come from
    /// this instance's lease when there is room for one; otherwise, and for
    /// test keys, from `gateway_authorize` (the exact path).
    async fn admit(
        &self,
        key: &[u8],
        cost: i64,
        route_plans: Option<&[String]>,
        hold_until: Option<OffsetDateTime>,
        simulate: Option<String>,
    ) -> Result<Decision, Response> {
        let gw = &self.state.gateway;
        let mut d = match self.check(key, route_plans).await {
            Ok(d) => d,
            Err(e) => return Err(failed(&self.state.config, &self.facts.request_id, e)),
        };
        if !d.outcome.is_ok() || cost <= 0 {
            return self.decided(d, cost, simulate).await;
        }
        if let (Some(Mode::Live), Some(org)) = (d.mode, d.org_id) {
            match gw.leases.reserve(org, cost, self.now).await {
                Ok(Some((r, view))) => {
                    d.charged = Some(cost);
                    d.balance = Some(view.balance);
                    d.spend_cap = view.spend_cap;
                    d.period_spent = Some(view.period_spent);
                    d.low_balance_at = Some(view.low_balance_at);
                    d.lease = Some(r);
                    return self.decided(d, cost, simulate).await;
                }
                Ok(None) => {}
                // The exact path decides instead.
                Err(e) => tracing::warn!(error = %e, "could not take a lease"),
            }
        }
        let decision: Result<Decision, sqlx::Error> =
            sqlx::query_as("SELECT * FROM gateway_authorize($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(key)
                .bind(&self.endpoint_id)
                .bind(&self.scope)
                .bind(cost)
                .bind(self.now)
                .bind(&self.facts.request_id)
                .bind(route_plans)
                .bind(hold_until)
                .fetch_one(&gw.db)
                .await;
        let exact = match decision {
            Ok(exact) => Decision {
                rate_per_sec: d.rate_per_sec,
                rate_remaining: d.rate_remaining,
                ..exact
            },
            Err(e) => {
                // The caller is told nothing was charged; a charge that
                // committed all the same (the connection dropped after the
                // commit) goes back in the background.
                let unreadable = matches!(e, sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_));
                if !unreadable {
                    let (db, id, now) = (gw.db.clone(), self.facts.request_id.clone(), self.now);
                    tokio::spawn(reconcile_unanswered(db, id, cost, now, &RECONCILE_AFTER));
                }
                return Err(failed(&self.state.config, &self.facts.request_id, e));
            }
        };
        self.decided(exact, cost, simulate).await
    }

    /// Turns a decision into the call going on, a refusal or a simulation.
    async fn decided(
        &self,
        d: Decision,
        cost: i64,
        simulate: Option<String>,
    ) -> Result<Decision, Response> {
        if let Outcome::Refused(code) = d.outcome {
            let facts = Facts {
                balance: d.balance,
                required: Some(cost),
                suggested_plan: d.suggested_plan.clone(),
                plan: d.plan_code.clone(),
                retry_after_ms: d.retry_after_ms,
                spend_cap: d.spend_cap,
                period_spent: d.period_spent,
                scope: Some(self.scope.clone()),
                ..self.facts.clone()
            };
            return Err(self.refuse(code, &d, facts).await);
        }
        if let Some(name) = simulate {
            return Err(simulated(self, &d, &name, self.facts.clone()).await);
        }
        // Nothing is served on a charge that is not yet on disk (a leased
        // call's charge is posted, and waited for, once it is known).
        if d.lease.is_none() && d.charged.unwrap_or(0) > 0 && !self.state.gateway.durable.wait().await {
            tracing::error!("could not confirm a charge on disk; giving it back");
            let amount = d.charged.unwrap_or(0);
            match holds::settle(self.state, &self.facts.request_id, amount, self.now).await {
                // Settled before, or the database could not say: release
                // anyway (idempotent per request, retried in the background).
                holds::Settled::Before | holds::Settled::Unknown => {
                    release(self.state, &self.facts.request_id, amount, self.now).await;
                }
                holds::Settled::Now(_) => {}
            }
            return Err(unavailable(&self.state.config, &self.facts.request_id));
        }
        Ok(d)
    }

    /// The checks before a built-in endpoint's body is read (key, scope,
    /// subscription, plan), so an unknown key cannot make the gateway read
    /// a body: `Ok` when the call may go on to read it.
    async fn precheck(&self, key: &[u8]) -> Result<Decision, Response> {
        let gw = &self.state.gateway;
        let d = match gw.cache.decide(&gw.db, key, &self.endpoint_id, &self.scope, None, self.now).await {
            Ok((d, _)) => d,
            Err(e) => return Err(failed(&self.state.config, &self.facts.request_id, e)),
        };
        self.decided(d, 0, None).await
    }

    /// The checks every call takes, in memory when it can (see [`cache`]):
    /// key, scope, subscription, plan; then the rate limit from this
    /// instance's tokens (see [`rate`]).
    async fn check(
        &self,
        key: &[u8],
        route_plans: Option<&[String]>,
    ) -> Result<Decision, sqlx::Error> {
        let gw = &self.state.gateway;
        let (mut d, _) = gw.cache.decide(&gw.db, key, &self.endpoint_id, &self.scope, route_plans, self.now).await?;
        if !d.outcome.is_ok() {
            return Ok(d);
        }
        let (Some(org), Some(rate), Some(_)) = (d.org_id, d.rate_per_sec, d.balance) else {
            // No meters: as `gateway_authorize` answers.
            d.outcome = Outcome::Refused(Code::InsufficientCredits);
            d.balance = Some(0);
            return Ok(d);
        };
        let Some(mode) = d.mode else {
            // An "ok" decision always names the key's mode.
            return Err(sqlx::Error::Protocol(
                "a decision without the key's mode".into(),
            ));
        };
        match gw.rate.take(&gw.db, org, mode, rate, self.now).await? {
            rate::Admit::Yes { remaining } => d.rate_remaining = Some(remaining),
            rate::Admit::No { retry_after_ms } => {
                d.outcome = Outcome::Refused(Code::RateLimited);
                d.rate_remaining = Some(0);
                d.retry_after_ms = Some(retry_after_ms);
            }
        }
        // What a free call's headers show: this instance's lease's view of
        // the balance when it has one, else the balance last read.
        if mode == Mode::Live {
            if let Some(view) = gw.leases.view(org).await {
                d.balance = Some(view.balance);
            }
        }
        Ok(d)
    }

    /// Posts a leased call's charge of `cost` (what it reserved, or less) in
    /// the journal and waits for it to be on disk. `Err`: the batch was
    /// fenced or could not be written; the call is answered 503, uncharged.
    async fn post_charge(&self, d: &Decision, r: &leases::Reservation, cost: i64, status: StatusCode) -> Result<Decision, Response> {
        let gw = &self.state.gateway;
        let view = gw.leases.settle(r, cost).await;
        let mut event = self.event(d, status, None, false);
        event.credits = cost;
        let posted = gw.journal.post(r.lease, event).await;
        gw.leases.done(r, cost, posted).await;
        if posted != leases::Posted::Yes {
            if posted == leases::Posted::Fenced {
                crate::metrics::get().lease("fenced", 0);
            }
            tracing::warn!(request_id = %self.facts.request_id, ?posted, "a leased charge did not stand; answering 503");
            // A fenced call's event says 503. One whose batch is in doubt
            // gets none here: the batch's own event, if it committed after
            // all, is turned into the 503 by its void.
            if posted == leases::Posted::Fenced {
                let d = Decision { charged: Some(0), ..d.clone() };
                self.record_event(&d, StatusCode::SERVICE_UNAVAILABLE, None, false).await;
            }
            return Err(unavailable(&self.state.config, &self.facts.request_id));
        }
        Ok(Decision {
            charged: Some(cost),
            balance: view.map(|v| v.balance).or(d.balance),
            ..d.clone()
        })
    }

    /// Forwards an admitted call to its route's upstream, captures what it
    /// cost and releases the rest of the reservation. An upstream that fails,
    /// answers 5xx or times out costs nothing: the whole reservation goes back.
    async fn proxy(
        &self,
        route: &routes::Route,
        url: String,
        parts: &axum::http::request::Parts,
        body: axum::body::Body,
        d: Decision,
    ) -> Response {
        let reserved = d.charged.unwrap_or(0);
        let caller = proxy::Caller {
            request_id: &self.facts.request_id,
            org_id: d.org_id.map(|id| id.to_string()).unwrap_or_default(),
            key_id: d.key_id.map(|id| id.to_string()).unwrap_or_default(),
            mode: d.mode.map(|m| m.as_str().to_string()).unwrap_or_default(),
            plan: d.plan_code.clone().unwrap_or_default(),
            client_ip: crate::http::client_ip(parts, &self.state.config.trusted_proxies),
        };
        let sent = proxy::forward(
            &self.state.gateway.upstreams,
            route,
            url,
            &parts.method,
            &parts.headers,
            body,
            caller,
        )
        .await;
        let answered = match sent {
            Ok(res) if res.status().is_server_error() => Err(proxy::Failure::Failed(format!(
                "the upstream answered {}",
                res.status()
            ))),
            Ok(res) => {
                let public = self.state.config.url(&route.path_prefix);
                proxy::answer(route, &public, reserved, res).await
            }
            Err(f) => Err(f),
        };
        let answer = match answered {
            Ok(a) => a,
            Err(failure) => {
                let code = match &failure {
                    proxy::Failure::TimedOut => Code::UpstreamTimeout,
                    proxy::Failure::Failed(_) => Code::UpstreamFailed,
                };
                tracing::warn!(route = %route.path_prefix, ?failure, "upstream call failed");
                if let Some(r) = &d.lease {
                    self.state.gateway.leases.release(r).await;
                    let d = Decision { charged: Some(0), ..d };
                    return self.refuse(code, &d, self.facts.clone()).await;
                }
                let settled = self.settle(reserved, reserved).await;
                let d = Decision {
                    // Whoever settles, a failed call costs nothing in the end.
                    charged: Some(0),
                    balance: settled.balance().or(d.balance),
                    ..d
                };
                return self.refuse(code, &d, self.facts.clone()).await;
            }
        };
        let (d, charged) = match &d.lease {
            Some(r) => match self.post_charge(&d, r, answer.cost, answer.status).await {
                Ok(d) => (d, answer.cost),
                Err(res) => return res,
            },
            None => {
                let settled = self.settle(reserved, reserved - answer.cost).await;
                let charged = match settled {
                    // The holds job settled first (this call outlived its
                    // deadline) and gave the whole reservation back.
                    holds::Settled::Before => 0,
                    holds::Settled::Now(_) | holds::Settled::Unknown => answer.cost,
                };
                let d = Decision {
                    charged: Some(charged),
                    balance: settled.balance().or(d.balance),
                    ..d
                };
                self.record(&d, answer.status, None).await;
                (d, charged)
            }
        };
        let mut res = Response::new(answer.body);
        *res.status_mut() = answer.status;
        *res.headers_mut() = answer.headers;
        self.metered_headers(&mut res, &d);
        set(
            res.headers_mut(),
            "tollgate-credits-charged",
            charged.to_string(),
        );
        res
    }

    /// A test key's call to a route without a test upstream: the route's
    /// example answer, at the route's price (from the sandbox).
    async fn example(&self, route: &routes::Route, d: Decision) -> Response {
        let reserved = d.charged.unwrap_or(0);
        let settled = self.settle(reserved, 0).await;
        let charged = match settled {
            holds::Settled::Before => 0,
            holds::Settled::Now(_) | holds::Settled::Unknown => reserved,
        };
        let d = Decision {
            charged: Some(charged),
            balance: settled.balance().or(d.balance),
            ..d
        };
        self.record(&d, StatusCode::OK, None).await;
        let mut res = Response::new(axum::body::Body::from(route.example_answer()));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.metered_headers(&mut res, &d);
        set(res.headers_mut(), "tollgate-credits-charged", charged.to_string());
        set(res.headers_mut(), "tollgate-example", "true".to_string());
        res
    }

    /// Settles this call's hold, giving back `release` of the `reserved`
    /// credits. A call that reserved nothing has no hold.
    async fn settle(&self, reserved: i64, release: i64) -> holds::Settled {
        if reserved <= 0 {
            return holds::Settled::Now(None);
        }
        // Settled as of now: a call can end after the period it began in.
        let now = self.state.clock.now();
        holds::settle(self.state, &self.facts.request_id, release, now).await
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

/// Runs each call to completion in its own task: once credits are reserved,
/// a client that hangs up must not cancel the capture or the release.
/// A key the portal acts with on a signed-in member's behalf (the
/// explorer's "one of your keys"): its stored hash and mode, so the portal
/// never needs the secret. Only set in-process, as a request extension.
#[derive(Clone, Debug)]
pub struct ActingKey {
    pub hash: Vec<u8>,
    pub mode: Mode,
}

/// Runs a call through the whole pipeline, as `/v1` would (its own task,
/// so the caller hanging up cannot cancel a capture or a release).
pub async fn call(state: AppState, req: Request) -> Response {
    handle(State(state), req).await
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    match tokio::spawn(pipeline(state, req)).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "the gateway's call task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn pipeline(state: AppState, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let request_id = crate::http::request_id::of(&parts);
    let now = state.clock.now();
    let facts = Facts {
        instance: parts.uri.path().to_string(),
        request_id,
        ..Default::default()
    };
    let path = parts.uri.path();
    if let Err(why) = path::check(path) {
        let facts = Facts {
            detail: Some(format!(
                "The path contains {why}; the gateway does not forward such paths. Send the path as the API reference shows it."
            )),
            ..facts
        };
        return Problem::new(Code::InvalidPath, &facts, &state.config).into_response();
    }
    let builtin = catalogue::endpoint(parts.method.as_str(), path);
    let route = match builtin {
        Some(_) => None,
        None => state.gateway.routes.find(path),
    };
    let (endpoint_id, scope) = match (builtin, &route) {
        (Some(e), _) => (e.id.to_string(), e.scope.to_string()),
        (None, Some(r)) => (r.endpoint.clone(), r.scope.clone()),
        (None, None) => return Problem::new(Code::NotFound, &facts, &state.config).into_response(),
    };
    // The key: an `ActingKey` the portal's explorer put on the request (it
    // cannot come from outside), or the bearer token.
    let (key, mode) = match parts.extensions.get::<ActingKey>() {
        Some(k) => (k.hash.clone(), k.mode),
        None => match bearer(&parts.headers).and_then(Secret::parse) {
            Some((secret, mode)) => (secret.hash(), mode),
            None => return Problem::new(Code::InvalidApiKey, &facts, &state.config).into_response(),
        },
    };
    let simulate = match mode {
        Mode::Test => parts
            .headers
            .get(SIMULATE_HEADER)
            .map(|v| v.to_str().unwrap_or("").trim().to_string()),
        Mode::Live => None,
    };
    let ctx = Ctx {
        state: &state,
        started,
        now,
        method: &parts.method,
        endpoint_id,
        scope,
        facts,
    };
    match route {
        None => {
            let body = if parts.method == Method::GET {
                axum::body::Bytes::new()
            } else {
                // The key first, then (at most MAX_BODY of) the body.
                let d = match ctx.precheck(&key).await {
                    Ok(d) => d,
                    Err(res) => return res,
                };
                let declared = parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let read = match declared {
                    Some(n) if n > MAX_BODY as u64 => None,
                    _ => axum::body::to_bytes(body, MAX_BODY).await.ok(),
                };
                match read {
                    Some(b) => b,
                    None => {
                        return ctx
                            .refuse(Code::PayloadTooLarge, &d, ctx.facts.clone())
                            .await
                    }
                }
            };
            let call = sample_api::parse(&ctx.endpoint_id, &body);
            // Invalid input and simulations are never charged.
            let cost = match (&call, &simulate) {
                (Ok(c), None) => c.cost(),
                _ => 0,
            };
            // A charged call is held until its answer's usage event is
            // written: a charge whose answer never went out (the connection
            // dropped after the commit) is given back by the holds job.
            let hold_until = (cost > 0).then(|| now + BUILTIN_HOLD);
            let d = match ctx.admit(&key, cost, None, hold_until, simulate).await {
                Ok(d) => d,
                Err(res) => return res,
            };
            let call = match call {
                Ok(c) => c,
                Err(errors) => {
                    let facts = Facts {
                        errors,
                        ..ctx.facts.clone()
                    };
                    return ctx.refuse(Code::ValidationFailed, &d, facts).await;
                }
            };
            // The built-in upstream answers in-process and cannot fail, so
            // the whole reservation is captured.
            let answer = call.answer(now);
            let d = match &d.lease {
                Some(r) => match ctx.post_charge(&d, r, cost, StatusCode::OK).await {
                    Ok(d) => d,
                    Err(res) => return res,
                },
                None => {
                    ctx.record_answered(&d).await;
                    d
                }
            };
            let mut res = Json(answer).into_response();
            ctx.metered_headers(&mut res, &d);
            res
        }
        Some(route) => {
            let Some(url) = route.upstream_for(path, parts.uri.query()) else {
                let facts = Facts {
                    detail: Some("The path would leave this endpoint on the service behind it; the gateway does not forward it.".into()),
                    ..ctx.facts.clone()
                };
                return Problem::new(Code::InvalidPath, &facts, &state.config).into_response();
            };
            let reserve = if simulate.is_some() { 0 } else { route.price };
            // The hold outlives the longest the call can take: the wait for
            // the answer's headers, then reading a metered answer.
            let hold_until = now + route.timeout() * 2 + HOLD_MARGIN;
            let d = match ctx
                .admit(
                    &key,
                    reserve,
                    Some(&route.plans),
                    Some(hold_until),
                    simulate,
                )
                .await
            {
                Ok(d) => d,
                Err(res) => return res,
            };
            // Test keys spend a sandbox anyone can refill: they never reach
            // the live upstream, only the route's test upstream or its
            // example answer.
            if d.mode == Some(Mode::Test) {
                return match route.test_upstream_for(path, parts.uri.query()) {
                    Some(Some(test_url)) => ctx.proxy(&route, test_url, &parts, body, d).await,
                    _ => ctx.example(&route, d).await,
                };
            }
            ctx.proxy(&route, url, &parts, body, d).await
        }
    }
}

/// When a charged call whose decision could not be read is reconciled.
pub const RECONCILE_AFTER: [std::time::Duration; 4] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(5),
    std::time::Duration::from_secs(30),
    std::time::Duration::from_secs(120),
];

/// A charged call answered "not charged" because its `gateway_authorize`
/// failed as seen from here may have committed all the same (the connection
/// dropped after the commit, or the commit landed late): whatever it charged
/// goes back. `gateway_release` moves nothing when no charge exists and at
/// most once when one does, so it is tried after each of `after` (a commit
/// can land late). Returns the balance after the release that found the
/// charge, if one did. (An instance that stops meanwhile leaves it; the
/// ledger stays balanced.)
pub async fn reconcile_unanswered(
    db: sqlx::PgPool,
    request_id: String,
    amount: i64,
    now: OffsetDateTime,
    after: &[std::time::Duration],
) -> Option<i64> {
    for wait in after {
        tokio::time::sleep(*wait).await;
        match sqlx::query_scalar::<_, Option<i64>>("SELECT gateway_release($1, $2, $3)")
            .bind(&request_id)
            .bind(amount)
            .bind(now)
            .fetch_one(&db)
            .await
        {
            Ok(Some(balance)) => {
                tracing::warn!(%request_id, amount, "gave back the charge of a call answered as not charged");
                return Some(balance);
            }
            Ok(None) | Err(_) => continue,
        }
    }
    None
}

/// Gives back `amount` of a call's reservation. Idempotent per request, so
/// it is retried until it lands: in place a few times, then in the background.
async fn release(
    state: &AppState,
    request_id: &str,
    amount: i64,
    now: OffsetDateTime,
) -> Option<i64> {
    if amount <= 0 {
        return None;
    }
    let attempt = move |db: sqlx::PgPool, id: String| async move {
        sqlx::query_scalar::<_, Option<i64>>("SELECT gateway_release($1, $2, $3)")
            .bind(id)
            .bind(amount)
            .bind(now)
            .fetch_one(&db)
            .await
    };
    let confirmed = |balance: Option<i64>| async move {
        if !state.gateway.durable.wait().await {
            tracing::error!(request_id, amount, "could not confirm a release on disk");
        }
        balance
    };
    for n in 0..3u32 {
        match attempt(state.gateway.db.clone(), request_id.to_string()).await {
            Ok(balance) => return confirmed(balance).await,
            Err(e) => {
                tracing::warn!(error = %e, request_id, amount, "could not release credits; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50 << n)).await;
            }
        }
    }
    let (db, id) = (state.db.clone(), request_id.to_string());
    tokio::spawn(async move {
        for n in 1..=10u64 {
            tokio::time::sleep(std::time::Duration::from_secs(n * n)).await;
            if attempt(db.clone(), id.clone()).await.is_ok() {
                return;
            }
        }
        tracing::error!(request_id = %id, amount, "credits to release are still held; release them with adjust-credits");
    });
    None
}

/// The answer when the decision could not be had: 500 when the database
/// answered something the gateway cannot read (an unknown outcome or mode,
/// logged with the request id), else 503 (the database is out of reach).
/// Either way nothing was decided or charged.
fn failed(config: &crate::config::Config, request_id: &str, e: sqlx::Error) -> Response {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::Protocol(_) => {
            tracing::error!(request_id, error = %e, "the gateway could not read its decision");
            let body = serde_json::json!({
                "type": "about:blank", "title": "Internal error", "status": 500,
                "detail": "The gateway could not read its own decision; you were not charged. Quote the request id to support.",
                "request_id": request_id, "support": config.support_contact,
            });
            let mut res = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            res
        }
        e => {
            tracing::error!(request_id, error = %e, "gateway could not reach the database");
            unavailable(config, request_id)
        }
    }
}

/// 503 when the database is out of reach: nothing was decided or charged.
fn unavailable(config: &crate::config::Config, request_id: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank", "title": "Service unavailable", "status": 503,
        "detail": "The gateway cannot reach its database; you were not charged. Retry in a moment.",
        "request_id": request_id, "support": config.support_contact,
    });
    let mut res = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// The next plan up from `plan` (by price), for a simulated
/// `plan_upgrade_required`; the dearest plan when there is none above.
async fn plan_above(state: &AppState, plan: Option<&str>) -> String {
    let above: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
        "SELECT code FROM plans WHERE active
           AND price_minor > coalesce((SELECT price_minor FROM plans WHERE code = $1), -1)
         ORDER BY price_minor, sort_order LIMIT 1",
    )
    .bind(plan)
    .fetch_optional(&state.db)
    .await;
    match above {
        Ok(Some(code)) => code,
        _ => plan.unwrap_or_default().to_string(),
    }
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
        suggested_plan: Some(plan_above(ctx.state, d.plan_code.as_deref()).await),
        plan: d.plan_code.clone(),
        retry_after_ms: Some(1000),
        spend_cap: Some(1000),
        period_spent: Some(1000),
        scope: Some(ctx.scope.clone()),
        errors: vec![("text".into(), "Is required.".into())],
        payment_error: Some(("card_declined".into(), Some("insufficient_funds".into()))),
        ..facts
    };
    let d = Decision {
        retry_after_ms: (code == Code::RateLimited).then_some(1000),
        rate_remaining: if code == Code::RateLimited {
            Some(0)
        } else {
            d.rate_remaining
        },
        outcome: Outcome::Refused(code),
        charged: Some(0),
        ..d.clone()
    };
    ctx.refuse(code, &d, facts).await
}
