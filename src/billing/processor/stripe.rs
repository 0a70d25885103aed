//! The Stripe processor: plain HTTPS to Stripe's API with typed requests
//! (form-encoded, as Stripe takes them) and typed answers, no client crate.
//! Tollgate's billing maps onto it without changing:
//!
//! - an organization is a Stripe **customer** (made once, kept in
//!   `stripe_customers`, the idempotency key naming the organization);
//! - a card is collected in the browser by **Stripe.js** against a
//!   **SetupIntent** (`card_form`); the browser posts back only the
//!   SetupIntent's id, which attaches once, and only for the customer it was
//!   made for (`stripe_setups`); the card's number never reaches Tollgate;
//! - a charge is a **PaymentIntent**, confirmed at once with the saved card
//!   (`off_session` for renewals and automatic top-ups), with the charge's
//!   idempotency key as Stripe's `Idempotency-Key` and in its metadata
//!   (`tollgate_key`), which is how its events find the charge;
//! - a refund is a **Refund** of the PaymentIntent, keyed the same way;
//! - events arrive signed with `Stripe-Signature` (the same scheme and
//!   checks as the sandbox's, with the endpoint's signing secret).
//!
//! The API's base URL is configuration, so the same code runs against
//! Stripe and against an emulator (the tests use `localstripe`).

use super::{
    BrowserLibrary, CardForm, ChargeRequest, ChargeState, Customer, EventRefused, Payment, Processor, ProcessorError,
    RefundRequest, RefundStarted, RefundState, Refused, SavedCard, Started,
};
use crate::billing::webhooks::{CardEvent, ChargeEvent, ChargeOutcome, DisputeEvent, Event, EventBody, RefundEvent};
use crate::config::StripeConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The header Stripe signs its webhooks in.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

pub struct Stripe {
    db: PgPool,
    config: StripeConfig,
    http: reqwest::Client,
}

