//! The origin guard: a state-changing request from another site is refused
//! before it reaches a handler. Together with the per-session token every
//! form carries (checked in `app::server_fns::form`) and `SameSite=Lax` cookies, it
//! makes the portal's forms safe against cross-site request forgery.

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    // Browsers send Sec-Fetch-Site on every request; only a cross-site one is refused.
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return refuse("cross-site request");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let public = state.config.public_url.origin().ascii_serialization();
        let same_host = origin
            .split_once("://")
            .map(|(_, rest)| rest == host)
            .unwrap_or(false);
        if origin != public && !same_host {
            return refuse("origin mismatch");
        }
    }
    next.run(req).await
}

fn refuse(why: &str) -> Response {
    tracing::warn!(reason = why, "refused a cross-site form post");
    (
        StatusCode::FORBIDDEN,
        "This form was sent from another site, so it was refused. Go back to the portal and try again.",
    )
        .into_response()
}
