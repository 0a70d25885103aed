//! OpenAPI 3.1 for `/v1`, generated from the endpoint and problem catalogues
//! the gateway itself runs on, so the document cannot drift from the code.

use crate::config::Config;
use crate::gateway::catalogue::{Code, Pricing, ALL, ENDPOINTS};
use crate::gateway::problem::{Facts, Problem};
use crate::gateway::routes::Route;
use serde_json::{json, Map, Value};

/// Which problems each endpoint can answer with.
fn problems_for(endpoint_id: &str) -> Vec<Code> {
    ALL.into_iter()
        .filter(|c| match c {
            Code::NotFound | Code::InvalidPath | Code::UpstreamFailed | Code::UpstreamTimeout => {
                false
            }
            Code::ValidationFailed | Code::PayloadTooLarge => endpoint_id != "ping",
            Code::InsufficientCredits | Code::SpendCapReached => endpoint_id != "ping",
            _ => true,
        })
        .collect()
}

/// An example body of `code` for a call to `path`, as the docs and the
/// OpenAPI document show it.
pub fn example(code: Code, config: &Config, path: &str) -> Value {
    let facts = Facts {
        instance: path.to_string(),
        request_id: "req_0193a0b4c5d67e8f9a0b1c2d3e4f5a6b".into(),
        balance: Some(2),
        required: Some(5),
        suggested_plan: Some("pro".into()),
        plan: Some("free".into()),
        retry_after_ms: Some(1000),
        spend_cap: Some(5000),
        period_spent: Some(4998),
        scope: Some("text".into()),
        errors: vec![("text".into(), "Is required.".into())],
        detail: None,
        payment_error: Some(("card_declined".into(), Some("insufficient_funds".into()))),
    };
    Problem::new(code, &facts, config).body
}

/// Problems a provider route can answer with: the gateway's own checks and
/// the upstream's failures (its other answers pass through as they are).
fn problems_for_route() -> Vec<Code> {
    ALL.into_iter()
        .filter(|c| {
            !matches!(
                c,
                Code::NotFound | Code::ValidationFailed | Code::PayloadTooLarge
            )
        })
        .collect()
}

fn success(description: &str) -> Value {
    json!({
        "description": format!("{description} Metered responses carry Request-Id, RateLimit-Policy, RateLimit and Tollgate-Credits-Remaining (and Tollgate-Warning when something will stop soon)."),
        "headers": {
            "Request-Id": {"schema": {"type": "string"}},
            "RateLimit-Policy": {"schema": {"type": "string"}},
            "RateLimit": {"schema": {"type": "string"}},
            "Tollgate-Credits-Remaining": {"schema": {"type": "string"}},
            "Tollgate-Warning": {"schema": {"type": "string"}}
        },
        "content": {"application/json": {"schema": {"type": "object"}}}
    })
}

/// The 200 and every problem response of one operation, grouped by status.
fn responses(ok: Value, codes: Vec<Code>, config: &Config, path: &str) -> Map<String, Value> {
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    let mut by_status: std::collections::BTreeMap<u16, Vec<Code>> = Default::default();
    for c in codes {
        by_status.entry(c.status().as_u16()).or_default().push(c);
    }
    for (status, codes) in by_status {
        let examples: Map<String, Value> = codes
            .iter()
            .map(|c| {
                (
                    c.as_str().to_string(),
                    json!({"summary": c.title(), "value": example(*c, config, path)}),
                )
            })
            .collect();
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("Problem: {}", names.join(", ")),
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "examples": examples}}
            }),
        );
    }
    responses
}

fn simulate_parameter() -> Value {
    json!({"name": "Tollgate-Simulate", "in": "header", "required": false,
           "description": "Test keys only: answer with this problem code's exact body.",
           "schema": {"type": "string", "enum": ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()}})
}

/// `routes`: the active provider routes, documented beside the built-in API.
pub fn document(config: &Config, routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let responses = responses(success("Success."), problems_for(e.id), config, e.path);
        let price = match e.pricing {
            Pricing::Free => "free".to_string(),
            Pricing::PerCall(n) => format!("{n} credit(s) per call"),
            Pricing::PerHundredWords => "1 credit per started 100 words of input".to_string(),
        };
        let mut op = json!({
            "operationId": e.id,
            "summary": e.summary,
            "description": format!("Scope: `{}`. Price: {price}.", e.scope),
            "security": [{"apiKey": []}],
            "parameters": [simulate_parameter()],
            "responses": responses,
        });
        if e.method == "POST" {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string", "maxLength": crate::sample_api::MAX_TEXT_CHARS},
                                   "max_sentences": {"type": "integer", "minimum": 1, "maximum": 20}}
                }}}
            });
        }
        paths.insert(e.path.to_string(), json!({ e.method.to_lowercase(): op }));
    }
    for r in routes {
        let path = format!("{}/{{path}}", r.path_prefix);
        let ok =
            success("The upstream's answer, passed on as it is, with Tollgate-Credits-Charged.");
        let responses = responses(ok, problems_for_route(), config, &r.path_prefix);
        let plans = if r.plans.is_empty() {
            "every plan".to_string()
        } else {
            r.plans.join(", ")
        };
        let mut item = Map::new();
        for method in ["get", "post", "put", "patch", "delete"] {
            item.insert(method.into(), json!({
                "operationId": format!("{}_{method}", r.endpoint),
                "summary": if r.description.is_empty() { r.endpoint.clone() } else { r.description.clone() },
                "description": format!("Proxied to the provider's upstream. Scope: `{}`. Price: {}. Plans: {plans}.", r.scope, r.price_label()),
                "security": [{"apiKey": []}],
                "parameters": [
                    {"name": "path", "in": "path", "required": true, "description": "Any path below the prefix, passed on to the upstream.", "schema": {"type": "string"}},
                    simulate_parameter()
                ],
                "responses": responses.clone(),
            }));
        }
        paths.insert(path, Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tollgate API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Every error is an RFC 9457 problem whose `type` is a page explaining the fix."},
        "servers": [{"url": config.url("")}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "tg_live_… or tg_test_…"}},
            "schemas": {"Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail", "code", "request_id", "resolution", "support"],
                "properties": {
                    "type": {"type": "string", "format": "uri"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "instance": {"type": "string"}, "code": {"type": "string"},
                    "request_id": {"type": "string"}, "support": {"type": "string"},
                    "balance": {"type": "object"}, "required": {"type": "object"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                    "resolution": {"type": "array", "items": {"type": "object",
                        "properties": {"action": {"type": "string"}, "label": {"type": "string"}, "href": {"type": "string", "format": "uri"}}}}
                }
            }}
        }
    })
}
