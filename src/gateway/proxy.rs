//! Forwarding a call to a provider route's upstream. Bodies stream both ways;
//! only a metered route's JSON answer without a `Tollgate-Cost` header is read
//! whole, because its cost is inside it (`usage.total_tokens`).
//!
//! The route's timeout bounds the wait for the upstream's response headers;
//! once the upstream has answered, its body streams for as long as it takes
//! (model outputs can stream for minutes).

use super::routes::{Pricing, Route};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use futures_util::StreamExt;
use std::time::Duration;

/// The response header in which an upstream reports a call's actual cost.
pub const COST_HEADER: &str = "tollgate-cost";
/// A metered JSON answer larger than this is not read for its usage; the
/// whole reservation is captured instead.
const MAX_METERED_JSON: usize = 8 * 1024 * 1024;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The one HTTP client every instance shares for its upstreams.
#[derive(Clone)]
pub struct Upstreams(reqwest::Client);

impl Default for Upstreams {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Redirects are the customer's to follow, not the gateway's.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("the upstream client builds with static settings");
        Upstreams(client)
    }
}

/// Who is calling, for the upstream to know (it never sees the key).
pub struct Caller<'a> {
    pub request_id: &'a str,
    pub org_id: String,
    pub key_id: String,
    pub mode: String,
    pub plan: String,
    /// The caller's address, for the upstream's own logs and limits.
    pub client_ip: String,
}

#[derive(Debug)]
pub enum Failure {
    /// No connection, a reset, or an unreadable answer.
    Failed(String),
    /// No response headers within the route's timeout.
    TimedOut,
}

/// Header names a message's `Connection` header lists: hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn forwardable(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    !HOP_BY_HOP.contains(&n) && !listed.iter().any(|l| l == n)
}

/// Sends the call upstream and waits for its response headers.
pub async fn forward(
    upstreams: &Upstreams,
    route: &Route,
    url: String,
    method: &axum::http::Method,
    headers: &HeaderMap,
    body: Body,
    caller: Caller<'_>,
) -> Result<reqwest::Response, Failure> {
    let mut out = HeaderMap::new();
    let listed = connection_listed(headers);
    for (name, value) in headers {
        let n = name.as_str();
        // The key, the portal's cookies and what only the gateway may say
        // (who is calling, from where) never come from the caller.
        let skip = !forwardable(name, &listed)
            || name == header::HOST
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || n.starts_with("tollgate-")
            || n.starts_with("x-forwarded-")
            || n == "forwarded"
            || n == "x-real-ip"
            // A metered answer is read for its usage: ask for it uncompressed.
            || (n == "accept-encoding" && route.pricing() == Pricing::Metered);
        if !skip {
            out.append(name.clone(), value.clone());
        }
    }
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    put("tollgate-request-id", caller.request_id);
    put("tollgate-organization", &caller.org_id);
    put("tollgate-key-id", &caller.key_id);
    put("tollgate-key-mode", &caller.mode);
    put("tollgate-plan", &caller.plan);
    put("x-forwarded-for", &caller.client_ip);
    if route.pricing() == Pricing::Metered {
        put("accept-encoding", "identity");
    }
    let request = upstreams
        .0
        .request(method.clone(), url)
        .headers(out)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let started = std::time::Instant::now();
    let sent = tokio::time::timeout(route.timeout(), request.send()).await;
    crate::metrics::get().upstream(&route.endpoint, started.elapsed());
    match sent {
        Err(_) => Err(Failure::TimedOut),
        Ok(Err(e)) if e.is_timeout() => Err(Failure::TimedOut),
        Ok(Err(e)) => Err(Failure::Failed(without_url(e))),
        Ok(Ok(res)) => Ok(res),
    }
}

/// Upstream URLs may hold internal host names; errors are logged without them.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut source = std::error::Error::source(&e);
    let mut cause = String::new();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    format!("{kind} error: {cause}")
}

/// The answer to send back, and what it cost.
pub struct Answer {
    pub status: axum::http::StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
    /// Credits to capture, never more than was reserved.
    pub cost: i64,
}

/// The cost a metered answer reports, if any.
fn reported_cost(route: &Route, headers: &HeaderMap, json: Option<&Bytes>) -> Option<i64> {
    if let Some(v) = headers.get(COST_HEADER) {
        return v
            .to_str()
            .ok()?
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0);
    }
    let value: serde_json::Value = serde_json::from_slice(json?).ok()?;
    let tokens = value.get("usage")?.get("total_tokens")?.as_i64()?;
    (tokens >= 0 && route.rate_per_1k > 0).then(|| {
        let units = tokens.saturating_mul(route.rate_per_1k);
        units / 1000 + i64::from(units % 1000 != 0)
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("application/json") || ct.contains("+json")
        })
}

