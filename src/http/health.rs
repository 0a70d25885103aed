//! `/healthz`: the process is alive. `/readyz`: it can reach the database.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Prometheus's text format, for a scraper holding the token
/// (`TOLLGATE_METRICS_TOKEN`); without one configured, no such page.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(token) = &state.config.metrics_token else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !crate::metrics::authorized(&token.0, given) {
        return (StatusCode::UNAUTHORIZED, [(axum::http::header::WWW_AUTHENTICATE, "Bearer")], "a metrics token is needed\n").into_response();
    }
    let body = crate::metrics::get().render(&[("portal", &state.db), ("gateway", &state.gateway.db)]);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let check = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db),
    )
    .await;
    match check {
        Ok(Ok(_)) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok"})),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "error"})),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": "timeout"})),
        ),
    }
}
