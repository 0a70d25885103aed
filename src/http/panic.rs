//! A panic in a handler or a page render answers 500 with the request id
//! (a problem body for the API, a friendly page for a browser) instead of
//! dropping the connection; the panic is logged with the request id. A page
//! whose render does not finish within `page_timeout` (its data loading runs
//! on tasks of its own; one that panicked never finishes) answers the same
//! 500 rather than leave the browser waiting.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

use crate::state::AppState;

pub async fn catch(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = super::request_id::of(&parts);
    let path = parts.uri.path();
    let api = path.starts_with("/v1") || path.starts_with("/webhooks/");
    // Page renders only: API calls, form posts and the explorer's sends wait
    // for upstreams and processors on their own timeouts.
    let page = parts.method == axum::http::Method::GET
        && !api
        && !path.starts_with("/api/")
        && !path.starts_with("/explorer/send");
    let req = Request::from_parts(parts, body);
    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let outcome = if page {
        match tokio::time::timeout(state.config.page_timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!(request_id = %request_id, "a page did not finish rendering in time; answered 500");
                return internal_error(&request_id, &state.config.support_contact, false);
            }
        }
    } else {
        run.await
    };
    match outcome {
        Ok(res) => res,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(request_id = %request_id, panic = %what, "a handler panicked; answered 500");
            internal_error(&request_id, &state.config.support_contact, api)
        }
    }
}

/// The 500 answer: nothing of the panic itself reaches the client.
pub fn internal_error(request_id: &str, support: &str, api: bool) -> Response {
    let mut res = if api {
        let body = serde_json::json!({
            "type": "about:blank", "title": "Internal error", "status": 500,
            "detail": "Something went wrong on our side. Quote the request id to support.",
            "request_id": request_id, "support": support,
        });
        let mut res = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        res
    } else {
        let id = escape(request_id);
        let support = escape(support);
        let page = format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Something went wrong · Tollgate</title>\
             <link rel=\"stylesheet\" href=\"/pkg/tollgate.css\"></head>\
             <body><main class=\"container\"><section class=\"panel\">\
             <h1>Something went wrong</h1>\
             <p>This page failed on our side; nothing you typed was lost by it. \
             Try again in a moment, or <a href=\"/\">go to the start page</a>.</p>\
             <p>If it keeps happening, write to {support} and quote the request id \
             <code data-testid=\"request-id\">{id}</code>.</p>\
             </section></main></body></html>"
        );
        let mut res = (StatusCode::INTERNAL_SERVER_ERROR, page).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        res
    };
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
