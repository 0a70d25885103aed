//! Fix-page visits: a 402's `resolution` links carry `ref`, the refused
//! request's id (src/gateway/problem.rs). When a member who may fix billing
//! (owner, admin, billing) opens a billing page with one, the first visit is
//! recorded for that refusal, which is how the console's recovery funnel
//! knows the 402 led to the fix page (never by guessing from times). Only a
//! live 402 of the visitor's own organization is recorded: a `ref` naming
//! another organization's request, a test-mode refusal, no refusal at all,
//! or a member who cannot see the page records nothing, so the rows are
//! bounded by an organization's own 402s. The usage writer batches events
//! (20 ms), so a refusal not written yet is looked for again twice within
//! two seconds, off the request. The page is served the same either way.

use crate::accounts::sessions;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

/// The pages a resolution link leads to.
const FIX_PAGES: [&str; 5] = ["/billing", "/billing/plans", "/billing/top-up", "/billing/payment-methods", "/billing/limits"];

/// `ref`'s value, when it has the shape of a request id.
fn reference(query: Option<&str>) -> Option<String> {
    let query = query?;
    let value = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "ref")?.1;
    let ok = (5..=64).contains(&value.len()) && value.starts_with("req_") && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| value.into_owned())
}

pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let page = req.uri().path().trim_end_matches('/');
    if req.method() == http::Method::GET && FIX_PAGES.contains(&page) {
        if let (Some(rid), Some(session)) = (reference(req.uri().query()), req.extensions().get::<Session>()) {
            let page = page.to_string();
            if let Err(e) = visit(&state, session, &rid, &page).await {
                tracing::warn!(error = %e, "cannot record a fix page visit");
            }
        }
    }
    next.run(req).await
}

async fn visit(state: &AppState, session: &Session, rid: &str, page: &str) -> Result<(), sqlx::Error> {
    let Some(user) = sessions::user_id(session).await else {
        return Ok(());
    };
    let Some(m) = super::web::session_membership(&state.db, session, user).await? else {
        return Ok(());
    };
    if !m.role.manages_billing() {
        return Ok(());
    }
    let now = state.clock.now();
    if crate::admin::recovery::record_visit(&state.db, m.org_id, Some(user), rid, page, now).await? {
        return Ok(());
    }
    let (db, org, rid, page) = (state.db.clone(), m.org_id, rid.to_string(), page.to_string());
    tokio::spawn(async move {
        for wait in [300u64, 1500] {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            match crate::admin::recovery::record_visit(&db, org, Some(user), &rid, &page, now).await {
                Ok(false) => continue,
                Ok(true) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record a fix page visit");
                    break;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reference;

    #[test]
    fn only_a_request_id_is_a_reference() {
        assert_eq!(reference(Some("credits=1000&ref=req_0192abc&return_to=%2Fexplorer")).as_deref(), Some("req_0192abc"));
        assert_eq!(reference(Some("ref=req_1%27%3B--")), None);
        assert_eq!(reference(Some("ref=abc")), None);
        assert_eq!(reference(Some("credits=1")), None);
        assert_eq!(reference(None), None);
    }
}
