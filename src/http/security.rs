//! Security headers on every response: no framing (clickjacking), no MIME
//! sniffing, referrers kept on this site (paths can hold invitation tokens),
//! HSTS behind https, and a Content-Security-Policy.
//!
//! Portal pages get their policy from the page shell (`app::shell`), which
//! knows the nonce Leptos puts on the page's own inline scripts: scripts run
//! only from this origin or with that nonce, so injected inline script never
//! runs. Every other response gets [`FALLBACK_CSP`], which allows nothing to
//! load or frame it.

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of responses that are not portal pages (JSON, files, redirects).
pub const FALLBACK_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(FALLBACK_CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if state.config.public_url.scheme() == "https" {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}
