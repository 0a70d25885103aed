//! Request ids: every request gets `req_<uuid v7>` (or keeps a well-formed
//! incoming `Request-Id`), the response echoes it in `Request-Id`, and the
//! tracing span of the request carries it, so every log line has it.

use axum::http::{HeaderName, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

pub static HEADER: HeaderName = HeaderName::from_static("request-id");

#[derive(Clone, Copy, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = format!("req_{}", uuid::Uuid::now_v7().simple());
        Some(RequestId::new(id.parse().expect("ascii header value")))
    }
}

/// The id of the request, for error messages the user can quote.
pub fn of(parts: &http::request::Parts) -> String {
    parts
        .extensions
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("unknown")
        .to_string()
}

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request this task serves, where [`scope`] set it (portal
/// requests): the audit log records it without every function passing it.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.clone()).ok()
}

/// Middleware: runs the rest of the request with its id in [`current`].
pub async fn scope(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_string);
    match id {
        Some(id) => CURRENT.scope(id, next.run(req)).await,
        None => next.run(req).await,
    }
}
