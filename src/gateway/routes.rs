//! Provider routes: a path prefix under `/v1` proxied to an upstream URL,
//! with its price (fixed per call, or metered by what the upstream reports),
//! the plans that include it and the key scope it needs.
//!
//! Routes live in PostgreSQL. Each instance keeps the active ones in memory
//! ([`RouteTable`]) and reloads them when a change is announced on the
//! `tollgate_routes` channel (a trigger on the table), so a route goes live or
//! stops on every instance at once, without a query per call.

use crate::gateway::catalogue;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Why a route could not be saved or switched.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// (field, message) pairs.
    #[error("invalid input")]
    Invalid(Vec<(&'static str, String)>),
    #[error("no such route")]
    NotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl RouteError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        RouteError::Invalid(vec![(field, message.into())])
    }
}

pub const CHANNEL: &str = "tollgate_routes";
/// The most a route may reserve per call.
pub const MAX_PRICE: i64 = 1_000_000;
pub const MAX_TIMEOUT_MS: i32 = 300_000;
pub const DEFAULT_TIMEOUT_MS: i32 = 30_000;

crate::text_enum! {
    /// How a route is priced.
    pub enum Pricing {
        /// `price` credits per call.
        Fixed = "fixed",
        /// Reserve `price`, capture what the upstream reports: a
        /// `Tollgate-Cost` header, or `usage.total_tokens` × `rate_per_1k` /
        /// 1000 (rounded up).
        Metered = "metered",
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Route {
    pub id: Uuid,
    pub path_prefix: String,
    pub upstream_url: String,
    pub endpoint: String,
    pub scope: String,
    pub pricing: Pricing,
    pub price: i64,
    pub rate_per_1k: i64,
    pub plans: Vec<String>,
    pub timeout_ms: i32,
    pub active: bool,
    pub description: String,
    pub created_at: OffsetDateTime,
    /// Where test keys' calls go; none: they get `test_example`.
    pub test_upstream_url: Option<String>,
    /// The JSON test keys get when there is no test upstream (a default
    /// example when empty).
    pub test_example: Option<String>,
}

impl Route {
    pub fn pricing(&self) -> Pricing {
        self.pricing
    }

    /// The part of `path` after this route's prefix, when the prefix matches
    /// whole segments: `/v1/chat` matches `/v1/chat` and `/v1/chat/x`, not
    /// `/v1/chatter`.
    pub fn rest<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(self.path_prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// Where a call to `path?query` goes upstream, or `None` when the URL
    /// would not stay below the route's upstream URL.
    ///
    /// The URL is checked after parsing, because a URL parser may read the
    /// path differently from the gateway (WHATWG parsers turn `\` into `/`
    /// and resolve `..`): the parsed URL must have the upstream's origin and
    /// exactly the upstream's path followed by the rest of the caller's path.
    /// (The gateway refuses such paths before routing too; see
    /// [`super::path`].)
    pub fn upstream_for(&self, path: &str, query: Option<&str>) -> Option<String> {
        self.below(&self.upstream_url, path, query)
    }

    /// Where a test key's call to `path?query` goes: the route's test
    /// upstream (`Some(Some(url))`), its example answer (`Some(None)`), or
    /// nowhere (`None`, as `upstream_for`). Test keys never reach the live
    /// upstream: their sandbox credits are free to refill.
    pub fn test_upstream_for(&self, path: &str, query: Option<&str>) -> Option<Option<String>> {
        match self.test_upstream_url.as_deref().filter(|u| !u.is_empty()) {
            Some(base) => self.below(base, path, query).map(Some),
            None => self.rest(path).map(|_| None),
        }
    }

    /// The answer test keys get when the route has no test upstream.
    pub fn example_answer(&self) -> String {
        match self.test_example.as_deref().filter(|e| !e.trim().is_empty()) {
            Some(e) => e.to_string(),
            None => serde_json::json!({
                "example": true,
                "endpoint": self.endpoint,
                "detail": "Test keys get this route's example answer; live keys reach the service.",
            })
            .to_string(),
        }
    }

    fn below(&self, upstream: &str, path: &str, query: Option<&str>) -> Option<String> {
        let rest = self.rest(path)?;
        let base = url::Url::parse(upstream).ok()?;
        let mut expected = format!("{}{rest}", base.path().trim_end_matches('/'));
        if expected.is_empty() {
            expected.push('/');
        }
        let mut url = format!("{}{rest}", upstream.trim_end_matches('/'));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        let parsed = url::Url::parse(&url).ok()?;
        (parsed.origin() == base.origin() && parsed.path() == expected).then_some(url)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1) as u64)
    }

    /// The price as people read it.
    pub fn price_label(&self) -> String {
        match self.pricing() {
            Pricing::Fixed => format!("{} credits per call", self.price),
            Pricing::Metered if self.rate_per_1k > 0 => format!(
                "metered: {} credits per 1,000 tokens, at most {} per call",
                self.rate_per_1k, self.price
            ),
            Pricing::Metered => format!(
                "metered by the upstream's Tollgate-Cost, at most {} per call",
                self.price
            ),
        }
    }
}

const COLUMNS: &str = "id, path_prefix, upstream_url, endpoint, scope, pricing, price, rate_per_1k, plans, timeout_ms, active, description, created_at, test_upstream_url, test_example";

/// The active routes, longest prefix first, shared by every request.
#[derive(Clone, Default)]
pub struct RouteTable(Arc<RwLock<Arc<Vec<Route>>>>);

impl RouteTable {
    pub async fn reload(&self, db: &PgPool) -> Result<usize, sqlx::Error> {
        let routes: Vec<Route> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM routes WHERE active ORDER BY length(path_prefix) DESC"
        ))
        .fetch_all(db)
        .await?;
        let n = routes.len();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
        Ok(n)
    }

    fn snapshot(&self) -> Arc<Vec<Route>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The route serving `path`: the longest matching prefix.
    pub fn find(&self, path: &str) -> Option<Route> {
        self.snapshot()
            .iter()
            .find(|r| r.rest(path).is_some())
            .cloned()
    }

    pub fn all(&self) -> Arc<Vec<Route>> {
        self.snapshot()
    }
}

