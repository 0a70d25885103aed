//! The payment processor, behind one interface: save a card, charge a saved
//! card. Billing never learns more about a card than brand, last 4 and
//! expiry, and never learns an outcome except from a signed webhook
//! (`billing::webhooks`). The sandbox processor ([`sandbox`]) is the default;
//! a real processor is another implementation of [`Processor`] beside it.
//!
//! Card checks that need no processor (Luhn, expiry, CVC length) live here,
//! so every processor gets the same messages next to the same fields.

pub mod sandbox;
pub mod stripe;

use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

/// A card as typed into the form. Its number and CVC go to the processor and
/// nowhere else: `Debug` shows neither.
#[derive(Clone)]
pub struct CardInput {
    pub number: String,
    pub exp_month: String,
    pub exp_year: String,
    pub cvc: String,
    pub name: String,
}

impl std::fmt::Debug for CardInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardInput")
            .field("number", &"[redacted]")
            .field("cvc", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A card checked field by field: digits only, month and year as numbers.
#[derive(Clone)]
pub struct Card {
    pub digits: String,
    pub exp_month: u8,
    pub exp_year: i32,
    pub cvc: String,
    pub name: String,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("last4", &self.last4())
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .finish_non_exhaustive()
    }
}

impl Card {
    pub fn last4(&self) -> &str {
        &self.digits[self.digits.len().saturating_sub(4)..]
    }

    pub fn brand(&self) -> &'static str {
        brand(&self.digits)
    }
}

/// The card network, from the number's first digits.
pub fn brand(digits: &str) -> &'static str {
    let two: u32 = digits.get(..2).and_then(|d| d.parse().ok()).unwrap_or(0);
    let four: u32 = digits.get(..4).and_then(|d| d.parse().ok()).unwrap_or(0);
    if digits.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&two) || (2221..=2720).contains(&four) {
        "mastercard"
    } else if two == 34 || two == 37 {
        "amex"
    } else if digits.starts_with("6011") || two == 65 {
        "discover"
    } else {
        "card"
    }
}

pub use app::card::luhn;

/// Checks every field at once: (field, message) for each that is wrong.
pub fn check_card(input: &CardInput, now: OffsetDateTime) -> Result<Card, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let digits: String = input
        .number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if digits.is_empty() {
        errors.push(("number", "Enter the card number.".to_string()));
    } else if !digits.chars().all(|c| c.is_ascii_digit()) {
        errors.push(("number", "A card number has digits only.".into()));
    } else if !(12..=19).contains(&digits.len()) {
        errors.push(("number", "A card number has 12 to 19 digits.".into()));
    } else if !luhn(&digits) {
        errors.push(("number", "This card number is not valid; check it for a typo.".into()));
    }
    let month: Option<u8> = input.exp_month.trim().parse().ok().filter(|m| (1..=12).contains(m));
    if month.is_none() {
        errors.push(("exp_month", "Enter the expiry month, 1 to 12.".into()));
    }
    let year: Option<i32> = input.exp_year.trim().parse().ok().map(|y: i32| if y < 100 { 2000 + y } else { y });
    match year {
        None => errors.push(("exp_year", "Enter the expiry year, for example 2030.".into())),
        Some(y) if y > now.year() + 20 => {
            errors.push(("exp_year", "This expiry year is too far ahead.".into()))
        }
        Some(y) if y < now.year() => errors.push(("exp_year", "This card has expired.".into())),
        Some(y) => {
            if let Some(m) = month {
                // A card is good through the last day of its expiry month.
                if (y, m) < (now.year(), u8::from(now.month())) {
                    errors.push(("exp_year", "This card has expired.".into()));
                }
            }
        }
    }
    let cvc = input.cvc.trim();
    let amex = brand(&digits) == "amex";
    let want = if amex { 4 } else { 3 };
    if cvc.len() != want || !cvc.chars().all(|c| c.is_ascii_digit()) {
        errors.push((
            "cvc",
            format!("The security code (CVC) is {want} digits{}.", if amex { " on the front of the card" } else { " on the back of the card" }),
        ));
    }
    let name = input.name.trim();
    if name.is_empty() {
        errors.push(("name", "Enter the name on the card.".into()));
    } else if name.chars().count() > 100 {
        errors.push(("name", "The name is at most 100 characters.".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Card {
        digits,
        exp_month: month.expect("checked"),
        exp_year: year.expect("checked"),
        cvc: cvc.to_string(),
        name: name.to_string(),
    })
}

/// A card the processor keeps: its reference, and what Tollgate may store.
#[derive(Clone, Debug)]
pub struct SavedCard {
    pub reference: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
    /// The processor's name for the card number (the same number, the same
    /// fingerprint, whichever customer saves it): one trial per card.
    pub fingerprint: Option<String>,
}

/// The organization a processor keeps cards and charges under (a Stripe
/// customer).
#[derive(Clone, Debug)]
pub struct Customer {
    pub org: Uuid,
    pub name: String,
    pub email: Option<String>,
}

/// How the payment-methods page collects a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardForm {
    /// The sandbox's own form: test cards typed into Tollgate's page and
    /// tokenized there ([`sandbox::Sandbox::tokenize`]).
    Sandbox,
    /// The processor's browser library collects the card and confirms it
    /// with the processor; only a token comes back to Tollgate.
    Browser(BrowserLibrary),
}

