//! What the gateway knows by name: the problem codes of the error catalogue
//! and the built-in endpoints. The docs pages (`content/errors/<code>.md`),
//! the OpenAPI document and the tests all read these lists.

use axum::http::StatusCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyExpired,
    ApiKeySuspended,
    ScopeForbidden,
    InsufficientCredits,
    PlanUpgradeRequired,
    SubscriptionPendingApproval,
    SubscriptionPastDue,
    SubscriptionExpired,
    PaymentMethodRequired,
    SpendCapReached,
    RateLimited,
    ValidationFailed,
    NotFound,
    UpstreamFailed,
    UpstreamTimeout,
    InvalidPath,
    PayloadTooLarge,
}

pub const ALL: [Code; 19] = [
    Code::InvalidApiKey,
    Code::ApiKeyRevoked,
    Code::ApiKeyExpired,
    Code::ApiKeySuspended,
    Code::ScopeForbidden,
    Code::InsufficientCredits,
    Code::PlanUpgradeRequired,
    Code::SubscriptionPendingApproval,
    Code::SubscriptionPastDue,
    Code::SubscriptionExpired,
    Code::PaymentMethodRequired,
    Code::SpendCapReached,
    Code::RateLimited,
    Code::ValidationFailed,
    Code::NotFound,
    Code::UpstreamFailed,
    Code::UpstreamTimeout,
    Code::InvalidPath,
    Code::PayloadTooLarge,
];

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidApiKey => "invalid_api_key",
            Code::ApiKeyRevoked => "api_key_revoked",
            Code::ApiKeyExpired => "api_key_expired",
            Code::ApiKeySuspended => "api_key_suspended",
            Code::ScopeForbidden => "scope_forbidden",
            Code::InsufficientCredits => "insufficient_credits",
            Code::PlanUpgradeRequired => "plan_upgrade_required",
            Code::SubscriptionPendingApproval => "subscription_pending_approval",
            Code::SubscriptionPastDue => "subscription_past_due",
            Code::SubscriptionExpired => "subscription_expired",
            Code::PaymentMethodRequired => "payment_method_required",
            Code::SpendCapReached => "spend_cap_reached",
            Code::RateLimited => "rate_limited",
            Code::ValidationFailed => "validation_failed",
            Code::NotFound => "not_found",
            Code::UpstreamFailed => "upstream_failed",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::InvalidPath => "invalid_path",
            Code::PayloadTooLarge => "payload_too_large",
        }
    }

    pub fn parse(s: &str) -> Option<Code> {
        ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidApiKey | Code::ApiKeyRevoked | Code::ApiKeyExpired => {
                StatusCode::UNAUTHORIZED
            }
            Code::ScopeForbidden | Code::ApiKeySuspended => StatusCode::FORBIDDEN,
            Code::InsufficientCredits
            | Code::PlanUpgradeRequired
            | Code::SubscriptionPendingApproval
            | Code::SubscriptionPastDue
            | Code::SubscriptionExpired
            | Code::PaymentMethodRequired
            | Code::SpendCapReached => StatusCode::PAYMENT_REQUIRED,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Code::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Code::InvalidPath => StatusCode::BAD_REQUEST,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Code::InvalidApiKey => "Invalid API key",
            Code::ApiKeyRevoked => "API key revoked",
            Code::ApiKeyExpired => "API key expired",
            Code::ApiKeySuspended => "API keys suspended",
            Code::ScopeForbidden => "Scope not granted",
            Code::InsufficientCredits => "Insufficient credits",
            Code::PlanUpgradeRequired => "Plan upgrade required",
            Code::SubscriptionPendingApproval => "Subscription pending approval",
            Code::SubscriptionPastDue => "Subscription past due",
            Code::SubscriptionExpired => "Subscription expired",
            Code::PaymentMethodRequired => "Payment method required",
            Code::SpendCapReached => "Spend cap reached",
            Code::RateLimited => "Too many requests",
            Code::ValidationFailed => "Validation failed",
            Code::NotFound => "Not found",
            Code::UpstreamFailed => "Upstream failed",
            Code::UpstreamTimeout => "Upstream timed out",
            Code::InvalidPath => "Invalid path",
            Code::PayloadTooLarge => "Request body too large",
        }
    }
}

/// How a built-in endpoint is priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pricing {
    Free,
    /// Credits per call.
    PerCall(i64),
    /// One credit per started 100 words of input.
    PerHundredWords,
}

#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub id: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub scope: &'static str,
    pub pricing: Pricing,
    pub summary: &'static str,
}

pub const ENDPOINTS: [Endpoint; 3] = [
    Endpoint {
        id: "ping",
        method: "GET",
        path: "/v1/ping",
        scope: "ping",
        pricing: Pricing::Free,
        summary: "Checks the key and the connection. Free.",
    },
    Endpoint {
        id: "sentiment",
        method: "POST",
        path: "/v1/text/sentiment",
        scope: "text",
        pricing: Pricing::PerCall(1),
        summary: "Scores the sentiment of a text. 1 credit.",
    },
    Endpoint {
        id: "summarize",
        method: "POST",
        path: "/v1/text/summarize",
        scope: "text",
        pricing: Pricing::PerHundredWords,
        summary: "Summarizes a text. 1 credit per started 100 words of input; Pro and up.",
    },
];

pub fn endpoint(method: &str, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method == method && e.path == path)
}