/// Keeps `table` current: reloads on every notification, and every minute in
/// case a notification was missed while the listening connection was down.
pub async fn follow(db: PgPool, table: RouteTable, shutdown: crate::shutdown::Shutdown) {
    while !shutdown.is_set() {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(mut l) => match l.listen(CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for route changes");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for route changes");
                None
            }
        };
        // Changes made while the listener was down are picked up here.
        if let Err(e) = table.reload(&db).await {
            tracing::warn!(error = %e, "cannot load the provider routes");
        }
        loop {
            let got = match listener.as_mut() {
                // `try_recv` reports a lost connection (`None`) instead of
                // reconnecting quietly, so changes made meanwhile are reloaded.
                Some(l) => tokio::select! {
                    n = l.try_recv() => matches!(n, Ok(Some(_))),
                    _ = tokio::time::sleep(Duration::from_secs(60)) => true,
                    _ = shutdown.wait() => return,
                },
                None => {
                    shutdown.sleep(Duration::from_secs(5)).await;
                    false
                }
            };
            if !got {
                // Reconnect, then reload.
                break;
            }
            if let Err(e) = table.reload(&db).await {
                tracing::warn!(error = %e, "cannot reload the provider routes");
            }
        }
    }
}

/// A route as typed into the admin form or the command line.
#[derive(Clone, Debug, Default)]
pub struct NewRoute {
    pub path_prefix: String,
    pub upstream_url: String,
    pub endpoint: String,
    pub scope: String,
    pub pricing: String,
    pub price: String,
    pub rate_per_1k: String,
    pub plans: Vec<String>,
    pub timeout_ms: String,
    pub description: String,
    /// Optional: where test keys' calls go.
    pub test_upstream_url: String,
    /// Optional JSON: what test keys get when there is no test upstream.
    pub test_example: String,
}

/// The longest example answer a route keeps.
pub const MAX_EXAMPLE_BYTES: usize = 16 * 1024;

fn upstream_ok(upstream: &str) -> bool {
    matches!(url::Url::parse(upstream), Ok(u)
        if matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none())
}

