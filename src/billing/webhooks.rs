//! The processor's webhooks: signatures (`Tollgate-Signature: t=<unix>,
//! v1=<hex HMAC-SHA256 of "t.body">`, like Stripe's), checked against the
//! wall clock with a 300 s tolerance and compared in constant time; and the
//! endpoint, which applies each event once (`webhook_events` keeps every id
//! applied) whatever order events arrive in.

use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;

pub const SIGNATURE_HEADER: &str = "tollgate-signature";
/// How old (or how far ahead) a signature's timestamp may be.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, t: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header for `body` sent at unix time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` for `body` at unix time `now`. Any `v1` may match (a
/// processor rolling its secret sends two).
pub fn verify(secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => tags.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    if tags.iter().any(|tag| mac(secret, t, body).verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A processor event, as far as billing reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: ChargeObject,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChargeObject {
    pub id: String,
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/sandbox", post(sandbox))
        .layer(DefaultBodyLimit::max(64 * 1024))
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], serde_json::json!({"message": message}).to_string()).into_response()
}

async fn sandbox(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let wall = OffsetDateTime::now_utc().unix_timestamp();
    if let Err(e) = verify(&state.config.webhook_secret.0, header, &body, wall) {
        tracing::warn!(reason = %e, "webhook refused");
        return answer(StatusCode::BAD_REQUEST, "signature refused");
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "not an event"),
    };
    match super::payments::apply_event(&state, "sandbox", &event, state.clock.now()).await {
        Ok(applied) => answer(StatusCode::OK, applied.as_str()),
        Err(super::payments::EventError::UnknownCharge) => {
            // Perhaps ahead of its charge's record: the processor retries.
            answer(StatusCode::CONFLICT, "unknown charge; retry later")
        }
        Err(super::payments::EventError::Mismatch) => answer(StatusCode::UNPROCESSABLE_ENTITY, "event does not match its charge"),
        Err(super::payments::EventError::Db(e)) => {
            tracing::error!(error = %e, event = %event.id, "webhook could not be applied");
            answer(StatusCode::SERVICE_UNAVAILABLE, "retry later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let h = sign("s3cret", 1_000_000, b"{\"a\":1}");
        assert_eq!(verify("s3cret", Some(&h), b"{\"a\":1}", 1_000_100), Ok(()));
        assert_eq!(verify("s3cret", Some(&h), b"{\"a\":2}", 1_000_100), Err(SignatureError::Mismatch));
        assert_eq!(verify("other", Some(&h), b"{\"a\":1}", 1_000_100), Err(SignatureError::Mismatch));
        assert_eq!(verify("s3cret", Some(&h), b"{\"a\":1}", 1_000_301), Err(SignatureError::Stale));
        assert_eq!(verify("s3cret", Some(&h), b"{\"a\":1}", 999_699), Err(SignatureError::Stale));
        assert_eq!(verify("s3cret", None, b"", 0), Err(SignatureError::Missing));
        assert_eq!(verify("s3cret", Some("t=1,v1=zz"), b"", 1), Err(SignatureError::Malformed));
        assert_eq!(verify("s3cret", Some("v1=00"), b"", 1), Err(SignatureError::Malformed));
    }

    #[test]
    fn a_second_signature_may_match() {
        let good = sign("new", 5, b"x");
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=5,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify("new", Some(&header), b"x", 5), Ok(()));
    }
}
