//! Billing: plans, subscriptions, the credit ledger, and the customer's
//! self-service on top of them: cards ([`cards`]), top-ups and limits
//! ([`topups`]), plan changes and approvals ([`changes`]), invoices and the
//! charges that collect them ([`payments`]), renewals and dunning
//! ([`renewals`]), notifications ([`notices`]). Payment goes through a
//! [`processor::Processor`] (the sandbox by default); outcomes arrive only as
//! signed webhooks ([`webhooks`]).

pub mod cards;
pub mod changes;
pub mod disputes;
pub mod ledger;
pub mod notices;
pub mod payments;
pub mod plans;
pub mod policy;
pub mod processor;
pub mod reconcile;
pub mod refunds;
pub mod renewals;
pub mod subscriptions;
pub mod topups;
pub mod views;
pub mod webhooks;

use processor::Refused;
use std::sync::Arc;

/// What billing needs, and nothing more: the database, the processor, the
/// portal's links (for emails and fix links), the policy numbers it reads
/// from configuration, and the clock. Billing never sees the application's
/// state (the gateway, the docs, the web layer), so nothing there can come
/// to depend on billing's inside, and billing can be handed a second
/// processor without touching the rest.
#[derive(Clone)]
pub struct Billing {
    pub db: sqlx::PgPool,
    pub processor: Arc<dyn processor::Processor>,
    pub links: Links,
    pub policy: Policy,
    pub clock: crate::clock::Clock,
}

/// Absolute links to the portal's pages.
#[derive(Clone, Debug)]
pub struct Links {
    base: String,
}

impl Links {
    pub fn new(public_url: &url::Url) -> Links {
        Links { base: public_url.as_str().trim_end_matches('/').to_string() }
    }

    /// `path` on the portal, as an absolute URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The numbers of billing's rules that come from configuration (the fixed
/// ones are in [`policy`]).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Days a failed renewal keeps serving before 402.
    pub grace_days: i64,
}

/// Why a billing action could not be done, for the portal to word.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Fields to fix: (field, message).
    #[error("invalid input")]
    Invalid(Vec<(&'static str, String)>),
    #[error("a card is needed first")]
    NoCard,
    /// The processor declined (or refused the card).
    #[error("refused: {0}")]
    Refused(Refused),
    /// Not possible in the subscription's state; the message says why.
    #[error("{0}")]
    State(String),
    /// The price differs from the one shown: the new one, to confirm.
    #[error("the price changed to {0}")]
    PriceChanged(i64),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<payments::CollectError> for BillingError {
    fn from(e: payments::CollectError) -> Self {
        match e {
            payments::CollectError::NoCard => BillingError::NoCard,
            payments::CollectError::NotCollectable(s) => {
                BillingError::State(format!("This invoice is {s} and cannot be paid."))
            }
            payments::CollectError::Db(e) => BillingError::Db(e),
        }
    }
}

/// The organization as its processor's customer: its name and its first
/// owner's email.
pub async fn customer(db: &sqlx::PgPool, org: uuid::Uuid) -> Result<processor::Customer, sqlx::Error> {
    let (name, email): (String, Option<String>) = sqlx::query_as(
        "SELECT o.name, (SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
                          WHERE m.org_id = o.id AND m.role = 'owner' ORDER BY m.created_at LIMIT 1)
           FROM organizations o WHERE o.id = $1",
    )
    .bind(org)
    .fetch_one(db)
    .await?;
    Ok(processor::Customer { org, name, email })
}

/// Formats integer minor units for display, for example 2900 USD → "$29.00".
pub fn format_money(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let (major, minor) = (abs / 100, abs % 100);
    match currency.trim() {
        "USD" => format!("{sign}${major}.{minor:02}"),
        "EUR" => format!("{sign}€{major}.{minor:02}"),
        other => format!("{sign}{major}.{minor:02} {other}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_formats_from_minor_units() {
        assert_eq!(super::format_money(2900, "USD"), "$29.00");
        assert_eq!(super::format_money(5, "USD"), "$0.05");
        assert_eq!(super::format_money(-1050, "EUR"), "-€10.50");
        assert_eq!(super::format_money(100, "GBP"), "1.00 GBP");
    }
}
