//! The built site's files (`LEPTOS_SITE_ROOT`): served precompressed when
//! the browser takes it (`.br`, then `.gz`, written by the build beside each
//! file), and cached by what their names promise. A file whose name carries
//! its content's digest (`/pkg/tollgate.<digest>.js`, `.wasm`) never changes:
//! it is cached for a year, immutable. Every other file is revalidated on
//! each use (`no-cache`, with `Last-Modified`). Pages are not files: they
//! never pass here and stay uncached.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::path::Path;
use tower_http::services::ServeDir;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const REVALIDATE: &str = "no-cache";

/// The site's files; what is not there goes to `not_found` (any method).
pub fn service<F>(site_root: &str, not_found: F) -> ServeDir<F> {
    ServeDir::new(site_root)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(false)
        .call_fallback_on_method_not_allowed(true)
        .fallback(not_found)
}

/// Whether `path` names a file by its content's digest: a last segment
/// `<name>.<16 or more hex digits>.<extension>`.
pub fn is_digest_named(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    let mut parts = file.rsplitn(3, '.');
    let (Some(_ext), Some(digest), Some(stem)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !stem.is_empty() && digest.len() >= 16 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Sets `Cache-Control` on the files this service answers with (not on the
/// not-found page, which has its own).
pub async fn cache_headers(req: Request, next: Next) -> Response {
    let immutable = is_digest_named(req.uri().path());
    let mut res = next.run(req).await;
    let file = res.status().is_success() || res.status() == axum::http::StatusCode::NOT_MODIFIED;
    let is_page = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if file && !is_page {
        let policy = if immutable { IMMUTABLE } else { REVALIDATE };
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        res.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    res
}

/// The digest-named script and wasm the build wrote, if it wrote them
/// (`hash.txt` in the site root, as Leptos reads it); a site built by
/// `cargo leptos watch` has none, and its plain names are used.
pub fn hash_file(site_root: &str) -> Option<String> {
    let path = Path::new(site_root).join("hash.txt");
    if !path.is_file() {
        return None;
    }
    let absolute = std::env::current_dir().ok()?.join(path);
    absolute.to_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digest_names_are_immutable() {
        assert!(is_digest_named("/pkg/tollgate.0123456789abcdef.js"));
        assert!(is_digest_named("/pkg/tollgate.0123456789abcdef0123.wasm"));
        for plain in ["/pkg/tollgate.js", "/pkg/tollgate.css", "/docs.js", "/pkg/tollgate.0123.js", "/pkg/.0123456789abcdef.js", "/pkg/tollgate.0123456789abcdeg.js", "/"] {
            assert!(!is_digest_named(plain), "{plain}");
        }
    }
}
