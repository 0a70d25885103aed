//! Domain errors as the UI shows them, in one place: a form error with a
//! message (and messages next to fields), or an [`AppError`]. Internal causes
//! never reach the UI; they are logged with the request id, which the
//! message quotes.

use crate::accounts::AccountsError;
use crate::api_keys::KeyError;
use crate::billing::BillingError;
use crate::gateway::routes::RouteError;
use app::backend::{Caller, FormError};
use app::error::AppError;
use std::fmt::Display;

/// Logs an internal failure and says which request it was.
pub fn internal(caller: &Caller, e: impl Display) -> AppError {
    tracing::error!(request_id = %caller.request_id, error = %e, "portal request failed");
    AppError::Internal {
        request_id: caller.request_id.clone(),
    }
}

/// "only owners …" → "Only owners ….".
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

fn minutes(secs: i64) -> String {
    let m = (secs + 59) / 60;
    format!("{m} minute{}", if m == 1 { "" } else { "s" })
}

/// Every domain error a form can meet, as one.
pub enum Refusal {
    Accounts(AccountsError),
    Billing(BillingError),
    Keys(KeyError),
    Routes(RouteError),
}

impl From<AccountsError> for Refusal {
    fn from(e: AccountsError) -> Self {
        Refusal::Accounts(e)
    }
}

impl From<BillingError> for Refusal {
    fn from(e: BillingError) -> Self {
        Refusal::Billing(e)
    }
}

impl From<KeyError> for Refusal {
    fn from(e: KeyError) -> Self {
        Refusal::Keys(e)
    }
}

impl From<RouteError> for Refusal {
    fn from(e: RouteError) -> Self {
        Refusal::Routes(e)
    }
}

fn invalid(fields: Vec<(&'static str, String)>) -> FormError {
    FormError {
        message: "Please correct the highlighted fields.".into(),
        fields: fields
            .into_iter()
            .map(|(f, m)| (f.to_string(), m))
            .collect(),
    }
}

const GONE: &str = "That no longer exists. The page shows what is there now.";

fn went_wrong(caller: &Caller, e: impl Display) -> FormError {
    let AppError::Internal { request_id } = internal(caller, e) else {
        unreachable!("internal() is always Internal")
    };
    FormError::message(format!(
        "Something went wrong on our side (request {request_id}). Please try again."
    ))
}

/// What a form says when the domain refused it.
pub fn form(caller: &Caller, err: impl Into<Refusal>) -> FormError {
    match err.into() {
        Refusal::Accounts(e) => accounts(caller, e),
        Refusal::Keys(KeyError::Invalid(fields)) => invalid(fields),
        Refusal::Keys(KeyError::Forbidden(why)) => FormError::message(sentence(why)),
        Refusal::Keys(KeyError::NotFound) => FormError::message(GONE),
        Refusal::Keys(KeyError::Db(e)) => went_wrong(caller, e),
        Refusal::Routes(RouteError::Invalid(fields)) => invalid(fields),
        Refusal::Routes(RouteError::NotFound) => FormError::message(GONE),
        Refusal::Routes(RouteError::Db(e)) => went_wrong(caller, e),
        Refusal::Billing(e) => billing(caller, e),
    }
}

fn billing(caller: &Caller, err: BillingError) -> FormError {
    match err {
        BillingError::Invalid(fields) => invalid(fields),
        BillingError::NoCard => FormError::message("Add a card first: there is no card on file to charge."),
        BillingError::Refused(r) => FormError {
            message: format!("{} ({}{})", r.message(), r.code, r.decline_code.map(|d| format!(": {d}")).unwrap_or_default()),
            fields: Vec::new(),
        },
        BillingError::State(why) => FormError::message(why),
        BillingError::PriceChanged(minor) => FormError::message(format!(
            "The amount due changed to {} since the page was shown. Check it and confirm again.",
            crate::billing::format_money(minor, "USD")
        )),
        BillingError::NotFound => FormError::message(GONE),
        BillingError::Db(e) => went_wrong(caller, e),
    }
}

fn accounts(caller: &Caller, err: AccountsError) -> FormError {
    let message = |m: &str| FormError::message(m);
    match err {
        AccountsError::Invalid(fields) => invalid(fields),
        AccountsError::InvalidCredentials => message("Wrong email or password."),
        AccountsError::Throttled { retry_after_secs } => FormError::message(format!(
            "Too many failed sign-ins. Sign-in is paused for this account: try again in {}, or reset your password.",
            minutes(retry_after_secs)
        )),
        AccountsError::AddressThrottled {
            action,
            retry_after_secs,
        } => FormError::message(format!(
            "Too many {action} from your network. This is paused for your address: try again in {}.",
            minutes(retry_after_secs)
        )),
        AccountsError::InvalidToken => {
            message("This link is invalid, already used, or expired. Ask for a new one.")
        }
        AccountsError::Forbidden(why) => FormError::message(sentence(why)),
        AccountsError::NotFound => message(GONE),
        e @ (AccountsError::Db(_) | AccountsError::Hashing(_)) => went_wrong(caller, e),
    }
}

/// A database failure behind a page.
pub fn page(caller: &Caller, e: sqlx::Error) -> AppError {
    internal(caller, e)
}
