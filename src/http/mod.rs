//! HTTP plumbing shared by every route: request ids, the anti-forgery origin
//! guard, the client address, and the health endpoints.

pub mod assets;
pub mod guard;
pub mod health;
pub mod panic;
pub mod proxies;
pub mod request_id;
pub mod security;
pub mod webhooks;

use axum::extract::ConnectInfo;
use http::request::Parts;
use std::net::SocketAddr;

/// The client's address (`proxies::TrustedProxies` says how far
/// `X-Forwarded-For` is believed), or "unknown".
pub fn client_ip(parts: &Parts, trusted: &proxies::TrustedProxies) -> String {
    // Several X-Forwarded-For fields read as one list, in order.
    let entries: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match trusted.client(peer, &entries) {
        Some(ip) => ip.to_string(),
        // An entry that is no address: fall back on the TCP peer.
        None => peer.map(|p| p.to_string()).unwrap_or_else(|| "unknown".to_string()),
    }
}

/// Path segments that follow these carry a one-time token.
const TOKEN_PATHS: [&str; 1] = ["/invitations/"];

/// The path as logs may show it: one-time tokens in it are replaced (query
/// strings, where reset tokens travel, are never logged).
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in TOKEN_PATHS {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            return format!("{prefix}[token]{tail}").into();
        }
    }
    path.into()
}

#[cfg(test)]
mod tests {
    use super::{client_ip, loggable_path, proxies::TrustedProxies};

    #[test]
    fn tokens_in_paths_stay_out_of_logs() {
        assert_eq!(
            loggable_path("/invitations/AbC-123_x"),
            "/invitations/[token]"
        );
        assert_eq!(
            loggable_path("/invitations/AbC/y"),
            "/invitations/[token]/y"
        );
        assert_eq!(loggable_path("/account/keys"), "/account/keys");
    }

    fn parts(xff: &[&str]) -> http::request::Parts {
        let mut req = http::Request::builder().uri("/");
        for v in xff {
            req = req.header("x-forwarded-for", *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_address_the_trusted_proxy_appended_is_the_client() {
        let n = |n: usize| TrustedProxies::Count(n);
        let spoofed = parts(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(client_ip(&spoofed, &n(1)), "203.0.113.7");
        let two_hops = parts(&["6.6.6.6, 203.0.113.7, 10.0.0.2"]);
        assert_eq!(client_ip(&two_hops, &n(2)), "203.0.113.7");
        let split = parts(&["6.6.6.6", "203.0.113.7"]);
        assert_eq!(client_ip(&split, &n(1)), "203.0.113.7");
        assert_eq!(client_ip(&parts(&["203.0.113.7"]), &n(1)), "203.0.113.7");
        // Not trusted, or not an address: the TCP peer (unknown here).
        assert_eq!(client_ip(&spoofed, &n(0)), "unknown");
        assert_eq!(client_ip(&parts(&["1.1.1.1, not-an-ip"]), &n(1)), "unknown");
    }
}
