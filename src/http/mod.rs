//! HTTP plumbing shared by every route: request ids, the anti-forgery origin
//! guard, the client address, and the health endpoints.

pub mod guard;
pub mod health;
pub mod request_id;
pub mod security;

use axum::extract::ConnectInfo;
use http::request::Parts;
use std::net::SocketAddr;

/// The client's address. Behind `trusted_proxies` proxies, each of which
/// appends the address it got the request from to `X-Forwarded-For`, it is
/// the `trusted_proxies`-th entry from the right: whatever stands left of it
/// came from the client, who can write anything there. Without proxies, or
/// when the header is missing, it is the TCP peer.
pub fn client_ip(parts: &Parts, trusted_proxies: usize) -> String {
    if trusted_proxies > 0 {
        // Several X-Forwarded-For fields read as one list, in order.
        let entries: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !entries.is_empty() {
            // Fewer entries than proxies: the request skipped one of them;
            // the left-most entry is the nearest to a client we can name.
            let i = entries.len().saturating_sub(trusted_proxies);
            let ip = entries[i];
            if ip.parse::<std::net::IpAddr>().is_ok() {
                return ip.to_string();
            }
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
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
    use super::{client_ip, loggable_path};

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
        let spoofed = parts(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(client_ip(&spoofed, 1), "203.0.113.7");
        let two_hops = parts(&["6.6.6.6, 203.0.113.7, 10.0.0.2"]);
        assert_eq!(client_ip(&two_hops, 2), "203.0.113.7");
        let split = parts(&["6.6.6.6", "203.0.113.7"]);
        assert_eq!(client_ip(&split, 1), "203.0.113.7");
        assert_eq!(client_ip(&parts(&["203.0.113.7"]), 1), "203.0.113.7");
        // Not trusted, or not an address: the TCP peer (unknown here).
        assert_eq!(client_ip(&spoofed, 0), "unknown");
        assert_eq!(client_ip(&parts(&["1.1.1.1, not-an-ip"]), 1), "unknown");
    }
}