fn is_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn number<T>(
    errors: &mut Vec<(&'static str, String)>,
    field: &'static str,
    value: &str,
    default: Option<T>,
    range: std::ops::RangeInclusive<T>,
    message: &str,
) -> T
where
    T: std::str::FromStr + PartialOrd + Copy + Default,
{
    match (value.trim(), default) {
        ("", Some(d)) => d,
        (v, _) => match v.parse::<T>() {
            Ok(n) if range.contains(&n) => n,
            _ => {
                errors.push((field, message.to_string()));
                T::default()
            }
        },
    }
}

/// Checks a new route and adds it. Every problem is reported against its field.
/// `actor`: the admin who adds it (`None` from the command line).
pub async fn create(
    db: &PgPool,
    actor: Option<Uuid>,
    input: NewRoute,
    now: OffsetDateTime,
) -> Result<Route, RouteError> {
    save(db, actor, None, input, now).await
}

/// Checks a route's new settings and applies them; calls in flight finish on
/// the old ones, the next calls use the new.
pub async fn update(
    db: &PgPool,
    actor: Option<Uuid>,
    id: Uuid,
    input: NewRoute,
    now: OffsetDateTime,
) -> Result<Route, RouteError> {
    save(db, actor, Some(id), input, now).await
}

async fn save(
    db: &PgPool,
    actor: Option<Uuid>,
    id: Option<Uuid>,
    input: NewRoute,
    now: OffsetDateTime,
) -> Result<Route, RouteError> {
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let prefix = input.path_prefix.trim().trim_end_matches('/').to_string();
    let prefix_ok =
        prefix.starts_with("/v1/") && prefix.len() > 4 && prefix[4..].split('/').all(is_name);
    if !prefix_ok {
        errors.push((
            "path_prefix",
            "Use /v1/ followed by lowercase segments of letters, digits, - or _, such as /v1/chat."
                .into(),
        ));
    } else if let Some(e) = catalogue::ENDPOINTS.iter().find(|e| {
        e.path == prefix
            || e.path.starts_with(&format!("{prefix}/"))
            || prefix.starts_with(&format!("{}/", e.path))
    }) {
        errors.push((
            "path_prefix",
            format!(
                "{} is a built-in endpoint; choose a prefix that does not overlap it.",
                e.path
            ),
        ));
    }
    let upstream = input.upstream_url.trim().to_string();
    if !upstream_ok(&upstream) {
        errors.push((
            "upstream_url",
            "Give an http:// or https:// URL without a query, such as https://api.internal/v2."
                .into(),
        ));
    }
    let test_upstream = Some(input.test_upstream_url.trim().to_string()).filter(|u| !u.is_empty());
    if let Some(t) = &test_upstream {
        if !upstream_ok(t) {
            errors.push((
                "test_upstream_url",
                "Give an http:// or https:// URL without a query, or leave it empty for the example answer.".into(),
            ));
        } else if nested(t, &upstream) {
            errors.push(("test_upstream_url", "Test keys must not reach the live upstream: give another URL.".into()));
        }
    }
    let test_example = Some(input.test_example.trim().to_string()).filter(|e| !e.is_empty());
    if let Some(e) = &test_example {
        if e.len() > MAX_EXAMPLE_BYTES || serde_json::from_str::<serde_json::Value>(e).is_err() {
            errors.push(("test_example", format!("Give a JSON document of at most {} KB.", MAX_EXAMPLE_BYTES / 1024)));
        }
    }
    let endpoint = input.endpoint.trim().to_string();
    if !is_name(&endpoint) {
        errors.push((
            "endpoint",
            "Use up to 40 lowercase letters, digits, - or _.".into(),
        ));
    } else if catalogue::ENDPOINTS.iter().any(|e| e.id == endpoint) {
        errors.push((
            "endpoint",
            format!("\"{endpoint}\" is a built-in endpoint's name."),
        ));
    }
    let scope = input.scope.trim().to_string();
    if !is_name(&scope) {
        errors.push((
            "scope",
            "Use up to 40 lowercase letters, digits, - or _.".into(),
        ));
    }
    let pricing = Pricing::parse(input.pricing.trim()).unwrap_or_else(|| {
        errors.push(("pricing", "Choose fixed or metered.".into()));
        Pricing::Fixed
    });
    let price_message = format!("A whole number of credits from 0 to {MAX_PRICE}.");
    let price: i64 = number(
        &mut errors,
        "price",
        &input.price,
        None,
        0..=MAX_PRICE,
        &price_message,
    );
    let rate_per_1k: i64 = number(
        &mut errors,
        "rate_per_1k",
        &input.rate_per_1k,
        Some(0),
        0..=MAX_PRICE,
        &price_message,
    );
    let timeout_ms: i32 = number(
        &mut errors,
        "timeout_ms",
        &input.timeout_ms,
        Some(DEFAULT_TIMEOUT_MS),
        100..=MAX_TIMEOUT_MS,
        "Between 100 and 300000 milliseconds.",
    );
    let mut plans: Vec<String> = input
        .plans
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    plans.sort();
    plans.dedup();
    let known: Vec<String> = sqlx::query_scalar("SELECT code FROM plans")
        .fetch_all(db)
        .await?;
    if let Some(bad) = plans.iter().find(|p| !known.contains(p)) {
        errors.push(("plans", format!("There is no plan \"{bad}\".")));
    }
    let description = input.description.trim().to_string();
    if description.chars().count() > 500 {
        errors.push(("description", "Use at most 500 characters.".into()));
    }
    if !errors.is_empty() {
        return Err(RouteError::Invalid(errors));
    }
    let taken: Option<(String, String)> = sqlx::query_as(
        "SELECT path_prefix, endpoint FROM routes
          WHERE (path_prefix = $1 OR endpoint = $2) AND id IS DISTINCT FROM $3 LIMIT 1",
    )
    .bind(&prefix)
    .bind(&endpoint)
    .bind(id)
    .fetch_optional(db)
    .await?;
    if let Some((p, _)) = taken {
        return Err(if p == prefix {
            RouteError::field("path_prefix", "Another route already uses this prefix.")
        } else {
            RouteError::field("endpoint", "Another route already uses this name.")
        });
    }
    // A route's key reaches everything below its upstream URL: another
    // route's upstream must not lie below it (nor it below another's), or
    // one route's callers reach the other's API at the first one's price.
    // Test upstreams count too: test keys spend a free sandbox, so no test
    // upstream may lie within (or contain) any route's live upstream.
    let others: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT path_prefix, upstream_url, test_upstream_url FROM routes WHERE id IS DISTINCT FROM $1 ORDER BY path_prefix",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    if let Some((other, _, _)) = others.iter().find(|(_, url, test)| {
        nested(&upstream, url)
            || test.as_deref().is_some_and(|t| nested(&upstream, t))
            || test_upstream.as_deref().is_some_and(|t| nested(t, url))
    }) {
        return Err(RouteError::field(
            "upstream_url",
            format!(
                "This upstream contains, or lies within, the upstream of the route {other} on the same host: callers of one route could reach the other. Use upstream paths that do not contain each other."
            ),
        ));
    }
    let mut tx = db.begin().await?;
    let sql = match id {
        None => format!(
            "INSERT INTO routes (id, path_prefix, upstream_url, endpoint, scope, pricing, price, rate_per_1k, plans, timeout_ms, description, created_at, updated_at, test_upstream_url, test_example)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14) RETURNING {COLUMNS}"
        ),
        Some(_) => format!(
            "UPDATE routes SET path_prefix = $2, upstream_url = $3, endpoint = $4, scope = $5, pricing = $6,
                    price = $7, rate_per_1k = $8, plans = $9, timeout_ms = $10, description = $11, updated_at = $12,
                    test_upstream_url = $13, test_example = $14
              WHERE id = $1 RETURNING {COLUMNS}"
        ),
    };
    let route: Option<Route> = sqlx::query_as(&sql)
        .bind(id.unwrap_or_else(Uuid::now_v7))
        .bind(&prefix)
        .bind(&upstream)
        .bind(&endpoint)
        .bind(&scope)
        .bind(pricing)
        .bind(price)
        .bind(rate_per_1k)
        .bind(&plans)
        .bind(timeout_ms)
        .bind(&description)
        .bind(now)
        .bind(&test_upstream)
        .bind(&test_example)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| match &e {
            // Another admin added the same prefix or name a moment ago.
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                if d.constraint().is_some_and(|c| c.contains("endpoint")) {
                    RouteError::field("endpoint", "Another route already uses this name.")
                } else {
                    RouteError::field("path_prefix", "Another route already uses this prefix.")
                }
            }
            _ => RouteError::Db(e),
        })?;
    let Some(route) = route else {
        return Err(RouteError::NotFound);
    };
    let details = serde_json::json!({
        "route_id": route.id, "path_prefix": route.path_prefix, "endpoint": route.endpoint,
        "scope": route.scope, "pricing": route.pricing.as_str(), "price": route.price,
        "rate_per_1k": route.rate_per_1k, "plans": route.plans, "timeout_ms": route.timeout_ms,
        "test_upstream_url": route.test_upstream_url,
    });
    let action = if id.is_some() {
        crate::audit::Action::RouteUpdated
    } else {
        crate::audit::Action::RouteCreated
    };
    crate::audit::record(&mut tx, now, actor, None, action, details).await?;
    tx.commit().await?;
    Ok(route)
}

