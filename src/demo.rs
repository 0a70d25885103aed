//! Demo data for the run command: the default plans, a platform admin and a
//! demo customer with an organization, and two weeks of that organization's
//! calls that moved no credits (free pings, refusals), so the usage pages
//! and the request log have something to show while the ledger stays exact.
//! Idempotent: existing accounts are kept, usage is added once.

use crate::accounts::{organizations, password, users, Email};
use sqlx::PgPool;
use time::OffsetDateTime;

pub const ADMIN_EMAIL: &str = "admin@tollgate.local";
pub const ADMIN_PASSWORD: &str = "tollgate-admin-demo";
pub const CUSTOMER_EMAIL: &str = "demo@tollgate.local";
pub const CUSTOMER_PASSWORD: &str = "tollgate-demo-customer";

pub async fn seed(db: &PgPool, now: OffsetDateTime) -> anyhow::Result<()> {
    crate::billing::plans::ensure_defaults(db).await?;
    let admin = Email::parse(ADMIN_EMAIL).map_err(anyhow::Error::msg)?;
    if users::by_email(db, &admin).await?.is_none() {
        let hash = password::hash(ADMIN_PASSWORD.into()).await?;
        let mut conn = db.acquire().await?;
        users::insert(&mut conn, &admin, "Platform Admin", &hash, true, now).await?;
    }
    let customer = Email::parse(CUSTOMER_EMAIL).map_err(anyhow::Error::msg)?;
    if users::by_email(db, &customer).await?.is_none() {
        let hash = password::hash(CUSTOMER_PASSWORD.into()).await?;
        let mut tx = db.begin().await?;
        let id = users::insert(&mut tx, &customer, "Dana Demo", &hash, false, now).await?;
        crate::accounts::verify::mark_verified(&mut tx, id, now).await?;
        organizations::create_with_owner(&mut tx, "Demo Co", id, now).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Two weeks of the demo organization's free calls: pings answered, a few
/// `/v1/text/summarize` calls refused with 402 plan_upgrade_required and a
/// few 429s, each refusal with the body the gateway gives. None moves a
/// credit, so the ledger and the usage pages still agree. Once only.
pub async fn seed_usage(db: &PgPool, config: &crate::config::Config, now: OffsetDateTime) -> anyhow::Result<()> {
    use crate::gateway::catalogue::Code;
    use crate::gateway::problem::{Facts, Problem};
    use crate::gateway::usage::{UsageEvent, UsageSink};
    let org: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = $1 LIMIT 1",
    )
    .bind(CUSTOMER_EMAIL)
    .fetch_optional(db)
    .await?;
    let Some(org) = org else { return Ok(()) };
    let seeded: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM usage_events WHERE org_id = $1)").bind(org).fetch_one(db).await?;
    if seeded {
        return Ok(());
    }
    // The usage job makes partitions from yesterday on; older days wait in
    // the default partition until their own are made, so make them now.
    for d in -15..=0 {
        let day = now.to_offset(time::UtcOffset::UTC).date() + time::Duration::days(d);
        sqlx::query("SELECT usage_partition_ensure($1)").bind(day).execute(db).await?;
    }
    let sink = UsageSink::start(db.clone());
    for day in 0..14i64 {
        let calls = 40 + (day * 7) % 30;
        for i in 0..calls {
            let at = now - time::Duration::days(day) - time::Duration::minutes(i * 23 + day * 5);
            let request_id = format!("req_{}", uuid::Uuid::now_v7().simple());
            let (endpoint, method, status, problem) = match i % 20 {
                0 => {
                    let facts = Facts {
                        request_id: request_id.clone(),
                        instance: "/v1/text/summarize".into(),
                        plan: Some("free".into()),
                        suggested_plan: Some("pro".into()),
                        ..Default::default()
                    };
                    ("summarize", "POST", 402, Some(Problem::new(Code::PlanUpgradeRequired, &facts, config)))
                }
                7 if day % 3 == 0 => {
                    let facts = Facts {
                        request_id: request_id.clone(),
                        instance: "/v1/ping".into(),
                        plan: Some("free".into()),
                        retry_after_ms: Some(200),
                        ..Default::default()
                    };
                    ("ping", "GET", 429, Some(Problem::new(Code::RateLimited, &facts, config)))
                }
                _ => ("ping", "GET", 200, None),
            };
            sink.record(UsageEvent {
                request_id,
                org_id: org,
                api_key_id: None,
                mode: "live".into(),
                endpoint: endpoint.into(),
                method: method.into(),
                status,
                problem_code: problem.as_ref().map(|p| p.code.as_str().to_string()),
                credits: 0,
                latency_us: 600 + (i * 997 + day * 131) % 9000,
                problem_body: problem.map(|p| p.body),
                at,
                settles_hold: false,
            })
            .await;
        }
    }
    sink.flush().await;
    Ok(())
}

pub fn print_credentials(public_url: &str) {
    println!();
    println!("  Tollgate demo is ready at {public_url}");
    println!("    platform admin: {ADMIN_EMAIL} / {ADMIN_PASSWORD}");
    println!("    demo customer:  {CUSTOMER_EMAIL} / {CUSTOMER_PASSWORD}");
    println!();
}

/// For the gateway benchmark (end2end/bench/run.sh): `orgs` organizations,
/// each with an owner, `keys` live keys and `credits` purchased credits.
/// Returns the keys' secrets.
pub async fn seed_bench_keys(db: &PgPool, orgs: usize, keys: usize, credits: i64, now: OffsetDateTime) -> anyhow::Result<Vec<String>> {
    crate::billing::plans::ensure_defaults(db).await?;
    let hash = password::hash("bench-owner-password".into()).await?;
    let mut secrets = Vec::with_capacity(orgs * keys);
    for i in 0..orgs {
        let email = Email::parse(&format!("bench-{i}@tollgate.local")).map_err(anyhow::Error::msg)?;
        let mut tx = db.begin().await?;
        let user = users::insert(&mut tx, &email, &format!("Bench Owner {i}"), &hash, false, now).await?;
        crate::accounts::verify::mark_verified(&mut tx, user, now).await?;
        let org = organizations::create_with_owner(&mut tx, &format!("Bench Org {i}"), user, now).await?;
        tx.commit().await?;
        crate::billing::ledger::adjust(
            db,
            org,
            Some(user),
            crate::billing::ledger::Account::Purchased,
            credits,
            "benchmark credits",
            &format!("bench-credits-{org}"),
            now,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        for k in 0..keys {
            let input = crate::api_keys::store::NewKey {
                name: format!("bench {k}"),
                mode: "live".into(),
                scopes: vec!["*".into()],
                expires_in_days: None,
            };
            let (_, secret) = crate::api_keys::store::create(db, org, user, input, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            secrets.push(secret.expose().to_string());
        }
    }
    Ok(secrets)
}
