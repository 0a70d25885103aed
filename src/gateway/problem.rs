//! RFC 9457 problem bodies for every code of the catalogue. `type` is the
//! absolute URL of the code's docs page; `resolution` deep-links to the one
//! portal page that fixes it, with values prefilled and `return_to` set.

use super::catalogue::Code;
use crate::config::Config;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::billing::policy::pack_covering;

/// What the pipeline knew when it refused the call.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub instance: String,
    pub request_id: String,
    pub balance: Option<i64>,
    pub required: Option<i64>,
    pub suggested_plan: Option<String>,
    pub plan: Option<String>,
    pub retry_after_ms: Option<i64>,
    pub spend_cap: Option<i64>,
    pub period_spent: Option<i64>,
    pub scope: Option<String>,
    /// (field, message) for validation_failed.
    pub errors: Vec<(String, String)>,
    pub detail: Option<String>,
    /// The processor's (code, decline code) of the failed payment behind a
    /// 402, when there is one.
    pub payment_error: Option<(String, Option<String>)>,
}

pub struct Problem {
    pub code: Code,
    pub body: Value,
    pub retry_after_secs: Option<i64>,
}

/// Where fixes send the customer back to.
const RETURN_TO: &str = "/explorer";

/// A fix page's link: its prefilled values, the way back, and `ref`, the
/// refused request's id, by which the console attributes the visit to this
/// refusal (src/admin/recovery.rs).
fn fix_link(config: &Config, path: &str, params: &[(&str, String)], request_id: &str) -> String {
    let mut url = url::Url::parse(&config.url(path)).expect("the public URL joins with a path");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        q.append_pair("return_to", RETURN_TO);
        if !request_id.is_empty() {
            q.append_pair("ref", request_id);
        }
    }
    url.to_string()
}

fn action(action: &str, label: &str, href: String) -> Value {
    json!({"action": action, "label": label, "href": href})
}

/// "1 credit", "5 credits".
fn count(n: i64) -> String {
    if n == 1 {
        "1 credit".into()
    } else {
        format!("{n} credits")
    }
}

