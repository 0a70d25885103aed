//! The gateway's decision for one call, as `gateway_check` and
//! `gateway_authorize` return it, decoded strictly: an outcome or mode that
//! no variant names is a decode error (answered 500 and logged with the
//! request id), never a default.

use super::catalogue::Code;
use crate::api_keys::Mode;
use time::OffsetDateTime;
use uuid::Uuid;

/// Whether the call goes on, or which problem ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused(Code),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused(code) => code.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "ok" => Some(Outcome::Ok),
            other => Code::parse(other).map(Outcome::Refused),
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

crate::text_sqlx!(Outcome);

/// The row `gateway_check` and `gateway_authorize` return.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Decision {
    pub outcome: Outcome,
    pub key_id: Option<Uuid>,
    pub org_id: Option<Uuid>,
    pub mode: Option<Mode>,
    pub plan_code: Option<String>,
    pub rate_per_sec: Option<i32>,
    pub rate_remaining: Option<i32>,
    pub retry_after_ms: Option<i64>,
    /// Available after this call (or when refused).
    pub balance: Option<i64>,
    pub charged: Option<i64>,
    pub suggested_plan: Option<String>,
    pub in_grace_until: Option<OffsetDateTime>,
    pub spend_cap: Option<i64>,
    pub period_spent: Option<i64>,
    /// The organization's low-balance alert threshold.
    pub low_balance_at: Option<i64>,
    /// The credits this call reserved from a lease, when it was paid that
    /// way (not from the database's row).
    #[sqlx(skip)]
    pub lease: Option<super::leases::Reservation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_exactly() {
        assert_eq!(Outcome::parse("ok"), Some(Outcome::Ok));
        for code in crate::gateway::catalogue::ALL {
            assert_eq!(Outcome::parse(code.as_str()), Some(Outcome::Refused(code)));
        }
        assert_eq!(Outcome::parse("invalid_api_keys"), None);
        assert_eq!(Outcome::parse(""), None);
    }
}