/// A processor's script in the browser, and what it needs to confirm one
/// card or one payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserLibrary {
    pub script: Url,
    pub publishable_key: String,
    /// Lets the browser confirm this one setup or payment (and nothing else).
    pub client_secret: String,
}

/// A charge to make; `idempotency_key` names it, so asking twice charges once.
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub customer: Customer,
    pub card: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    /// The customer is not at the page (renewals, automatic top-ups): a
    /// bank that wants them to confirm cannot ask now.
    pub off_session: bool,
}

/// What a processor did with a charge it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// The outcome arrives as a webhook.
    Pending(String),
    /// Paid on the spot (the webhook that follows changes nothing).
    Succeeded(String),
    /// The card's bank wants the customer to confirm it (3-D Secure).
    ActionRequired(String),
}

/// A charge as the processor sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeState {
    Pending,
    Succeeded,
    Failed(Refused),
    ActionRequired,
}

/// Money to send back for a payment the processor took.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    pub idempotency_key: String,
    /// The processor's reference of the payment.
    pub payment: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
}

/// Where a refund stands at the processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundState {
    Pending,
    Succeeded,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundStarted {
    pub reference: String,
    pub state: RefundState,
}

/// A payment as the processor records it, for reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub reference: String,
    /// The charge's idempotency key, as Tollgate sent it.
    pub idempotency_key: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub state: ChargeState,
    pub refunded_minor: i64,
    pub created: OffsetDateTime,
}

/// How a processor refused, in its words: `code` and, for a decline, the
/// issuer's `decline_code`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}{}", decline_code.as_ref().map(|d| format!(" / {d}")).unwrap_or_default())]
pub struct Refused {
    pub code: String,
    pub decline_code: Option<String>,
}

impl Refused {
    pub fn new(code: &str, decline_code: Option<&str>) -> Refused {
        Refused { code: code.into(), decline_code: decline_code.map(Into::into) }
    }

    /// What the customer reads: one plain sentence per code.
    pub fn message(&self) -> &'static str {
        message(&self.code, self.decline_code.as_deref())
    }
}

/// The customer's sentence for a processor's code and decline code.
pub fn message(code: &str, decline_code: Option<&str>) -> &'static str {
    match (code, decline_code) {
        (_, Some("insufficient_funds")) => "Your card has insufficient funds.",
        (_, Some("lost_card" | "stolen_card")) => "Your card was declined. Use another card.",
        ("expired_card", _) | (_, Some("expired_card")) => "Your card has expired.",
        ("incorrect_cvc", _) | (_, Some("incorrect_cvc")) => "Your card's security code is incorrect.",
        ("processing_error", _) | (_, Some("processing_error")) => {
            "An error occurred while processing your card. Try again in a moment."
        }
        ("incorrect_number" | "invalid_number", _) => "This card number is not valid; check it for a typo.",
        ("invalid_expiry_year" | "invalid_expiry_month", _) => "Check the card's expiry date.",
        ("authentication_required" | "payment_intent_authentication_failure", _) => {
            "Your bank did not confirm this payment. Confirm it when asked, or use another card."
        }
        ("card_declined", _) => "Your card was declined.",
        ("test_card_required", _) => "The sandbox processor accepts test cards only.",
        _ => "The payment did not go through.",
    }
}

/// Every code and decline code with a sentence of its own, for a browser
/// library's errors (the page shows the same words as the server).
pub const CODES: &[&str] = &[
    "insufficient_funds",
    "lost_card",
    "stolen_card",
    "expired_card",
    "incorrect_cvc",
    "processing_error",
    "incorrect_number",
    "invalid_number",
    "invalid_expiry_year",
    "invalid_expiry_month",
    "authentication_required",
    "payment_intent_authentication_failure",
    "card_declined",
];

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The processor refused the card or the charge.
    #[error("refused: {0}")]
    Refused(Refused),
    /// The processor could not be reached or failed; safe to retry with the
    /// same idempotency key.
    #[error("processor unavailable: {0}")]
    Unavailable(String),
}