pub async fn list(db: &PgPool) -> Result<Vec<Route>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM routes ORDER BY active DESC, path_prefix"
    ))
    .fetch_all(db)
    .await
}

/// Turns a route on or off; calls to a route that is off answer 404.
pub async fn set_active(
    db: &PgPool,
    actor: Option<Uuid>,
    id: Uuid,
    active: bool,
    now: OffsetDateTime,
) -> Result<(), RouteError> {
    let mut tx = db.begin().await?;
    let prefix: Option<String> = sqlx::query_scalar(
        "UPDATE routes SET active = $2, updated_at = $3 WHERE id = $1 RETURNING path_prefix",
    )
    .bind(id)
    .bind(active)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(prefix) = prefix else {
        return Err(RouteError::NotFound);
    };
    let action = if active {
        crate::audit::Action::RouteEnabled
    } else {
        crate::audit::Action::RouteDisabled
    };
    let details = serde_json::json!({"route_id": id, "path_prefix": prefix});
    crate::audit::record(&mut tx, now, actor, None, action, details).await?;
    tx.commit().await?;
    Ok(())
}

/// Scopes that keys can hold: the built-in ones and those of active routes.
pub fn scopes(table: &RouteTable) -> Vec<(String, String)> {
    let mut scopes: Vec<(String, String)> = crate::api_keys::SCOPES
        .iter()
        .map(|(s, w)| (s.to_string(), w.to_string()))
        .collect();
    for r in table.all().iter() {
        match scopes.iter_mut().find(|(s, _)| *s == r.scope) {
            Some((_, what)) => what.push_str(&format!(", {}", r.path_prefix)),
            None => scopes.push((r.scope.clone(), r.path_prefix.clone())),
        }
    }
    scopes
}

