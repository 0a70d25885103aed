//! The sandbox processor: a card processor in test mode, with no network
//! beyond this server. It accepts the test cards of the product (each with
//! its outcome), keeps its own records (`sandbox_*` tables: Tollgate's
//! billing never reads them), and reports every charge's outcome as a signed
//! webhook over HTTP to the webhook endpoint, like a real processor. An
//! event that could not be delivered is retried with backoff, by
//! [`Sandbox::deliver_due`] (a job), until it is.

use crate::billing::webhooks::{ChargeEvent, ChargeOutcome, Event, EventBody, EventKind};
use super::{
    Card, CardForm, ChargeRequest, ChargeState, Customer, EventRefused, Payment, Processor, ProcessorError, RefundRequest,
    RefundStarted, RefundState, Refused, SavedCard, Started,
};
use serde::Deserialize;
use crate::config::WebhookSecret;
use serde_json::json;
use sqlx::PgPool;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

/// The sandbox's name (its cards' and charges' `processor`).
pub const NAME: &str = "sandbox";

/// What a test card does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Succeeds,
    /// Saved, and every charge fails like this.
    Fails(&'static str, Option<&'static str>),
}

/// The test cards (product.md), by number.
const CARDS: &[(&str, &str)] = &[
    ("4242424242424242", "succeeds"),
    ("5555555555554444", "succeeds"),
    ("378282246310005", "succeeds"),
    ("4000000000000002", "card_declined:generic_decline"),
    ("4000000000009995", "card_declined:insufficient_funds"),
    ("4000000000000069", "expired_card"),
    ("4000000000000127", "incorrect_cvc"),
    ("4000000000000119", "processing_error"),
    ("4000000000000341", "card_declined:generic_decline"),
];

fn behaviour(stored: &str) -> Behaviour {
    match stored {
        "succeeds" => Behaviour::Succeeds,
        "card_declined:generic_decline" => Behaviour::Fails("card_declined", Some("generic_decline")),
        "card_declined:insufficient_funds" => Behaviour::Fails("card_declined", Some("insufficient_funds")),
        "expired_card" => Behaviour::Fails("expired_card", None),
        "incorrect_cvc" => Behaviour::Fails("incorrect_cvc", None),
        "processing_error" => Behaviour::Fails("processing_error", None),
        _ => Behaviour::Fails("card_declined", Some("generic_decline")),
    }
}

/// The object of the sandbox's events on the wire.
#[derive(Debug, Deserialize)]
struct WireObject {
    id: String,
    idempotency_key: String,
    amount: i64,
    currency: String,
    failure_code: Option<String>,
    decline_code: Option<String>,
}

type WireEvent = crate::billing::webhooks::Envelope<WireObject>;

/// The sandbox's event in billing's terms.
fn into_event(wire: WireEvent) -> Event {
    let o = wire.data.object;
    let body = match EventKind::parse(&wire.kind) {
        Some(kind) => EventBody::Charge(ChargeEvent {
            reference: o.id,
            idempotency_key: o.idempotency_key,
            amount: o.amount,
            currency: o.currency.trim().to_ascii_uppercase(),
            outcome: match kind {
                EventKind::ChargeSucceeded => ChargeOutcome::Succeeded,
                EventKind::ChargeFailed => ChargeOutcome::Failed(Refused {
                    code: o.failure_code.unwrap_or_else(|| "card_declined".into()),
                    decline_code: o.decline_code,
                }),
            },
        }),
        None => EventBody::Other,
    };
    Event { id: wire.id, kind: wire.kind, body }
}

pub struct Sandbox {
    me: Weak<Sandbox>,
    db: PgPool,
    secret: WebhookSecret,
    target: RwLock<Option<Url>>,
    http: reqwest::Client,
    /// While set, outcomes wait in `sandbox_events` undelivered (a charge
    /// stays pending), as when a processor's webhooks are late.
    held: std::sync::atomic::AtomicBool,
}

