//! Holes in the gateway's money and routing, each reproduced against a real
//! upstream on a real port: path tricks that reach another route, a release
//! across a period's end, reservations that outlive their call, and test keys
//! that spent the live rate limit.

use crate::gateway::{assert_ledger_balanced, customer};
use crate::helpers::*;
use crate::routes::{add_route, admin_of, balance};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http_body_util::BodyExt;
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tollgate::billing::ledger::{Account, Kind, Posting};
use tower::ServiceExt;
use uuid::Uuid;

/// An upstream on a real port that records every path it receives. Paths
/// under `/gate/` wait until the gate opens; `/gate/fail` then answers 500,
/// other gated paths 200 with `Tollgate-Cost: 3`.
#[derive(Clone, Default)]
struct Recorder {
    paths: Arc<Mutex<Vec<String>>>,
    gate: Arc<Notify>,
}

impl Recorder {
    async fn start() -> (Recorder, String) {
        async fn any_path(State(r): State<Recorder>, req: Request) -> Response {
            let path = req.uri().path().to_string();
            r.paths.lock().unwrap().push(path.clone());
            if path.starts_with("/gate/") {
                r.gate.notified().await;
                if path == "/gate/fail" {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
                }
                return ([("tollgate-cost", "3")], "late answer").into_response();
            }
            format!("reached {path}").into_response()
        }
        let r = Recorder::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(any(any_path)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, format!("http://{addr}"))
    }

