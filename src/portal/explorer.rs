//! The explorer's sending end for "one of your keys": the portal keeps only
//! a hash of each key, so it cannot hand the secret to the browser. Instead
//! the browser posts the request here (same origin, the session's CSRF
//! token) naming the key by id; the key must belong to the caller's
//! organization and be usable; the call then runs through the gateway's own
//! pipeline with that key ([`crate::gateway::ActingKey`]), and its answer
//! (status, headers, body) goes back as it is. A key pasted by hand is sent
//! by the browser straight to `/v1` and never reaches this handler.

use super::Portal;

use crate::api_keys::Mode;
use crate::gateway::{catalogue, ActingKey};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new().route("/explorer/send", post(send))
}

#[derive(Deserialize)]
struct Send {
    csrf: String,
    key_id: String,
    method: String,
    path: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    simulate: Option<String>,
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], why.to_string()).into_response()
}

async fn send(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let backend = Portal::backend(state.clone());
    let Ok(caller) = backend.web.caller(&parts).await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
    };
    let Some(member) = caller.org.as_ref() else {
        return refuse(StatusCode::UNAUTHORIZED, "Sign in to send with one of your keys, or paste a key.");
    };
    let (Ok(org), Some(user)) = (Uuid::parse_str(&member.id), caller.user.as_ref().and_then(|u| Uuid::parse_str(&u.id).ok())) else {
        return refuse(StatusCode::UNAUTHORIZED, "Sign in to send with one of your keys, or paste a key.");
    };
    // Who may use the organization's keys: those who may manage them.
    if !super::domain_role(member.role).manages_keys() {
        return refuse(StatusCode::FORBIDDEN, "Your role cannot use the organization's keys; paste a key of your own.");
    }
    let Ok(bytes) = axum::body::to_bytes(body, crate::gateway::MAX_BODY + 64 * 1024).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "The request is too large.");
    };
    let Ok(send) = serde_json::from_slice::<Send>(&bytes) else {
        return refuse(StatusCode::BAD_REQUEST, "The explorer's request is malformed; reload the page.");
    };
    if !backend.web.csrf_matches(&parts, &send.csrf).await {
        return refuse(StatusCode::FORBIDDEN, "This page is out of date; reload it and send again.");
    }
    let Ok(method) = Method::from_bytes(send.method.as_bytes()) else {
        return refuse(StatusCode::BAD_REQUEST, "Unknown method.");
    };
    if !matches!(method, Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        || !send.path.starts_with("/v1/")
        || send.path.starts_with("//")
    {
        return refuse(StatusCode::BAD_REQUEST, "The explorer sends GET, POST, PUT, PATCH or DELETE to a path under /v1/.");
    }
    // The key, by id, in the caller's organization only (any other id, in
    // any spelling, is simply not found).
    let Ok(key_id) = Uuid::parse_str(send.key_id.trim()) else {
        return refuse(StatusCode::NOT_FOUND, "No such key in your organization.");
    };
    let key = match crate::api_keys::store::token_of(&state.db, key_id, org).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "explorer: key look-up failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
        }
    };
    let Some((hash, mode)) = key else {
        return refuse(StatusCode::NOT_FOUND, "No such key in your organization.");
    };
    let Some(mode) = Mode::parse(&mode) else {
        return refuse(StatusCode::NOT_FOUND, "No such key in your organization.");
    };
    let mut inner = Request::builder().method(method).uri(&send.path);
    if send.body.as_ref().is_some_and(|b| !b.is_empty()) {
        inner = inner.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(code) = send.simulate.as_ref().filter(|c| !c.is_empty()) {
        if catalogue::Code::parse(code).is_none() {
            return refuse(StatusCode::BAD_REQUEST, "Unknown code to simulate.");
        }
        inner = inner.header(crate::gateway::SIMULATE_HEADER, code.as_str());
    }
    let Ok(mut inner) = inner.body(Body::from(send.body.unwrap_or_default())) else {
        return refuse(StatusCode::BAD_REQUEST, "The path is not a valid URL path.");
    };
    // The same request id as the explorer's request, so the problem body
    // names the id the portal logged.
    if let Some(id) = parts.extensions.get::<tower_http::request_id::RequestId>() {
        inner.extensions_mut().insert(id.clone());
    }
    // The caller's address, as the gateway would see it on `/v1`.
    if let Some(info) = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        inner.extensions_mut().insert(*info);
    }
    if let Some(xff) = parts.headers.get("x-forwarded-for") {
        inner.headers_mut().insert("x-forwarded-for", xff.clone());
    }
    inner.extensions_mut().insert(ActingKey { hash, mode });
    let details = serde_json::json!({"key_id": key_id, "method": send.method, "path": send.path});
    let mut conn = match state.db.acquire().await {
        Ok(c) => c,
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment."),
    };
    if let Err(e) = crate::audit::record(&mut conn, state.clock.now(), Some(user), Some(org), crate::audit::Action::ApiKeyUsedInExplorer, details).await {
        tracing::error!(error = %e, "explorer: audit failed");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.");
    }
    drop(conn);
    let mut res = crate::gateway::call(state, inner).await;
    // A redirect from an upstream is shown, never followed: the browser
    // would send this request (its token, its key id) again, or elsewhere.
    if res.status().is_redirection() {
        if let Some(to) = res.headers_mut().remove(header::LOCATION) {
            res.headers_mut().insert("tollgate-redirect-location", to);
        }
    }
    res
}