/// What a call to Stripe's API can end in.
#[derive(Debug)]
enum CallError {
    /// Stripe answered with an error object.
    Api { status: u16, error: ApiError },
    /// No answer, or one that is not Stripe's.
    Unavailable(String),
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    payment_intent: Option<PaymentIntent>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

impl From<CallError> for ProcessorError {
    fn from(e: CallError) -> Self {
        match e {
            // A card's refusal (402) or a request Stripe will not take
            // (400, 404): asking again does not help.
            CallError::Api { status: 400 | 402 | 404, error } => ProcessorError::Refused(Refused {
                code: error.code.unwrap_or_else(|| "processing_error".into()),
                decline_code: error.decline_code,
            }),
            CallError::Api { status, error } => ProcessorError::Unavailable(format!(
                "Stripe answered {status}: {}",
                error.message.unwrap_or_default()
            )),
            CallError::Unavailable(e) => ProcessorError::Unavailable(e),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Object {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
struct SetupIntent {
    id: String,
    status: String,
    customer: Option<String>,
    payment_method: Option<String>,
    client_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PaymentMethod {
    id: String,
    customer: Option<String>,
    card: Option<CardDetails>,
}

#[derive(Debug, Clone, Deserialize)]
struct CardDetails {
    brand: Option<String>,
    last4: String,
    exp_month: i16,
    exp_year: i16,
    fingerprint: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PaymentError {
    code: Option<String>,
    decline_code: Option<String>,
}

/// A charge's latest attempt: its id, or the whole object when expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LatestCharge {
    Object { amount_refunded: Option<i64> },
    Id(#[allow(dead_code)] String),
}

#[derive(Debug, Clone, Deserialize)]
struct PaymentIntent {
    id: String,
    status: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    client_secret: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    last_payment_error: Option<PaymentError>,
    latest_charge: Option<LatestCharge>,
    created: Option<i64>,
}

impl PaymentIntent {
    /// Where it stands, in billing's terms.
    fn state(&self) -> ChargeState {
        let error = self.last_payment_error.clone().unwrap_or_default();
        match self.status.as_deref() {
            Some("succeeded") => ChargeState::Succeeded,
            Some("requires_action") => ChargeState::ActionRequired,
            // Off-session, Stripe refuses a payment the bank wants
            // confirmed: the customer can still confirm it on-session.
            Some("requires_payment_method") if error.code.as_deref() == Some("authentication_required") => {
                ChargeState::ActionRequired
            }
            Some("requires_payment_method") => ChargeState::Failed(Refused {
                code: error.code.unwrap_or_else(|| "card_declined".into()),
                decline_code: error.decline_code,
            }),
            Some("canceled") => ChargeState::Failed(Refused::new(
                error.code.as_deref().unwrap_or("payment_intent_authentication_failure"),
                error.decline_code.as_deref(),
            )),
            _ => ChargeState::Pending,
        }
    }

    fn refunded(&self) -> i64 {
        match &self.latest_charge {
            Some(LatestCharge::Object { amount_refunded }) => amount_refunded.unwrap_or(0),
            _ => 0,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    status: Option<String>,
    failure_reason: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

impl Refund {
    fn state(&self) -> RefundState {
        match self.status.as_deref() {
            Some("succeeded") => RefundState::Succeeded,
            Some("failed" | "canceled") => {
                RefundState::Failed(self.failure_reason.clone().unwrap_or_else(|| "refund failed".into()))
            }
            _ => RefundState::Pending,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Dispute {
    id: String,
    charge: Option<String>,
    payment_intent: Option<String>,
    amount: i64,
    currency: String,
    reason: Option<String>,
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct List<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
}

type WireEvent = crate::billing::webhooks::Envelope<serde_json::Value>;

/// A request's form fields, as Stripe takes them (`metadata[key]`,
/// `list[0]`).
trait Form {
    fn form(&self) -> Vec<(&'static str, String)>;
}

/// `POST /v1/customers`: the organization's customer.
struct NewCustomer<'a> {
    customer: &'a Customer,
}

impl Form for NewCustomer<'_> {
    fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![("name", self.customer.name.clone()), ("metadata[tollgate_org]", self.customer.org.to_string())];
        if let Some(email) = &self.customer.email {
            form.push(("email", email.clone()));
        }
        form
    }
}

/// `POST /v1/setup_intents`: what the card form confirms, kept for
/// payments made while the customer is away.
struct NewSetupIntent<'a> {
    customer: &'a str,
    org: Uuid,
}

impl Form for NewSetupIntent<'_> {
    fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("customer", self.customer.to_string()),
            ("usage", "off_session".into()),
            ("payment_method_types[0]", "card".into()),
            ("metadata[tollgate_org]", self.org.to_string()),
        ]
    }
}

/// `POST /v1/payment_methods/{id}/attach`.
struct Attach<'a> {
    customer: &'a str,
}

impl Form for Attach<'_> {
    fn form(&self) -> Vec<(&'static str, String)> {
        vec![("customer", self.customer.to_string())]
    }
}

/// `POST /v1/payment_intents`: a charge, confirmed at once with the saved
/// card; the charge's idempotency key rides in the metadata, where its
/// events find it.
struct NewPaymentIntent<'a> {
    request: &'a ChargeRequest,
    customer: &'a str,
}

impl Form for NewPaymentIntent<'_> {
    fn form(&self) -> Vec<(&'static str, String)> {
        let r = self.request;
        let mut form = vec![
            ("amount", r.amount_minor.to_string()),
            ("currency", r.currency.trim().to_ascii_lowercase()),
            ("customer", self.customer.to_string()),
            ("payment_method", r.card.clone()),
            ("payment_method_types[0]", "card".into()),
            ("confirm", "true".into()),
            ("metadata[tollgate_key]", r.idempotency_key.clone()),
            ("metadata[tollgate_org]", r.customer.org.to_string()),
            ("metadata[description]", r.description.clone()),
        ];
        if r.off_session {
            form.push(("off_session", "true".into()));
        }
        form
    }
}

/// `POST /v1/refunds`: (part of) a PaymentIntent back.
struct NewRefund<'a> {
    request: &'a RefundRequest,
}

impl Form for NewRefund<'_> {
    fn form(&self) -> Vec<(&'static str, String)> {
        let r = self.request;
        vec![
            ("payment_intent", r.payment.clone()),
            ("amount", r.amount_minor.to_string()),
            ("metadata[tollgate_key]", r.idempotency_key.clone()),
            ("metadata[reason]", r.reason.chars().take(500).collect()),
        ]
    }
}

/// A Stripe id that may go into a URL path: its prefix, then letters,
/// digits and underscores only (no `/`, `.`, `%` or `\`).
fn is_id(id: &str, prefix: &str) -> bool {
    id.len() <= 255
        && id.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

impl Stripe {
    pub fn new(db: PgPool, config: StripeConfig) -> Arc<Self> {
        Arc::new(Stripe {
            db,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.as_str().trim_end_matches('/'))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, CallError> {
        let mut request = self
            .http
            .request(method.clone(), self.url(path))
            .basic_auth(&self.config.secret_key.0, Some(""))
            .header("stripe-version", "2024-06-20");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request = if method == reqwest::Method::GET { request.query(form) } else { request.form(form) };
        let response = request.send().await.map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| CallError::Unavailable(e.to_string()))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| CallError::Unavailable(format!("an answer that is not Stripe's: {e}")));
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_default();
        Err(CallError::Api { status, error })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(String, String)]) -> Result<T, CallError> {
        self.call(reqwest::Method::GET, path, query, None).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, form: &[(&str, String)], key: Option<&str>) -> Result<T, CallError> {
        self.call(reqwest::Method::POST, path, &pairs(form), key).await
    }

    /// The organization's Stripe customer, made the first time it is needed.
    async fn customer_id(&self, customer: &Customer, now: OffsetDateTime) -> Result<String, ProcessorError> {
        let unavailable = |e: sqlx::Error| ProcessorError::Unavailable(e.to_string());
        let known: Option<String> = sqlx::query_scalar("SELECT customer_id FROM stripe_customers WHERE org_id = $1")
            .bind(customer.org)
            .fetch_optional(&self.db)
            .await
            .map_err(unavailable)?;
        if let Some(id) = known {
            return Ok(id);
        }
        // Two instances asking at once get the same customer from Stripe.
        let made: Object = self
            .post("/v1/customers", &NewCustomer { customer }.form(), Some(&format!("tollgate-customer-{}", customer.org)))
            .await?;
        sqlx::query("INSERT INTO stripe_customers (org_id, customer_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (org_id) DO NOTHING")
            .bind(customer.org)
            .bind(&made.id)
            .bind(now)
            .execute(&self.db)
            .await
            .map_err(unavailable)?;
        sqlx::query_scalar("SELECT customer_id FROM stripe_customers WHERE org_id = $1")
            .bind(customer.org)
            .fetch_one(&self.db)
            .await
            .map_err(unavailable)
    }

    fn library(&self, client_secret: String) -> BrowserLibrary {
        BrowserLibrary {
            script: self.config.js_url.clone(),
            publishable_key: self.config.publishable_key.clone(),
            client_secret,
        }
    }

    async fn intent(&self, reference: &str) -> Result<PaymentIntent, ProcessorError> {
        if !is_id(reference, "pi_") {
            return Err(ProcessorError::Refused(Refused::new("resource_missing", None)));
        }
        Ok(self.get(&format!("/v1/payment_intents/{reference}"), &[]).await?)
    }

    /// One page of PaymentIntents, with Stripe's `created` filter when
    /// `filtered` (an emulator without it lists everything, filtered here).
    async fn intents_page(&self, from: i64, to: i64, after: Option<&str>, filtered: bool) -> Result<List<PaymentIntent>, CallError> {
        let mut query = vec![("limit".to_string(), "100".to_string()), ("expand[]".to_string(), "data.latest_charge".to_string())];
        if filtered {
            query.push(("created[gte]".into(), from.to_string()));
            query.push(("created[lt]".into(), to.to_string()));
        }
        if let Some(after) = after {
            query.push(("starting_after".into(), after.to_string()));
        }
        self.get("/v1/payment_intents", &query).await
    }
}

fn event_body(kind: &str, object: serde_json::Value) -> Result<EventBody, serde_json::Error> {
    Ok(match kind {
        "payment_intent.succeeded" | "payment_intent.payment_failed" | "payment_intent.requires_action" | "payment_intent.canceled" => {
            let pi: PaymentIntent = serde_json::from_value(object)?;
            let Some(key) = pi.metadata.get("tollgate_key").cloned() else {
                // A payment Tollgate did not make.
                return Ok(EventBody::Other);
            };
            let outcome = match (kind, pi.state()) {
                ("payment_intent.succeeded", _) => ChargeOutcome::Succeeded,
                (_, ChargeState::ActionRequired) => ChargeOutcome::ActionRequired,
                (_, ChargeState::Failed(r)) => ChargeOutcome::Failed(r),
                ("payment_intent.requires_action", _) => ChargeOutcome::ActionRequired,
                _ => {
                    let e = pi.last_payment_error.clone().unwrap_or_default();
                    ChargeOutcome::Failed(Refused {
                        code: e.code.unwrap_or_else(|| "card_declined".into()),
                        decline_code: e.decline_code,
                    })
                }
            };
            EventBody::Charge(ChargeEvent {
                reference: pi.id,
                idempotency_key: key,
                amount: pi.amount.unwrap_or(0),
                currency: pi.currency.unwrap_or_default().to_ascii_uppercase(),
                outcome,
            })
        }
        "refund.created" | "refund.updated" | "refund.failed" | "charge.refund.updated" => {
            let refund: Refund = serde_json::from_value(object)?;
            EventBody::Refund(RefundEvent {
                state: refund.state(),
                idempotency_key: refund.metadata.get("tollgate_key").cloned(),
                reference: refund.id,
            })
        }
        "payment_method.updated" | "payment_method.automatically_updated" => {
            let pm: PaymentMethod = serde_json::from_value(object)?;
            match pm.card {
                Some(card) => EventBody::CardUpdated(CardEvent {
                    reference: pm.id,
                    brand: card.brand.unwrap_or_else(|| "card".into()),
                    last4: card.last4,
                    exp_month: card.exp_month,
                    exp_year: card.exp_year,
                }),
                None => EventBody::Other,
            }
        }
        "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => {
            let d: Dispute = serde_json::from_value(object)?;
            EventBody::Dispute(DisputeEvent {
                reference: d.id,
                payment: d.payment_intent.or(d.charge).unwrap_or_default(),
                amount: d.amount,
                currency: d.currency.to_ascii_uppercase(),
                reason: d.reason.unwrap_or_default(),
                status: d.status.unwrap_or_default(),
            })
        }
        _ => EventBody::Other,
    })
}