/// A metered JSON answer: whole when it fits in `limit` bytes, or else what
/// was read so far followed by the rest of the stream.
enum Metered {
    Whole(Bytes),
    TooLong(Body),
}

async fn read_up_to(res: reqwest::Response, limit: usize) -> Result<Metered, Failure> {
    let mut stream = res.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::Failed(without_url(e)))?;
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            let head = futures_util::stream::once(async move { Ok(Bytes::from(buf)) });
            return Ok(Metered::TooLong(Body::from_stream(head.chain(stream))));
        }
    }
    Ok(Metered::Whole(Bytes::from(buf)))
}

/// The upstream response headers a customer receives: what describes the
/// representation, caching, and the API's own `x-…` headers. Everything else
/// is dropped, since the answer comes from the portal's origin: an upstream
/// must never set cookies there, clear the browser's data
/// (`Clear-Site-Data`), refresh or redirect the page (`Refresh`), preload or
/// link resources (`Link`), or change the page's security policies (CSP,
/// `X-Frame-Options`, CORS, HSTS, `Permissions-Policy`, …). The gateway's
/// own headers (`Request-Id`, `RateLimit*`, `Tollgate-*`) are the gateway's.
const PASSED_ON: [&str; 16] = [
    "content-type",
    "content-length",
    "content-encoding",
    "content-language",
    "content-disposition",
    "content-range",
    "accept-ranges",
    "cache-control",
    "etag",
    "last-modified",
    "expires",
    "age",
    "vary",
    "retry-after",
    "location",
    "date",
];

fn passes_on(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    if !forwardable(name, listed) {
        return false;
    }
    PASSED_ON.contains(&n) || (n.starts_with("x-") && !never_x(n))
}

/// `x-` headers that are browser policies or instructions to a proxy in
/// front of Tollgate, not an API's data.
const NEVER_X: [&str; 11] = [
    "x-frame-options",
    "x-content-type-options",
    "x-xss-protection",
    "x-dns-prefetch-control",
    "x-permitted-cross-domain-policies",
    "x-download-options",
    "x-forwarded-for",
    "x-sendfile",
    "x-lighttpd-send-file",
    "x-ua-compatible",
    "x-robots-tag",
];

fn never_x(n: &str) -> bool {
    NEVER_X.contains(&n) || n.starts_with("x-accel-") || n.ends_with("-csp") || n.starts_with("x-forwarded-")
}

/// An upstream's redirect, as the customer must follow it. The location is
/// resolved against the URL the gateway called (so relative, path-absolute
/// and scheme-relative `//host/…` locations are read as the upstream meant
/// them), then: below the route's upstream URL, it goes through the gateway;
/// elsewhere on the upstream's host (which may be internal), it is dropped;
/// on another host, it is passed on as an absolute URL.
fn relocated(
    route: &Route,
    public_prefix: &str,
    called: &url::Url,
    location: &HeaderValue,
) -> Option<HeaderValue> {
    let target = called.join(location.to_str().ok()?).ok()?;
    let base = url::Url::parse(route.upstream_url.trim_end_matches('/')).ok()?;
    if target.origin() == base.origin() {
        let base_path = base.path().trim_end_matches('/');
        let rest = target.path().strip_prefix(base_path)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let mut to = format!("{public_prefix}{rest}");
        if let Some(q) = target.query() {
            to.push('?');
            to.push_str(q);
        }
        return HeaderValue::from_str(&to).ok();
    }
    matches!(target.scheme(), "http" | "https")
        .then(|| HeaderValue::from_str(target.as_str()).ok())
        .flatten()
}