/// "pro" → "Pro", for sentences.
fn plan_name(code: &str) -> String {
    let mut c = code.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn credits(n: i64) -> Value {
    json!({"amount": n.to_string(), "unit": "credit"})
}

impl Problem {
    pub fn new(code: Code, facts: &Facts, config: &Config) -> Problem {
        let docs = config.url(&format!("/docs/errors/{}", code.as_str()));
        let keys = || {
            vec![action(
                "manage_api_keys",
                "Manage API keys",
                config.url("/account/keys"),
            )]
        };
        let balance = facts.balance.unwrap_or(0);
        let required = facts.required.unwrap_or(0);
        let plan = facts.plan.clone().unwrap_or_default();
        let fix = |path: &str, params: &[(&str, String)]| fix_link(config, path, params, &facts.request_id);
        let (detail, resolution): (String, Vec<Value>) = match code {
            Code::InvalidApiKey => (
                "The request has no API key, or the key is not one we issued. Send it as \"Authorization: Bearer tg_…\".".into(),
                keys(),
            ),
            Code::ApiKeyRevoked => ("This API key was revoked. Create a new key, or use the key that replaced it.".into(), keys()),
            Code::ApiKeyExpired => ("This API key has expired. Create a new key.".into(), keys()),
            Code::ApiKeySuspended => (
                "Our team has suspended this organization's API keys. No payment lifts a suspension; contact support, quoting this request id.".into(),
                vec![action("read_docs", "About suspended keys", docs.clone())],
            ),
            Code::ScopeForbidden => (
                format!(
                    "This API key lacks the \"{}\" scope this endpoint needs. Create a key with that scope.",
                    facts.scope.clone().unwrap_or_default()
                ),
                keys(),
            ),
            Code::InsufficientCredits => {
                let missing = (required - balance).max(1);
                let pack = pack_covering(missing);
                (
                    format!("This call costs {}; your balance is {balance}.", count(required)),
                    vec![action("top_up_credits", "Top up credits", fix("/billing/top-up", &[("credits", pack.to_string())]))],
                )
            }
            Code::PlanUpgradeRequired => match facts.suggested_plan.clone() {
                Some(to) => (
                    format!("Your {} plan does not include this endpoint; the {} plan does.", plan_name(&plan), plan_name(&to)),
                    vec![action("upgrade_plan", &format!("Upgrade to {}", plan_name(&to)), fix("/billing/plans", &[("plan", to.clone())]))],
                ),
                // No plan on offer includes it.
                None => (
                    format!("Your {} plan does not include this endpoint.", plan_name(&plan)),
                    vec![action("upgrade_plan", "See the plans", fix("/billing/plans", &[]))],
                ),
            },
            Code::SubscriptionPendingApproval => (
                "Your subscription is waiting for approval by our team; calls start working as soon as it is approved.".into(),
                vec![action("view_subscription", "See your subscription's status", fix("/billing", &[]))],
            ),
            Code::SubscriptionPastDue => (
                "Your subscription's renewal payment failed and its grace period has ended. Update your card to retry the payment and restore access at once.".into(),
                vec![action("update_payment_method", "Update your card", fix("/billing/payment-methods", &[]))],
            ),
            Code::SubscriptionExpired => (
                "Your subscription has ended. Renew it to call the API again.".into(),
                vec![action("renew_subscription", "Renew your subscription", fix("/billing/plans", &[("renew", "1".into())]))],
            ),
            Code::PaymentMethodRequired => (
                "Your plan needs a card on file (the trial has ended). Add a card to continue.".into(),
                vec![action("add_payment_method", "Add a card", fix("/billing/payment-methods", &[]))],
            ),
            Code::SpendCapReached => (
                format!(
                    "This call costs {}, and this month's spend cap of {} would be exceeded ({} spent).",
                    count(required),
                    count(facts.spend_cap.unwrap_or(0)),
                    facts.period_spent.unwrap_or(0)
                ),
                vec![action("raise_spend_cap", "Raise your spend cap", fix("/billing/limits", &[]))],
            ),
            Code::RateLimited => (
                format!("Too many requests for your {} plan's rate limit; retry after the time in Retry-After.", plan_name(&plan)),
                vec![action("read_docs", "How rate limits work", docs.clone())],
            ),
            Code::ValidationFailed => (
                "The request is not valid; `errors` names each problem.".into(),
                vec![action("read_docs", "Read the endpoint's reference", config.url("/docs/errors/validation_failed"))],
            ),
            Code::NotFound => (
                "There is no endpoint at this path and method.".into(),
                vec![action("read_docs", "See the API reference", config.url("/openapi.json"))],
            ),
            Code::UpstreamFailed => (
                "The service behind this endpoint failed. You were not charged; retry in a moment.".into(),
                vec![action("read_docs", "About upstream errors", docs.clone())],
            ),
            Code::UpstreamTimeout => (
                "The service behind this endpoint did not answer in time. You were not charged; retry in a moment.".into(),
                vec![action("read_docs", "About upstream errors", docs.clone())],
            ),
            Code::InvalidPath => (
                "The path contains a backslash, an encoded slash, backslash, dot or percent sign, or a \".\" or \"..\" segment; the gateway does not forward such paths.".into(),
                vec![action("read_docs", "See the API reference", config.url("/openapi.json"))],
            ),
            Code::PayloadTooLarge => (
                format!("The request body is larger than this endpoint accepts ({} KiB). You were not charged.", crate::gateway::MAX_BODY / 1024),
                vec![action("read_docs", "About request limits", docs.clone())],
            ),
        };
        let mut body = Map::new();
        body.insert("type".into(), Value::String(docs));
        body.insert("title".into(), Value::String(code.title().into()));
        body.insert("status".into(), json!(code.status().as_u16()));
        body.insert(
            "detail".into(),
            Value::String(facts.detail.clone().unwrap_or(detail)),
        );
        body.insert("instance".into(), Value::String(facts.instance.clone()));
        body.insert("code".into(), Value::String(code.as_str().into()));
        body.insert("request_id".into(), Value::String(facts.request_id.clone()));
        match code {
            Code::InsufficientCredits | Code::SpendCapReached => {
                body.insert(
                    "balance".into(),
                    json!({"available": balance.to_string(), "unit": "credit"}),
                );
                body.insert("required".into(), credits(required));
            }
            Code::PlanUpgradeRequired => {
                body.insert("plan".into(), Value::String(plan));
                body.insert("required_plan".into(), json!(facts.suggested_plan));
            }
            Code::ValidationFailed => {
                let errors: Vec<Value> = facts
                    .errors
                    .iter()
                    .map(|(f, m)| json!({"field": f, "message": m}))
                    .collect();
                body.insert("errors".into(), Value::Array(errors));
            }
            _ => {}
        }
        if let Some((pcode, decline)) = facts
            .payment_error
            .as_ref()
            .filter(|_| matches!(code, Code::SubscriptionPastDue | Code::PaymentMethodRequired))
        {
            body.insert("payment_error".into(), json!({"code": pcode, "decline_code": decline}));
        }
        if let Some(ms) = facts.retry_after_ms.filter(|_| code == Code::RateLimited) {
            body.insert("retry_after".into(), json!(((ms + 999) / 1000).max(1)));
        }
        body.insert("resolution".into(), Value::Array(resolution));
        body.insert(
            "support".into(),
            Value::String(config.support_contact.clone()),
        );
        Problem {
            code,
            body: Value::Object(body),
            retry_after_secs: facts
                .retry_after_ms
                .filter(|_| code == Code::RateLimited)
                .map(|ms| ((ms + 999) / 1000).max(1)),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status: StatusCode = self.code.status();
        let mut res = (
            status,
            serde_json::to_string(&self.body).unwrap_or_default(),
        )
            .into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // Marks a problem of the gateway's own: an upstream's `Tollgate-*`
        // headers never pass the proxy, so a client (the explorer's
        // problem card) can tell these from a body an upstream made up.
        h.insert(
            "tollgate-problem",
            HeaderValue::from_static(self.code.as_str()),
        );
        match status {
            StatusCode::PAYMENT_REQUIRED => {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tollgate\", error=\"invalid_token\""),
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let secs = self.retry_after_secs.unwrap_or(1);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
            }
            _ => {}
        }
        res
    }
}