#[async_trait::async_trait]
impl Processor for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn card_form(&self, customer: &Customer, now: OffsetDateTime) -> Result<CardForm, ProcessorError> {
        let id = self.customer_id(customer, now).await?;
        let open: Option<String> = sqlx::query_scalar("SELECT setup_intent FROM stripe_customers WHERE org_id = $1")
            .bind(customer.org)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| ProcessorError::Unavailable(e.to_string()))?
            .flatten();
        // The form's SetupIntent is kept while it still waits for a card, so
        // showing the page again makes nothing new at Stripe.
        if let Some(open) = open.filter(|s| is_id(s, "seti_")) {
            let seti: SetupIntent = self.get(&format!("/v1/setup_intents/{open}"), &[]).await?;
            if seti.status == "requires_payment_method" && seti.customer.as_deref() == Some(id.as_str()) {
                if let Some(secret) = seti.client_secret {
                    return Ok(CardForm::Browser(self.library(secret)));
                }
            }
        }
        let seti: SetupIntent = self
            .post("/v1/setup_intents", &NewSetupIntent { customer: &id, org: customer.org }.form(), None)
            .await?;
        sqlx::query("UPDATE stripe_customers SET setup_intent = $2 WHERE org_id = $1")
            .bind(customer.org)
            .bind(&seti.id)
            .execute(&self.db)
            .await
            .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        let secret = seti
            .client_secret
            .ok_or_else(|| ProcessorError::Unavailable("a SetupIntent without its client secret".into()))?;
        Ok(CardForm::Browser(self.library(secret)))
    }

    async fn attach_card(&self, customer: &Customer, token: &str, now: OffsetDateTime) -> Result<SavedCard, ProcessorError> {
        let invalid = || ProcessorError::Refused(Refused::new("token_invalid", None));
        let unavailable = |e: sqlx::Error| ProcessorError::Unavailable(e.to_string());
        if !is_id(token, "seti_") {
            return Err(invalid());
        }
        let id = self.customer_id(customer, now).await?;
        let seti: SetupIntent = match self.get(&format!("/v1/setup_intents/{token}"), &[]).await {
            Ok(s) => s,
            Err(CallError::Api { status: 404, .. }) => return Err(invalid()),
            Err(e) => return Err(e.into()),
        };
        // Only this customer's confirmed SetupIntent: another
        // organization's id, or one never confirmed, saves nothing.
        if seti.customer.as_deref() != Some(id.as_str()) || seti.status != "succeeded" {
            return Err(invalid());
        }
        let pm_id = seti.payment_method.filter(|p| is_id(p, "pm_")).ok_or_else(invalid)?;
        let mut pm: PaymentMethod = self.get(&format!("/v1/payment_methods/{pm_id}"), &[]).await?;
        match pm.customer.as_deref() {
            None => {
                pm = self
                    .post(&format!("/v1/payment_methods/{pm_id}/attach"), &Attach { customer: &id }.form(), None)
                    .await?;
            }
            Some(c) if c == id => {}
            Some(_) => return Err(invalid()),
        }
        let card = pm.card.ok_or_else(invalid)?;
        // The SetupIntent turns into one saved card, once.
        let fresh = sqlx::query(
            "INSERT INTO stripe_setups (setup_intent, org_id, attached_at) VALUES ($1, $2, $3) ON CONFLICT (setup_intent) DO NOTHING",
        )
        .bind(token)
        .bind(customer.org)
        .bind(now)
        .execute(&self.db)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if fresh == 0 {
            return Err(invalid());
        }
        sqlx::query("UPDATE stripe_customers SET setup_intent = NULL WHERE org_id = $1 AND setup_intent = $2")
            .bind(customer.org)
            .bind(token)
            .execute(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(SavedCard {
            reference: pm.id,
            brand: card.brand.unwrap_or_else(|| "card".into()),
            last4: card.last4,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            fingerprint: card.fingerprint.map(|f| format!("stripe_{f}")),
        })
    }

    async fn charge(&self, request: &ChargeRequest, now: OffsetDateTime) -> Result<Started, ProcessorError> {
        if !is_id(&request.card, "pm_") && !is_id(&request.card, "card_") {
            return Err(ProcessorError::Refused(Refused::new("payment_method_required", None)));
        }
        let customer = self.customer_id(&request.customer, now).await?;
        let form = NewPaymentIntent { request, customer: &customer }.form();
        let created: Result<PaymentIntent, CallError> = self.post("/v1/payment_intents", &form, Some(&request.idempotency_key)).await;
        let pi = match created {
            Ok(pi) => pi,
            // Off-session, a bank that wants the customer to confirm makes
            // Stripe refuse: the customer confirms it on-session.
            Err(CallError::Api { status: 402, error }) if error.code.as_deref() == Some("authentication_required") => {
                match error.payment_intent {
                    Some(pi) => return Ok(Started::ActionRequired(pi.id)),
                    None => return Err(CallError::Api { status: 402, error }.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        match pi.state() {
            ChargeState::Succeeded => Ok(Started::Succeeded(pi.id)),
            ChargeState::ActionRequired => Ok(Started::ActionRequired(pi.id)),
            ChargeState::Failed(r) => Err(ProcessorError::Refused(r)),
            ChargeState::Pending => Ok(Started::Pending(pi.id)),
        }
    }

    async fn charge_state(&self, reference: &str) -> Result<ChargeState, ProcessorError> {
        Ok(self.intent(reference).await?.state())
    }

    async fn confirmation(&self, reference: &str) -> Result<Option<BrowserLibrary>, ProcessorError> {
        let pi = self.intent(reference).await?;
        Ok(match (pi.state(), pi.client_secret) {
            (ChargeState::ActionRequired, Some(secret)) => Some(self.library(secret)),
            _ => None,
        })
    }

    async fn abandon(&self, reference: &str) -> Result<(), ProcessorError> {
        if !is_id(reference, "pi_") {
            return Ok(());
        }
        match self.post::<Object>(&format!("/v1/payment_intents/{reference}/cancel"), &[], None).await {
            Ok(_) => Ok(()),
            // Already canceled or settled: `charge_state` tells which.
            Err(CallError::Api { status: 400, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn refund(&self, request: &RefundRequest, _now: OffsetDateTime) -> Result<RefundStarted, ProcessorError> {
        if !is_id(&request.payment, "pi_") {
            return Err(ProcessorError::Refused(Refused::new("charge_not_refundable", None)));
        }
        let refund: Refund = self.post("/v1/refunds", &NewRefund { request }.form(), Some(&request.idempotency_key)).await?;
        Ok(RefundStarted { state: refund.state(), reference: refund.id })
    }

    fn read_event(&self, headers: &http::HeaderMap, body: &[u8], wall: i64) -> Result<Event, EventRefused> {
        let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        crate::billing::webhooks::verify(&self.config.webhook_secret.0, header, body, wall)?;
        // Serde's message can quote what it read: only where it failed is logged.
        let malformed = |e: serde_json::Error| EventRefused::Malformed(format!("{:?} at line {} column {}", e.classify(), e.line(), e.column()));
        let wire: WireEvent = serde_json::from_slice(body).map_err(malformed)?;
        let body = event_body(&wire.kind, wire.data.object).map_err(malformed)?;
        Ok(Event { id: wire.id, kind: wire.kind, body })
    }

    async fn payments(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<Vec<Payment>, ProcessorError> {
        let (from_s, to_s) = (from.unix_timestamp(), to.unix_timestamp());
        let mut filtered = true;
        let mut after: Option<String> = None;
        let mut found = Vec::new();
        // At most 100 pages (10,000 payments) a run.
        for _ in 0..100 {
            let page = match self.intents_page(from_s, to_s, after.as_deref(), filtered).await {
                Ok(p) => p,
                Err(CallError::Api { status: 400, .. }) if filtered && after.is_none() => {
                    filtered = false;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            after = page.data.last().map(|p| p.id.clone());
            for pi in page.data {
                let created = pi.created.unwrap_or(0);
                if created < from_s || created >= to_s {
                    continue;
                }
                found.push(Payment {
                    state: pi.state(),
                    refunded_minor: pi.refunded(),
                    idempotency_key: pi.metadata.get("tollgate_key").cloned(),
                    amount_minor: pi.amount.unwrap_or(0),
                    currency: pi.currency.clone().unwrap_or_default().to_ascii_uppercase(),
                    created: OffsetDateTime::from_unix_timestamp(created).unwrap_or(from),
                    reference: pi.id,
                });
            }
            if !page.has_more || after.is_none() {
                return Ok(found);
            }
        }
        Err(ProcessorError::Unavailable("more than 10,000 payments in the period; reconcile a shorter one".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_go_into_a_path() {
        assert!(is_id("seti_1AbC_secret", "seti_"));
        for bad in ["seti_", "pi_1", "seti_../v1/refunds", "seti_a%2fb", "seti_a\\b", "seti_a.b", "seti_a/b", "seti_a b"] {
            assert!(!is_id(bad, "seti_"), "{bad}");
        }
        assert!(!is_id(&format!("seti_{}", "a".repeat(300)), "seti_"));
    }

    #[test]
    fn an_off_session_refusal_for_authentication_can_still_be_confirmed() {
        let pi: PaymentIntent = serde_json::from_value(serde_json::json!({
            "id": "pi_1", "status": "requires_payment_method",
            "last_payment_error": {"code": "authentication_required"}
        }))
        .unwrap();
        assert_eq!(pi.state(), ChargeState::ActionRequired);
        let declined: PaymentIntent = serde_json::from_value(serde_json::json!({
            "id": "pi_2", "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}
        }))
        .unwrap();
        assert_eq!(declined.state(), ChargeState::Failed(Refused::new("card_declined", Some("insufficient_funds"))));
    }

    #[test]
    fn stripes_declines_read_as_the_sandboxs_codes_and_sentences() {
        for (code, decline) in [("card_declined", Some("insufficient_funds")), ("card_declined", Some("generic_decline")), ("expired_card", None), ("incorrect_cvc", None), ("processing_error", None)] {
            let body = serde_json::json!({"error": {"type": "card_error", "code": code, "decline_code": decline, "message": "Stripe's words"}});
            let error: ErrorBody = serde_json::from_value(body).unwrap();
            let ProcessorError::Refused(r) = ProcessorError::from(CallError::Api { status: 402, error: error.error }) else {
                panic!("a decline is a refusal");
            };
            assert_eq!(r, Refused::new(code, decline));
            assert_eq!(r.message(), super::super::message(code, decline));
        }
        // Stripe down or rate limiting is no refusal: the charge is sent again.
        let busy = ProcessorError::from(CallError::Api { status: 429, error: ApiError::default() });
        assert!(matches!(busy, ProcessorError::Unavailable(_)));
        let bad_key = ProcessorError::from(CallError::Api { status: 401, error: ApiError::default() });
        assert!(matches!(bad_key, ProcessorError::Unavailable(_)));
    }

    #[test]
    fn a_payment_intent_carries_its_key_and_is_off_session_only_when_away() {
        let mut request = ChargeRequest {
            idempotency_key: "charge:i:1".into(),
            customer: Customer { org: Uuid::nil(), name: "Ada".into(), email: None },
            card: "pm_1".into(),
            amount_minor: 2900,
            currency: "USD".into(),
            description: "Tollgate invoice TG-1".into(),
            off_session: false,
        };
        let form = NewPaymentIntent { request: &request, customer: "cus_1" }.form();
        assert!(form.contains(&("metadata[tollgate_key]", "charge:i:1".into())) && form.contains(&("currency", "usd".into())));
        assert!(form.contains(&("confirm", "true".into())) && !form.iter().any(|(k, _)| *k == "off_session"));
        request.off_session = true;
        let form = NewPaymentIntent { request: &request, customer: "cus_1" }.form();
        assert!(form.contains(&("off_session", "true".into())));
    }

    #[test]
    fn events_read_into_billings_terms() {
        let body = event_body(
            "payment_intent.payment_failed",
            serde_json::json!({
                "id": "pi_3", "status": "requires_payment_method", "amount": 1000, "currency": "usd",
                "metadata": {"tollgate_key": "charge:x:1"},
                "last_payment_error": {"code": "card_declined", "decline_code": "generic_decline"}
            }),
        )
        .unwrap();
        assert_eq!(
            body,
            EventBody::Charge(ChargeEvent {
                reference: "pi_3".into(),
                idempotency_key: "charge:x:1".into(),
                amount: 1000,
                currency: "USD".into(),
                outcome: ChargeOutcome::Failed(Refused::new("card_declined", Some("generic_decline"))),
            })
        );
        // A payment made outside Tollgate is not Tollgate's to apply.
        let other = event_body("payment_intent.succeeded", serde_json::json!({"id": "pi_4", "status": "succeeded"})).unwrap();
        assert_eq!(other, EventBody::Other);
    }
}