/// Whether one upstream URL lies within the other (or they are the same):
/// the same origin, and one's path segments begin the other's.
pub fn nested(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(a.trim()), url::Url::parse(b.trim())) else {
        return false;
    };
    // The same origin, a host's trailing dot aside (`api.internal.` is
    // `api.internal`).
    let origin = |u: &url::Url| (u.scheme().to_string(), u.host_str().map(|h| h.trim_end_matches('.').to_string()), u.port_or_known_default());
    if origin(&a) != origin(&b) {
        return false;
    }
    let segments = |u: &url::Url| -> Vec<String> {
        u.path().split('/').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect()
    };
    let (a, b) = (segments(&a), segments(&b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn route(prefix: &str, upstream: &str) -> Route {
        Route {
            id: Uuid::nil(),
            path_prefix: prefix.into(),
            upstream_url: upstream.into(),
            endpoint: "chat".into(),
            scope: "chat".into(),
            pricing: Pricing::Fixed,
            price: 1,
            rate_per_1k: 0,
            plans: vec![],
            timeout_ms: 1000,
            active: true,
            description: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            test_upstream_url: None,
            test_example: None,
        }
    }

    #[test]
    fn upstreams_within_each_other_are_nested() {
        assert!(nested("http://api.internal/v2", "http://api.internal/v2/admin"));
        assert!(nested("http://api.internal/v2/admin/", "http://api.internal/v2"));
        assert!(nested("http://api.internal", "http://api.internal/anything"));
        assert!(nested("http://API.internal:80/v2", "http://api.internal/v2"));
        assert!(nested("http://api.internal./v2", "http://api.internal/v2/x"));
        assert!(!nested("http://api.internal/v2", "http://api.internal/v20"));
        assert!(!nested("http://api.internal/v2", "http://api.internal:8080/v2/admin"));
        assert!(!nested("http://api.internal/v2", "https://api.internal/v2/admin"));
        assert!(!nested("http://a.internal/v2", "http://b.internal/v2"));
    }

    #[test]
    fn upstream_urls_never_leave_the_route() {
        let r = route("/v1/cheap", "http://up:9000/api/cheap");
        for path in [
            "/v1/cheap/..\\pricey\\run",
            "/v1/cheap/..\\..\\admin",
            "/v1/cheap/%2e%2e/pricey",
            "/v1/cheap/%2E%2E/pricey",
            "/v1/cheap/../pricey",
            "/v1/cheap/./x",
            "/v1/cheap/.%2e/pricey",
            "/v1/cheap/\\x",
        ] {
            assert_eq!(r.upstream_for(path, None), None, "{path}");
        }
        let root = route("/v1/any", "http://up:9000");
        assert_eq!(
            root.upstream_for("/v1/any/x", None).as_deref(),
            Some("http://up:9000/x")
        );
        assert_eq!(
            root.upstream_for("/v1/any", None).as_deref(),
            Some("http://up:9000")
        );
        assert_eq!(root.upstream_for("/v1/any/..\\y", None), None);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let r = route("/v1/chat", "http://up:9000/api/");
        assert_eq!(r.rest("/v1/chat"), Some(""));
        assert_eq!(r.rest("/v1/chat/completions"), Some("/completions"));
        assert_eq!(r.rest("/v1/chatter"), None);
        assert_eq!(
            r.upstream_for("/v1/chat/completions", Some("stream=1"))
                .as_deref(),
            Some("http://up:9000/api/completions?stream=1")
        );
        assert_eq!(
            r.upstream_for("/v1/chat", None).as_deref(),
            Some("http://up:9000/api")
        );
    }
}
