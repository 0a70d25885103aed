//! HTTP plumbing shared by every route: request ids, the anti-forgery origin
//! guard, the client address, and the health endpoints.

pub mod guard;
pub mod health;
pub mod request_id;

use axum::extract::ConnectInfo;
use http::request::Parts;
use std::net::SocketAddr;

/// The client's address: the first `X-Forwarded-For` entry when the proxy is
/// trusted, else the TCP peer.
pub fn client_ip(parts: &Parts, trust_proxy: bool) -> String {
    if trust_proxy {
        if let Some(first) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            let ip = first.trim();
            if !ip.is_empty() {
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
