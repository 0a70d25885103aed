//! `POST /webhooks/{processor}`: a payment processor's signed events. The
//! signature scheme and what an event means are billing's
//! (`billing::webhooks`, `billing::payments::apply_event`); this is only the
//! HTTP edge: the body limit, the processor's name, the answer a processor
//! reads (2xx applied or seen before, 409 retry later, 4xx never again).

use crate::billing::processor::EventRefused;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use time::OffsetDateTime;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/{processor}", post(receive))
        .layer(DefaultBodyLimit::max(64 * 1024))
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], serde_json::json!({"message": message}).to_string()).into_response()
}

async fn receive(State(state): State<AppState>, Path(processor): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    use crate::billing::payments::{apply_event, EventError};
    // Only the processor taking the payments: the other's events (a
    // sandbox's on a Stripe deployment) are nobody's.
    let active = &state.billing.processor;
    if processor != active.name() {
        return answer(StatusCode::NOT_FOUND, "no such processor");
    }
    let wall = OffsetDateTime::now_utc().unix_timestamp();
    let event = match active.read_event(&headers, &body, wall) {
        Ok(e) => e,
        Err(EventRefused::Signature(e)) => {
            tracing::warn!(processor = %processor, reason = %e, "webhook refused");
            return answer(StatusCode::BAD_REQUEST, "signature refused");
        }
        Err(EventRefused::Malformed(e)) => {
            tracing::warn!(processor = %processor, error = %e, "webhook is not an event");
            return answer(StatusCode::BAD_REQUEST, "not an event");
        }
    };
    match apply_event(&state.billing, active.name(), &event, state.clock.now()).await {
        Ok(applied) => answer(StatusCode::OK, applied.as_str()),
        // Perhaps ahead of its charge's record: the processor retries.
        Err(EventError::UnknownCharge) => answer(StatusCode::CONFLICT, "unknown charge; retry later"),
        Err(EventError::Mismatch) => answer(StatusCode::UNPROCESSABLE_ENTITY, "event does not match its charge"),
        Err(EventError::Db(e)) => {
            tracing::error!(error = %e, event = %event.id, "webhook could not be applied");
            answer(StatusCode::SERVICE_UNAVAILABLE, "retry later")
        }
    }
}