    fn seen(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

async fn route(ops: &mut TestApp, prefix: &str, upstream: &str, price: &str, plans: &[&str]) {
    let mut fields = vec![
        ("path_prefix", prefix),
        ("upstream_url", upstream),
        ("endpoint", &prefix[4..]),
        ("scope", "ai"),
        ("pricing", "fixed"),
        ("price", price),
    ];
    let names: Vec<String> = (0..plans.len()).map(|i| format!("plans[{i}]")).collect();
    for (n, p) in names.iter().zip(plans) {
        fields.push((n.as_str(), p));
    }
    let page = add_route(ops, &fields).await;
    assert!(page.body.contains(prefix), "{}", page.body);
}

/// Starts a call in its own task, as a client whose request is in flight.
fn call_in_flight(
    app: &TestApp,
    path: &str,
    key: &str,
) -> tokio::task::JoinHandle<(StatusCode, axum::http::HeaderMap, String)> {
    let router = app.router.clone();
    let req = axum::http::Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    tokio::spawn(async move {
        let res = router.oneshot(req).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    })
}

async fn open_holds(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM gateway_holds")
        .fetch_one(db)
        .await
        .unwrap()
}

async fn wait_for_hold(db: &PgPool) {
    for _ in 0..200 {
        if open_holds(db).await == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the call never reserved");
}

async fn add_purchased(db: &PgPool, org: Uuid, amount: i64) {
    let mut conn = db.acquire().await.unwrap();
    tollgate::billing::ledger::post(
        &mut conn,
        Posting {
            org,
            kind: Kind::Adjustment,
            key: &format!("purchase:{org}:{amount}"),
            entries: &[
                (Account::Purchased, amount),
                (Account::Adjustments, -amount),
            ],
            memo: "test",
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
}

#[sqlx::test]
async fn path_tricks_never_reach_another_route_or_another_upstream_path(db: PgPool) {
    let (rec, up) = Recorder::start().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    // A cheap route on the Free plan and a pricey one for Pro only, on the
    // same upstream host.
    route(&mut ops, "/v1/cheap", &format!("{up}/cheap"), "1", &[]).await;
    route(
        &mut ops,
        "/v1/pricey",
        &format!("{up}/pricey"),
        "50",
        &["pro"],
    )
    .await;
    let before = balance(&db, org).await;

    let tricks = [
        "/v1/cheap/..\\pricey\\run",
        "/v1/cheap/..\\..\\anything",
        "/v1/cheap\\..\\pricey",
        "/v1/cheap/%5cpricey",
        "/v1/cheap/..%5Cpricey%5Crun",
        "/v1/cheap/%2e%2e/pricey/run",
        "/v1/cheap/%2E%2E/pricey/run",
        "/v1/cheap/.%2e/pricey/run",
        "/v1/cheap/%2e./pricey/run",
        "/v1/cheap%2f..%2fpricey%2frun",
        "/v1/cheap/..%2Fpricey",
        "/v1/cheap/../pricey/run",
        "/v1/cheap/./../pricey/run",
        "/v1/cheap/%252e%252e/pricey",
        "/v1/cheap/%252f",
        "/v1/cheap/..",
        "/v1/cheap/..;/pricey/run",
        "/v1/cheap;x/../pricey",
        "/v1/cheap//pricey",
        "/v1/cheap/%70ricey",
        "/v1/cheap/%%32%65%%32%65/pricey",
    ];
    for trick in tricks {
        let res = app.call("GET", trick, Some(&key), None, &[]).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{trick}: {}", res.body);
        assert_eq!(res.json()["code"], "invalid_path", "{trick}");
    }
    assert_eq!(
        rec.seen(),
        Vec::<String>::new(),
        "no trick reached the upstream"
    );
    assert_eq!(balance(&db, org).await, before, "and none was charged");

    // Plain paths still go where they belong, and the Pro route stays Pro's.
    let ok = app
        .call("GET", "/v1/cheap/run/a.b", Some(&key), None, &[])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, "reached /cheap/run/a.b");
    let pro = app
        .call("GET", "/v1/pricey/run", Some(&key), None, &[])
        .await;
    assert_eq!(pro.json()["code"], "plan_upgrade_required");
    assert_eq!(rec.seen(), vec!["/cheap/run/a.b".to_string()]);
    assert_eq!(balance(&db, org).await, before - 1);
}

#[sqlx::test]
async fn a_release_after_the_period_ended_goes_to_expired_and_the_ledger_agrees(db: PgPool) {
    let (rec, up) = Recorder::start().await;
    let (mut app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    route(&mut ops, "/v1/gated", &format!("{up}/gate"), "10", &[]).await;
    add_purchased(&db, org, 50).await;

    // A call reserves 10 of the 100 included credits, and waits upstream.
    let first = call_in_flight(&app, "/v1/gated/fail", &key);
    wait_for_hold(&db).await;
    // The period ends; the next charged call lapses the 90 included credits.
    let end: time::OffsetDateTime =
        sqlx::query_scalar("SELECT included_expires_at FROM org_meters WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    app.clock
        .advance(end - app.clock.now() + time::Duration::minutes(1));
    let text = Some(r#"{"text": "fine"}"#);
    let second = app
        .call("POST", "/v1/text/sentiment", Some(&key), text, &[])
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    // The first call's upstream fails: its 10 credits come back, to expired.
    rec.gate.notify_one();
    let (status, _, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let included: i64 = sqlx::query_scalar("SELECT included FROM org_meters WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(included, 0, "credits of an ended period do not come back");
    assert_ledger_balanced(&db).await;
    app.clock.advance(time::Duration::seconds(1));
    let third = app
        .call("POST", "/v1/text/sentiment", Some(&key), text, &[])
        .await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);

    let (included, purchased): (i64, i64) =
        sqlx::query_as("SELECT included, purchased FROM org_meters WHERE org_id = $1")
            .bind(org)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((included, purchased), (0, 48));
    let expired: i64 = sqlx::query_scalar(
        "SELECT sum(amount)::bigint FROM ledger_entries WHERE org_id = $1 AND account = 'expired'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        expired, 100,
        "90 lapsed at the end, 10 more with the release"
    );
    assert_ledger_balanced(&db).await;
}

/// Breaks (or mends) settling, as an unreachable database would.
/// Moves every hold's deadline into the past on the database's clock (the
/// clock the deadline is counted on), as if the deadline had passed.
async fn deadlines_pass(db: &PgPool) {
    sqlx::query("UPDATE gateway_holds SET settle_after = clock_timestamp() - interval '1 second'")
        .execute(db)
        .await
        .unwrap();
}

async fn settling_works(db: &PgPool, works: bool) {
    let sql = if works {
        "ALTER FUNCTION broken_release(text, bigint, timestamptz) RENAME TO gateway_release"
    } else {
        "ALTER FUNCTION gateway_release(text, bigint, timestamptz) RENAME TO broken_release"
    };
    sqlx::query(sql).execute(db).await.unwrap();
}

#[sqlx::test]
async fn a_reservation_whose_call_never_settled_is_given_back_by_the_job(db: PgPool) {
    let (rec, up) = Recorder::start().await;
    let (app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    let upstream = format!("{up}/gate");
    add_route(
        &mut ops,
        &[
            ("path_prefix", "/v1/llm"),
            ("upstream_url", &upstream),
            ("endpoint", "llm"),
            ("scope", "ai"),
            ("pricing", "metered"),
            ("price", "60"),
            ("timeout_ms", "1000"),
        ],
    )
    .await;
    let before = balance(&db, org).await;
    // The deadline is counted on the database's clock (the tests' own clock
    // is days behind it): a minute and two timeouts from the database's now.
    let call = call_in_flight(&app, "/v1/llm/x", &key);
    wait_for_hold(&db).await;
    let ahead: f64 = sqlx::query_scalar("SELECT extract(epoch FROM settle_after - clock_timestamp())::float8 FROM gateway_holds")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!((50.0..=70.0).contains(&ahead), "the deadline is {ahead} s from the database's now");
    // While the call waits, the database stops taking the settlement (as if
    // unreachable for longer than the call's retries) ...
    assert_eq!(balance(&db, org).await, before - 60);
    settling_works(&db, false).await;
    rec.gate.notify_one();
    let (status, headers, _) = call.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let cost: i64 = headers["tollgate-credits-charged"].to_str().unwrap().parse().unwrap();
    assert!(cost > 0 && cost < 60, "the upstream reported its cost: {cost}");
    assert_eq!(open_holds(&db).await, 1, "not settled yet");
    // ... and comes back: the call settles in the background with what it
    // cost, not refunded in full by the job later.
    settling_works(&db, true).await;
    for _ in 0..100 {
        if open_holds(&db).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open_holds(&db).await, 0, "settled in the background");
    assert_eq!(balance(&db, org).await, before - cost, "what it cost, the rest released");

    // A call whose settlement never lands (its instance stopped): before the
    // hold's deadline the job leaves it alone, the call could still be
    // running; after it, the whole reservation goes back, once, on any
    // instance.
    let before = balance(&db, org).await;
    let call = call_in_flight(&app, "/v1/llm/x", &key);
    wait_for_hold(&db).await;
    settling_works(&db, false).await;
    rec.gate.notify_one();
    call.await.unwrap();
    app.state.gateway.usage.flush().await;
    let now = app.clock.now();
    let job = |at| tollgate::gateway::holds::settle_lapsed(&db, at);
    assert_eq!(job(now).await.unwrap(), 0);
    assert_eq!(balance(&db, org).await, before - 60);
    // The deadline passes (the call's background retries then leave it to
    // the job), and the database takes settlements again.
    deadlines_pass(&db).await;
    settling_works(&db, true).await;
    let later = now + time::Duration::seconds(63);
    let (a, b) = tokio::join!(job(later), job(later));
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(job(later).await.unwrap(), 0);
    assert_eq!(balance(&db, org).await, before);
    assert_eq!(open_holds(&db).await, 0);
    // The usage events end up saying what each call finally cost.
    tollgate::gateway::usage::recover(
        &db,
        later + time::Duration::minutes(10),
        time::Duration::minutes(5),
    )
    .await
    .unwrap();
    let mut credits: Vec<i64> =
        sqlx::query_scalar("SELECT credits FROM usage_events WHERE endpoint = 'llm'")
            .fetch_all(&db)
            .await
            .unwrap();
    credits.sort();
    assert_eq!(credits, vec![0, cost]);
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn a_call_that_outlives_its_hold_is_settled_once_and_charged_nothing(db: PgPool) {
    let (rec, up) = Recorder::start().await;
    let (app, key, org) = customer(&db).await;
    let mut ops = admin_of(&app).await;
    route(&mut ops, "/v1/slow", &format!("{up}/gate"), "40", &[]).await;
    let before = balance(&db, org).await;
    let call = call_in_flight(&app, "/v1/slow/x", &key);
    wait_for_hold(&db).await;
    // The job, run long after the deadline, settles first ...
    deadlines_pass(&db).await;
    let later = app.clock.now() + time::Duration::hours(1);
    assert_eq!(
        tollgate::gateway::holds::settle_lapsed(&db, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(balance(&db, org).await, before);
    // ... so the late answer finds nothing to settle: it moves nothing more.
    rec.gate.notify_one();
    let (status, headers, _) = call.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("tollgate-credits-charged").unwrap(),
        "0",
        "the whole reservation went back"
    );
    assert_eq!(balance(&db, org).await, before);
    let releases: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND kind = 'refund'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(releases, 1);
    assert_ledger_balanced(&db).await;
}

#[sqlx::test]
async fn test_keys_never_spend_the_live_rate_limit(db: PgPool) {
    let (mut app, live, _) = customer(&db).await;
    let test = app.create_key("ci", "test", &["*"], "never").await;
    // The Free plan allows 5 calls a second; the clock stands still.
    let text = Some(r#"{"text": "fine"}"#);
    for (method, path, body) in [
        ("GET", "/v1/ping", None),
        ("POST", "/v1/text/sentiment", text),
    ] {
        let mut sandbox = 0;
        while app.call(method, path, Some(&test), body, &[]).await.status == StatusCode::OK {
            sandbox += 1;
            assert!(sandbox <= 5, "the test key's limiter holds");
        }
        assert_eq!(sandbox, 5, "{path}");
        for n in 0..5 {
            let res = app.call(method, path, Some(&live), body, &[]).await;
            assert_eq!(
                res.status,
                StatusCode::OK,
                "live call {n} on {path}: {}",
                res.body
            );
        }
        let over = app.call(method, path, Some(&live), body, &[]).await;
        assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
        app.clock.advance(time::Duration::seconds(2));
    }
}

#[sqlx::test]
async fn usage_events_still_queued_at_shutdown_are_written_before_the_server_stops(db: PgPool) {
    let (app, key, org) = customer(&db).await;
    let state = tollgate::state::AppState::start(
        db.clone(),
        tollgate::config::Config::for_tests(),
        app.clock.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tollgate::startup::serve_on(state, listener, async {
        let _ = stopped.await;
    }));
    // The key's row is busy: the batch of these calls (which also moves the
    // key's last-used time) cannot commit yet.
    let mut busy = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM api_keys WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .execute(&mut *busy)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client
            .get(format!("http://{addr}/v1/ping"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        app.clock.advance(time::Duration::seconds(1));
    }
    // Stop the server while the events wait; the table frees up a little later.
    stop.send(()).unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        busy.commit().await.unwrap();
    });
    server.await.unwrap().unwrap();
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM usage_events WHERE org_id = $1 AND endpoint = 'ping'",
    )
    .bind(org)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(written, 3, "the server stopped only after writing them");
}