/// Turns the upstream's answer into the customer's, and prices it.
///
/// - 2xx/3xx: a fixed route costs its price; a metered route costs what the
///   upstream reports, capped at the reservation, or the whole reservation
///   when it reports nothing.
/// - 4xx: the call was refused upstream; it costs nothing unless a metered
///   upstream reports a cost.
/// - 5xx is not an answer: the caller turns it into `upstream_failed`.
///
/// `public_prefix`: the route's prefix as customers reach it (absolute URL).
pub async fn answer(
    route: &Route,
    public_prefix: &str,
    reserved: i64,
    res: reqwest::Response,
) -> Result<Answer, Failure> {
    let status = res.status();
    let mut headers = HeaderMap::new();
    let listed = connection_listed(res.headers());
    let called = res.url().clone();
    for (name, value) in res.headers() {
        if !passes_on(name, &listed) {
            continue;
        }
        if name == header::LOCATION {
            if let Some(v) = relocated(route, public_prefix, &called, value) {
                headers.append(header::LOCATION, v);
            }
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let refused = status.is_client_error();
    let whole = if refused { 0 } else { reserved };
    let (cost, body, res) = match route.pricing() {
        Pricing::Fixed => (whole, None, Some(res)),
        Pricing::Metered if res.headers().contains_key(COST_HEADER) => {
            let reported = reported_cost(route, res.headers(), None);
            (
                reported.unwrap_or(if refused { 0 } else { reserved }),
                None,
                Some(res),
            )
        }
        Pricing::Metered if is_json(res.headers()) && route.rate_per_1k > 0 => {
            let upstream_headers = res.headers().clone();
            let read = tokio::time::timeout(route.timeout(), read_up_to(res, MAX_METERED_JSON));
            match read.await.map_err(|_| Failure::TimedOut)?? {
                Metered::Whole(bytes) => {
                    let reported = reported_cost(route, &upstream_headers, Some(&bytes));
                    (reported.unwrap_or(whole), Some(Body::from(bytes)), None)
                }
                Metered::TooLong(body) => (whole, Some(body), None),
            }
        }
        Pricing::Metered => (whole, None, Some(res)),
    };
    let body = match (body, res) {
        (Some(body), _) => body,
        (None, Some(res)) => Body::from_stream(res.bytes_stream()),
        (None, None) => Body::empty(),
    };
    Ok(Answer {
        status,
        headers,
        body,
        cost: cost.clamp(0, reserved),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_below_the_route_or_leave_the_upstream_host() {
        let route = crate::gateway::routes::tests::route("/v1/up", "http://up:9000/api");
        let public = "https://portal.example/v1/up";
        let called = url::Url::parse("http://up:9000/api/echo/x").unwrap();
        let at = |l: &str| {
            relocated(&route, public, &called, &HeaderValue::from_str(l).unwrap())
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            at("http://up:9000/api/next?x=1").as_deref(),
            Some("https://portal.example/v1/up/next?x=1")
        );
        assert_eq!(
            at("/api/next").as_deref(),
            Some("https://portal.example/v1/up/next")
        );
        assert_eq!(
            at("next").as_deref(),
            Some("https://portal.example/v1/up/echo/next")
        );
        assert_eq!(
            at("//up:9000/api/y").as_deref(),
            Some("https://portal.example/v1/up/y")
        );
        // Elsewhere on the upstream's host: dropped, however it is written.
        for hidden in [
            "http://up:9000/internal/admin",
            "//up:9000/internal/admin",
            "/internal/admin",
            "../../internal",
            "/apix",
        ] {
            assert_eq!(at(hidden), None, "{hidden}");
        }
        // Another host: passed on, absolute.
        assert_eq!(
            at("//cdn.example/file").as_deref(),
            Some("http://cdn.example/file")
        );
        assert_eq!(at("javascript:alert(1)"), None);
    }

    #[test]
    fn token_usage_is_priced_per_thousand_rounded_up() {
        let route = Route {
            pricing: Pricing::Metered,
            price: 100,
            rate_per_1k: 3,
            ..crate::gateway::routes::tests::route("/v1/chat", "http://up")
        };
        let json = |t: i64| Bytes::from(format!(r#"{{"usage":{{"total_tokens":{t}}}}}"#));
        let none = HeaderMap::new();
        assert_eq!(reported_cost(&route, &none, Some(&json(1000))), Some(3));
        assert_eq!(reported_cost(&route, &none, Some(&json(1001))), Some(4));
        assert_eq!(reported_cost(&route, &none, Some(&json(0))), Some(0));
        assert_eq!(reported_cost(&route, &none, Some(&Bytes::from("{}"))), None);
        let mut h = HeaderMap::new();
        h.insert(COST_HEADER, HeaderValue::from_static("7"));
        assert_eq!(reported_cost(&route, &h, Some(&json(1000))), Some(7));
        h.insert(COST_HEADER, HeaderValue::from_static("-2"));
        assert_eq!(reported_cost(&route, &h, None), None);
    }
}
