//! The admin console.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::form::{submit, Form, Needs, Success};

#[server(endpoint = "admin_outbox")]
pub async fn get_admin_outbox() -> Result<Vec<OutboxEntry>, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.outbox(&caller).await
}

#[server(endpoint = "admin_routes")]
pub async fn get_admin_routes() -> Result<RoutesPage, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.routes(&caller).await
}

#[server(endpoint = "save_route")]
#[allow(clippy::too_many_arguments)]
pub async fn save_route(
    csrf: String,
    /// Empty or absent: a new route.
    route_id: Option<String>,
    path_prefix: String,
    upstream_url: String,
    endpoint: String,
    scope: String,
    pricing: String,
    price: String,
    rate_per_1k: Option<String>,
    /// Checkboxes named `plans[i]`; none ticked means every plan.
    plans: Option<Vec<String>>,
    timeout_ms: Option<String>,
    description: Option<String>,
    test_upstream_url: Option<String>,
    test_example: Option<String>,
) -> Result<(), AppError> {
    use crate::backend::RouteForm;
    let form = RouteForm {
        route_id: route_id.unwrap_or_default().trim().to_string(),
        path_prefix,
        upstream_url,
        endpoint,
        scope,
        pricing,
        price,
        rate_per_1k: rate_per_1k.unwrap_or_default(),
        plans: plans.unwrap_or_default(),
        timeout_ms: timeout_ms.unwrap_or_default(),
        description: description.unwrap_or_default(),
        test_upstream_url: test_upstream_url.unwrap_or_default(),
        test_example: test_example.unwrap_or_default(),
    };
    let back = match form.route_id.as_str() {
        "" => "/admin/routes".to_string(),
        // An id that is not one is no route to edit.
        id if id.len() != 36 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => {
            return super::ssr::go("/admin/routes");
        }
        id => format!("/admin/routes?edit={id}"),
    };
    let values = vec![
        ("path_prefix", form.path_prefix.clone()),
        ("upstream_url", form.upstream_url.clone()),
        ("endpoint", form.endpoint.clone()),
        ("scope", form.scope.clone()),
        ("pricing", form.pricing.clone()),
        ("price", form.price.clone()),
        ("rate_per_1k", form.rate_per_1k.clone()),
        ("plans", form.plans.join(",")),
        ("timeout_ms", form.timeout_ms.clone()),
        ("description", form.description.clone()),
        ("test_upstream_url", form.test_upstream_url.clone()),
        ("test_example", form.test_example.clone()),
    ];
    let spec = Form {
        name: "routes",
        back,
        values,
        needs: Needs::Admin,
    };
    submit(spec, &csrf, |c| async move {
        let notice = c.backend.admin.save_route(&c.caller, form).await?;
        Ok(Success::to("/admin/routes").notice("routes", notice))
    })
    .await
}

#[server(endpoint = "set_route_active")]
pub async fn set_route_active(
    csrf: String,
    route_id: String,
    active: String,
) -> Result<(), AppError> {
    let spec = Form {
        name: "routes",
        back: "/admin/routes".into(),
        values: vec![],
        needs: Needs::Admin,
    };
    submit(spec, &csrf, |c| async move {
        let notice = c
            .backend
            .admin
            .set_route_active(&c.caller, route_id, active == "true")
            .await?;
        Ok(Success::to("/admin/routes").notice("routes", notice))
    })
    .await
}

#[server(endpoint = "admin_approvals")]
pub async fn get_admin_approvals() -> Result<Vec<ApprovalView>, AppError> {
    let (backend, caller) = super::ssr::caller().await?;
    backend.admin.approvals(&caller).await
}

#[server(endpoint = "decide_approval")]
pub async fn decide_approval(
    csrf: String,
    org_id: String,
    request: Option<String>,
    decision: String,
    note: Option<String>,
) -> Result<(), AppError> {
    let request = request.unwrap_or_default();
    let note = note.unwrap_or_default();
    let form = Form {
        name: "approvals",
        back: "/admin/approvals".into(),
        values: vec![("note", note.clone())],
        needs: Needs::Admin,
    };
    submit(form, &csrf, |c| async move {
        let notice = c
            .backend
            .admin
            .decide_approval(&c.caller, org_id, request, decision == "approve", note)
            .await?;
        Ok(Success::to("/admin/approvals").notice("approvals", notice))
    })
    .await
}
