//! Processors' webhooks: signatures (`t=<unix>,v1=<hex HMAC-SHA256 of
//! "t.body">`, Stripe's scheme, in `Stripe-Signature` from Stripe and
//! `Tollgate-Signature` from the sandbox), checked against the wall clock
//! with a 300 s tolerance and compared in constant time, and the events they
//! carry in billing's terms ([`Event`]). The endpoint is the HTTP layer's
//! (`src/http/webhooks.rs`); it applies each event once
//! (`payments::apply_event`; `webhook_events` keeps every id applied)
//! whatever order events arrive in.

use hmac::{Hmac, Mac};
use sha2::Sha256;

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

/// The longest signature header read at all: a timestamp and a handful of
/// `v1` values. A longer one is refused before it is parsed.
pub const MAX_HEADER_LEN: usize = 512;
/// How many `v1` values are compared (a processor rolling its secret sends
/// two).
pub const MAX_TAGS: usize = 4;

/// Checks `header` for `body` at unix time `now`. Any `v1` may match. The
/// work is bounded whatever the header holds: an oversized header is
/// refused unparsed, each `v1` must be exactly 64 hex digits (at most
/// `MAX_TAGS` of them), and the MAC over the body is computed once.
pub fn verify(secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut t = None;
    let mut tags: Vec<[u8; 32]> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                if t.is_some() {
                    return Err(SignatureError::Malformed);
                }
                t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", v)) => {
                let mut tag = [0u8; 32];
                if v.len() != 64 || tags.len() == MAX_TAGS || hex::decode_to_slice(v, &mut tag).is_err() {
                    return Err(SignatureError::Malformed);
                }
                tags.push(tag);
            }
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body).finalize().into_bytes();
    // Constant time: every tag is compared in full, whichever matches.
    let mut matched = subtle::Choice::from(0u8);
    for tag in &tags {
        matched |= subtle::ConstantTimeEq::ct_eq(expected.as_slice(), tag.as_slice());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

crate::text_enum! {
    /// The kinds of event the sandbox processor sends.
    pub enum EventKind {
        ChargeSucceeded = "charge.succeeded",
        ChargeFailed = "charge.failed",
    }
}

/// A processor's event on the wire, as both processors send it: an id, a
/// type and the object it is about (`object` is each processor's own).
#[derive(Debug, serde::Deserialize)]
pub struct Envelope<T> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EnvelopeData<T>,
}

#[derive(Debug, serde::Deserialize)]
pub struct EnvelopeData<T> {
    pub object: T,
}

/// A processor's event in billing's terms: each processor reads its own
/// wire format into this ([`super::processor::Processor::read_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The processor's id of the event: applied once.
    pub id: String,
    /// Its type, as the processor names it (kept in `webhook_events`).
    pub kind: String,
    pub body: EventBody,
}

/// What an event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// A charge's outcome.
    Charge(ChargeEvent),
    /// A refund's outcome.
    Refund(RefundEvent),
    /// A saved card's new details (a reissued card's expiry, say).
    CardUpdated(CardEvent),
    /// A customer disputed a payment with their bank.
    Dispute(DisputeEvent),
    /// Nothing billing acts on.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeEvent {
    /// The processor's reference of the payment.
    pub reference: String,
    /// The charge's idempotency key, as Tollgate sent it.
    pub idempotency_key: String,
    pub amount: i64,
    /// Upper case, as Tollgate keeps it.
    pub currency: String,
    pub outcome: ChargeOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded,
    Failed(super::processor::Refused),
    /// The customer must confirm it (3-D Secure).
    ActionRequired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundEvent {
    pub reference: String,
    /// The refund's idempotency key, when Tollgate made it.
    pub idempotency_key: Option<String>,
    pub state: super::processor::RefundState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardEvent {
    pub reference: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeEvent {
    pub reference: String,
    /// The disputed payment's reference.
    pub payment: String,
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    pub status: String,
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

    #[test]
    fn the_work_is_bounded_whatever_the_header_holds() {
        let good = sign("k", 5, b"x");
        let v1 = good.split_once(",v1=").unwrap().1.to_string();
        // Empty, short, long or non-hex values are malformed, not compared.
        for bad in ["t=5,v1=", "t=5,v1=,v1=", "t=5,v1=00", &format!("t=5,v1={v1}0"), &format!("t=5,v1={}", "zz".repeat(32))] {
            assert_eq!(verify("k", Some(bad), b"x", 5), Err(SignatureError::Malformed), "{bad}");
        }
        // A handful of values at most, and a short header.
        let five = format!("t=5{}", format!(",v1={v1}").repeat(MAX_TAGS + 1));
        assert_eq!(verify("k", Some(&five), b"x", 5), Err(SignatureError::Malformed));
        let four = format!("t=5{}", format!(",v1={v1}").repeat(MAX_TAGS));
        assert_eq!(verify("k", Some(&four), b"x", 5), Ok(()));
        let long = format!("t=5,v1={v1},{}", "x=1,".repeat(MAX_HEADER_LEN));
        assert_eq!(verify("k", Some(&long), b"x", 5), Err(SignatureError::Malformed));
        // Two timestamps are one too many.
        assert_eq!(verify("k", Some(&format!("t=5,t=6,v1={v1}")), b"x", 5), Err(SignatureError::Malformed));
        // Extreme timestamps are stale, never an overflow.
        for t in [i64::MIN, i64::MAX] {
            let h = sign("k", t, b"x");
            assert_eq!(verify("k", Some(&h), b"x", 5), Err(SignatureError::Stale));
            assert_eq!(verify("k", Some(&sign("k", 5, b"x")), b"x", t), Err(SignatureError::Stale));
        }
    }
}
