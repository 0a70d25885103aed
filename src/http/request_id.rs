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