impl Sandbox {
    /// The sandbox's card form: turns a checked test card into a token to
    /// attach (what a processor's browser library does for a real card).
    /// The number stops here: only what the card shows is kept with the
    /// token.
    pub async fn tokenize(&self, card: &Card, now: OffsetDateTime) -> Result<String, ProcessorError> {
        let Some((_, stored)) = CARDS.iter().find(|(n, _)| *n == card.digits) else {
            return Err(ProcessorError::Refused(Refused {
                code: "test_card_required".into(),
                decline_code: None,
            }));
        };
        let token = format!("card_{}", Uuid::new_v4().simple());
        // Test cards are public numbers: their fingerprint is a digest of
        // the number (a real processor keys it with a secret of its own).
        let fingerprint = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("tollgate sandbox card {}", card.digits).as_bytes());
            format!("fp_{}", &hex::encode(digest)[..24])
        };
        sqlx::query(
            "INSERT INTO sandbox_cards (token, behaviour, created_at, brand, last4, exp_month, exp_year, fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token)
        .bind(stored)
        .bind(now)
        .bind(card.brand())
        .bind(card.last4())
        .bind(i16::from(card.exp_month))
        .bind(card.exp_year as i16)
        .bind(&fingerprint)
        .execute(&self.db)
        .await
        .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        Ok(token)
    }

    pub fn new(db: PgPool, secret: WebhookSecret, target: Option<Url>) -> Arc<Self> {
        Arc::new_cyclic(|me| Sandbox {
            me: me.clone(),
            db,
            secret,
            target: RwLock::new(target),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            held: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Holds every outcome undelivered (`true`) or lets them go (`false`;
    /// `deliver_due` then sends what waited). For tests of late webhooks.
    pub fn hold_deliveries(&self, held: bool) {
        self.held.store(held, std::sync::atomic::Ordering::SeqCst);
    }

    /// Where webhooks go now.
    pub fn target(&self) -> Option<Url> {
        self.target.read().expect("target lock").clone()
    }

    /// Delivers one event: `true` once the endpoint answered 2xx.
    async fn deliver(&self, id: &str, payload: &serde_json::Value) -> bool {
        if self.held.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let Some(target) = self.target() else {
            return false;
        };
        let body = payload.to_string();
        // Signed with the wall clock, as a real processor signs.
        let t = OffsetDateTime::now_utc().unix_timestamp();
        let signature = crate::billing::webhooks::sign(&self.secret.0, t, body.as_bytes());
        let sent = self
            .http
            .post(target)
            .header("content-type", "application/json")
            .header(crate::billing::webhooks::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let ok = matches!(&sent, Ok(r) if r.status().is_success());
        let now = OffsetDateTime::now_utc();
        let recorded = if ok {
            sqlx::query("UPDATE sandbox_events SET delivered_at = $2, attempts = attempts + 1 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&self.db)
                .await
        } else {
            tracing::info!(event = id, status = ?sent.as_ref().map(|r| r.status()).ok(), "sandbox webhook not accepted; it is retried");
            sqlx::query(
                "UPDATE sandbox_events SET attempts = attempts + 1,
                        next_attempt_at = $2 + least(interval '1 second' * power(2, attempts), interval '10 minutes')
                  WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&self.db)
            .await
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "sandbox: could not record a delivery");
        }
        ok
    }

    /// Delivers every event whose time has come (a job calls it).
    pub async fn deliver_due(&self) -> Result<usize, sqlx::Error> {
        let due: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT id, payload FROM sandbox_events
              WHERE delivered_at IS NULL AND next_attempt_at <= $1
              ORDER BY created_at LIMIT 100",
        )
        .bind(OffsetDateTime::now_utc())
        .fetch_all(&self.db)
        .await?;
        let mut delivered = 0;
        for (id, payload) in due {
            if self.deliver(&id, &payload).await {
                delivered += 1;
            }
        }
        Ok(delivered)
    }
}

#[async_trait::async_trait]
impl Processor for Sandbox {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn card_form(&self, _customer: &Customer, _now: OffsetDateTime) -> Result<CardForm, ProcessorError> {
        Ok(CardForm::Sandbox)
    }

    async fn attach_card(&self, _customer: &Customer, token: &str, now: OffsetDateTime) -> Result<SavedCard, ProcessorError> {
        let row: Option<(String, String, i16, i16, Option<String>)> = sqlx::query_as(
            "UPDATE sandbox_cards SET attached_at = $2
              WHERE token = $1 AND attached_at IS NULL AND brand IS NOT NULL
              RETURNING brand, last4, exp_month, exp_year, fingerprint",
        )
        .bind(token)
        .bind(now)
        .fetch_optional(&self.db)
        .await
        .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        let Some((brand, last4, exp_month, exp_year, fingerprint)) = row else {
            return Err(ProcessorError::Refused(Refused { code: "token_invalid".into(), decline_code: None }));
        };
        Ok(SavedCard { reference: token.to_string(), brand, last4, exp_month, exp_year, fingerprint })
    }

    async fn charge(&self, request: &ChargeRequest, now: OffsetDateTime) -> Result<Started, ProcessorError> {
        let unavailable = |e: sqlx::Error| ProcessorError::Unavailable(e.to_string());
        let stored: Option<String> = sqlx::query_scalar("SELECT behaviour FROM sandbox_cards WHERE token = $1")
            .bind(&request.card)
            .fetch_optional(&self.db)
            .await
            .map_err(unavailable)?;
        let Some(stored) = stored else {
            return Err(ProcessorError::Refused(Refused {
                code: "card_declined".into(),
                decline_code: Some("generic_decline".into()),
            }));
        };
        let (failure, decline) = match behaviour(&stored) {
            Behaviour::Succeeds => (None, None),
            Behaviour::Fails(code, decline) => (Some(code), decline),
        };
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let id = format!("ch_{}", Uuid::new_v4().simple());
        let inserted = sqlx::query(
            "INSERT INTO sandbox_charges (id, idempotency_key, card_token, amount_minor, currency, failure_code, decline_code, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&id)
        .bind(&request.idempotency_key)
        .bind(&request.card)
        .bind(request.amount_minor)
        .bind(&request.currency)
        .bind(failure)
        .bind(decline)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if inserted == 0 {
            // The same request again: the same charge, and no second event.
            let first: String = sqlx::query_scalar("SELECT id FROM sandbox_charges WHERE idempotency_key = $1")
                .bind(&request.idempotency_key)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            return Ok(Started::Pending(first));
        }
        let event_id = format!("evt_{}", Uuid::new_v4().simple());
        let payload = json!({
            "id": event_id,
            "type": if failure.is_none() { EventKind::ChargeSucceeded } else { EventKind::ChargeFailed }.as_str(),
            "created": now.unix_timestamp(),
            "data": {"object": {
                "id": id,
                "idempotency_key": request.idempotency_key,
                "amount": request.amount_minor,
                "currency": request.currency,
                "failure_code": failure,
                "decline_code": decline,
            }},
        });
        sqlx::query("INSERT INTO sandbox_events (id, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $3)")
            .bind(&event_id)
            .bind(&payload)
            .bind(OffsetDateTime::now_utc())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        // Delivered at once, off the caller's path, as a processor would.
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(async move {
                me.deliver(&event_id, &payload).await;
            });
        }
        Ok(Started::Pending(id))
    }

    async fn charge_state(&self, reference: &str) -> Result<ChargeState, ProcessorError> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT failure_code, decline_code FROM sandbox_charges WHERE id = $1")
                .bind(reference)
                .fetch_optional(&self.db)
                .await
                .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        Ok(match row {
            None => ChargeState::Failed(Refused::new("processing_error", None)),
            Some((None, _)) => ChargeState::Succeeded,
            Some((Some(code), decline)) => ChargeState::Failed(Refused { code, decline_code: decline }),
        })
    }

    async fn refund(&self, request: &RefundRequest, now: OffsetDateTime) -> Result<RefundStarted, ProcessorError> {
        let unavailable = |e: sqlx::Error| ProcessorError::Unavailable(e.to_string());
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let charge: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT amount_minor, failure_code FROM sandbox_charges WHERE id = $1 FOR UPDATE")
                .bind(&request.payment)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let Some((amount, None)) = charge else {
            return Err(ProcessorError::Refused(Refused::new("charge_not_refundable", None)));
        };
        if let Some(first) = sqlx::query_scalar::<_, String>("SELECT id FROM sandbox_refunds WHERE idempotency_key = $1")
            .bind(&request.idempotency_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
        {
            return Ok(RefundStarted { reference: first, state: RefundState::Succeeded });
        }
        let refunded: i64 = sqlx::query_scalar("SELECT coalesce(sum(amount_minor), 0)::bigint FROM sandbox_refunds WHERE charge_id = $1")
            .bind(&request.payment)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        if request.amount_minor <= 0 || refunded + request.amount_minor > amount {
            return Err(ProcessorError::Refused(Refused::new("amount_too_large", None)));
        }
        let id = format!("re_{}", Uuid::new_v4().simple());
        sqlx::query("INSERT INTO sandbox_refunds (id, idempotency_key, charge_id, amount_minor, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(&request.idempotency_key)
            .bind(&request.payment)
            .bind(request.amount_minor)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(RefundStarted { reference: id, state: RefundState::Succeeded })
    }

    fn read_event(&self, headers: &http::HeaderMap, body: &[u8], wall: i64) -> Result<Event, EventRefused> {
        let header = headers.get(crate::billing::webhooks::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        crate::billing::webhooks::verify(&self.secret.0, header, body, wall)?;
        let wire: WireEvent = serde_json::from_slice(body)
            .map_err(|e| EventRefused::Malformed(format!("{:?} at line {} column {}", e.classify(), e.line(), e.column())))?;
        Ok(into_event(wire))
    }

    async fn payments(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<Vec<Payment>, ProcessorError> {
        let rows: Vec<(String, String, i64, String, Option<String>, Option<String>, i64, OffsetDateTime)> = sqlx::query_as(
            "SELECT c.id, c.idempotency_key, c.amount_minor, c.currency, c.failure_code, c.decline_code,
                    coalesce((SELECT sum(r.amount_minor) FROM sandbox_refunds r WHERE r.charge_id = c.id), 0)::bigint,
                    c.created_at
               FROM sandbox_charges c WHERE c.created_at >= $1 AND c.created_at < $2 ORDER BY c.created_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.db)
        .await
        .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|(reference, key, amount, currency, failure, decline, refunded, created)| Payment {
                reference,
                idempotency_key: Some(key),
                amount_minor: amount,
                currency: currency.trim().to_string(),
                state: match failure {
                    None => ChargeState::Succeeded,
                    Some(code) => ChargeState::Failed(Refused { code, decline_code: decline }),
                },
                refunded_minor: refunded,
                created,
            })
            .collect())
    }

    fn listening_at(&self, webhook_url: Url) {
        let mut target = self.target.write().expect("target lock");
        if target.is_none() {
            *target = Some(webhook_url);
        }
    }
}