/// Why an incoming webhook was not read.
#[derive(Debug, thiserror::Error)]
pub enum EventRefused {
    #[error("signature: {0}")]
    Signature(#[from] crate::billing::webhooks::SignatureError),
    #[error("not an event: {0}")]
    Malformed(String),
}

/// A payment processor.
#[async_trait::async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Its name, stored beside each card and charge, and the last segment
    /// of its webhook endpoint (`/webhooks/{name}`).
    fn name(&self) -> &'static str;

    /// How the payment-methods page collects a card for `customer`.
    async fn card_form(&self, customer: &Customer, now: OffsetDateTime) -> Result<CardForm, ProcessorError>;

    /// Attaches a card the processor tokenized (in the browser with its own
    /// library, or the sandbox's card form) to `customer` and returns the
    /// reference to charge it by; a token attaches once, and only to the
    /// customer it was made for. Card numbers never pass through this trait.
    async fn attach_card(&self, customer: &Customer, token: &str, now: OffsetDateTime) -> Result<SavedCard, ProcessorError>;

    /// Starts a charge. The same idempotency key twice starts one charge.
    async fn charge(&self, request: &ChargeRequest, now: OffsetDateTime) -> Result<Started, ProcessorError>;

    /// Where a charge stands at the processor (after the customer confirmed
    /// it in the browser, and for reconciliation).
    async fn charge_state(&self, reference: &str) -> Result<ChargeState, ProcessorError>;

    /// What the browser needs to let the customer confirm a charge that
    /// requires it (`None` when it no longer does).
    async fn confirmation(&self, _reference: &str) -> Result<Option<BrowserLibrary>, ProcessorError> {
        Ok(None)
    }

    /// Gives up a charge the customer never confirmed, so it cannot succeed
    /// later.
    async fn abandon(&self, _reference: &str) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// Sends money back. The same idempotency key twice refunds once.
    async fn refund(&self, request: &RefundRequest, now: OffsetDateTime) -> Result<RefundStarted, ProcessorError>;

    /// Reads a webhook: checks its signature (against the wall clock `wall`,
    /// in unix seconds) and turns it into billing's terms.
    fn read_event(&self, headers: &http::HeaderMap, body: &[u8], wall: i64) -> Result<crate::billing::webhooks::Event, EventRefused>;

    /// The payments (with what was refunded of them) made from `from` to
    /// `to`, as the processor records them.
    async fn payments(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<Vec<Payment>, ProcessorError>;

    /// Where this instance receives the processor's webhooks, once it is
    /// listening (a processor that delivers to a fixed URL ignores it).
    fn listening_at(&self, _webhook_url: url::Url) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn input(number: &str, m: &str, y: &str, cvc: &str) -> CardInput {
        CardInput {
            number: number.into(),
            exp_month: m.into(),
            exp_year: y.into(),
            cvc: cvc.into(),
            name: "Ada Lovelace".into(),
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    #[test]
    fn luhn_accepts_test_cards_and_refuses_typos() {
        assert!(luhn("4242424242424242"));
        assert!(luhn("4000000000009995"));
        assert!(!luhn("4242424242424241"));
        assert!(!luhn(""));
    }

    #[test]
    fn every_field_is_checked_at_once() {
        let errors = check_card(&input("4242 4242 4242 4241", "13", "2020", "12"), NOW).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["number", "exp_month", "exp_year", "cvc"]);
    }

    #[test]
    fn a_card_expires_after_its_month() {
        assert!(check_card(&input("4242424242424242", "11", "2026", "123"), NOW).is_ok());
        let e = check_card(&input("4242424242424242", "10", "2026", "123"), NOW).unwrap_err();
        assert_eq!(e[0].0, "exp_year");
        assert!(check_card(&input("4242424242424242", "1", "27", "123"), NOW).is_ok());
    }

    #[test]
    fn amex_has_four_digit_codes() {
        assert!(check_card(&input("378282246310005", "1", "2030", "1234"), NOW).is_ok());
        assert!(check_card(&input("378282246310005", "1", "2030", "123"), NOW).is_err());
    }

    #[test]
    fn cards_show_neither_number_nor_code_in_logs() {
        let card = check_card(&input("4242424242424242", "1", "2030", "987"), NOW).unwrap();
        let shown = format!("{card:?} {:?}", input("4242424242424242", "1", "2030", "987"));
        assert!(!shown.contains("42424242") && !shown.contains("987"), "{shown}");
    }

    #[test]
    fn each_decline_has_its_own_sentence() {
        let r = |c: &str, d: Option<&str>| Refused { code: c.into(), decline_code: d.map(Into::into) }.message();
        assert_eq!(r("card_declined", Some("insufficient_funds")), "Your card has insufficient funds.");
        assert_ne!(r("card_declined", Some("generic_decline")), r("expired_card", None));
        assert_ne!(r("incorrect_cvc", None), r("processing_error", None));
    }
}
