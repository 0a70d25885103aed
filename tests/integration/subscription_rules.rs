//! One table of subscription states, judged twice: by the Rust predicates
//! the portal and billing use (`Current::live_refusal`, `has_ended`,
//! `in_grace`) and by the gateway's SQL (`gateway_check`, through a live
//! key's call). They must agree on every state. Which plan serves while a
//! request waits for approval is not a money state; billing.rs tests it.

use crate::billing::{add_card, GOOD};
use crate::gateway::customer;
use axum::http::StatusCode;
use sqlx::PgPool;
use time::Duration;
use tollgate::billing::subscriptions::{self, Status};

#[sqlx::test]
async fn the_rust_rules_and_the_gateways_sql_agree_on_every_state(db: PgPool) {
    let (mut app, key, org) = customer(&db).await;
    add_card(&mut app, GOOD).await;
    let statuses = [Status::Active, Status::Trialing, Status::PastDue, Status::Unpaid, Status::Canceled, Status::Expired];
    let hours = |h: Option<i64>| h.map(Duration::hours);
    let mut cases = 0;
    let mut disagreements = Vec::new();
    for status in statuses {
        for period_end in [-1i64, 24] {
            for grace in [None, Some(-1i64), Some(1)] {
                for trial_end in [None, Some(-1i64), Some(1)] {
                    for card in [false, true] {
                        app.clock.advance(Duration::milliseconds(250));
                        let now = app.clock.now();
                        sqlx::query(
                            "UPDATE subscriptions SET status = $2, current_period_end = $3, grace_until = $4, trial_end = $5,
                                    current_period_start = least(current_period_start, $3 - interval '1 hour')
                              WHERE org_id = $1",
                        )
                        .bind(org)
                        .bind(status)
                        .bind(now + Duration::hours(period_end))
                        .bind(hours(grace).map(|g| now + g))
                        .bind(hours(trial_end).map(|t| now + t))
                        .execute(&db)
                        .await
                        .unwrap();
                        sqlx::query("UPDATE payment_methods SET removed_at = CASE WHEN $2 THEN NULL ELSE $3 END WHERE org_id = $1")
                            .bind(org)
                            .bind(card)
                            .bind(now)
                            .execute(&db)
                            .await
                            .unwrap();
                        let sub = subscriptions::current(&db, org).await.unwrap().unwrap();
                        let rust = sub.live_refusal(now, card).map(|r| r.code().as_str().to_string());
                        let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
                        let sql = if res.status == StatusCode::OK { None } else { Some(res.json()["code"].as_str().unwrap_or("?").to_string()) };
                        cases += 1;
                        if rust != sql {
                            disagreements.push(format!(
                                "{status} period_end {period_end}h grace {grace:?} trial_end {trial_end:?} card {card}: rust {rust:?}, gateway {sql:?}"
                            ));
                        }
                        // The predicates agree with each other too.
                        assert_eq!(sub.in_grace(now), status == Status::PastDue && grace.is_some_and(|g| g > 0));
                        assert_eq!(sub.has_ended(now), status == Status::Expired || (status == Status::Canceled && period_end < 0));
                    }
                }
            }
        }
    }
    assert_eq!(cases, 216);
    assert!(disagreements.is_empty(), "{} of {cases} states disagree:\n{}", disagreements.len(), disagreements.join("\n"));
}

#[sqlx::test]
async fn a_transition_the_state_does_not_allow_is_refused_and_changes_nothing(db: PgPool) {
    use tollgate::billing::subscriptions::{transition, Transition, TransitionError};
    let (app, _key, org) = customer(&db).await;
    let now = app.clock.now();
    sqlx::query("UPDATE subscriptions SET status = 'expired' WHERE org_id = $1").bind(org).execute(&db).await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    for t in [Transition::Cancel, Transition::Keep, Transition::WithdrawRequest, Transition::StartTrial { end: now }] {
        let err = transition(&mut conn, org, t.clone(), now).await.unwrap_err();
        assert!(matches!(err, TransitionError::NotAllowed { from: Status::Expired, .. }), "{}: {err}", t.name());
    }
    let status: String = sqlx::query_scalar("SELECT status FROM subscriptions WHERE org_id = $1").bind(org).fetch_one(&db).await.unwrap();
    assert_eq!(status, "expired");
    let missing = transition(&mut conn, uuid::Uuid::now_v7(), Transition::Cancel, now).await.unwrap_err();
    assert!(matches!(missing, TransitionError::Missing));
}
