//! `tollgate bench-usage`: the usage benchmark (end2end/bench/usage.sh runs
//! it on a database of its own). Loads 100 organizations, one with
//! `events` usage events over 90 days (through the rollup triggers, in
//! chunks, with `generate_series`), then times the very functions the pages
//! call, each repeated, and prints p50 and p95:
//! every query behind `/account/usage` for 90 days, the log's first page,
//! a filtered page 100 pages deep; then how fast the usage writer stores
//! events with the rollups and without, and the rollups' lag at 5,000
//! events a second. Nothing here runs in tests; the figures go in the
//! README.

use super::log::{self, Class, LogFilter};
use super::rollups::{self, Span};
use super::Filter;
use crate::gateway::usage::{UsageEvent, UsageSink};
use sqlx::PgPool;
use std::future::Future;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

const ORGS: usize = 100;
const KEYS: usize = 5;
const RUNS: usize = 30;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn timed<T, F, Fut>(name: &str, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    f().await?; // warm
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await?;
        times.push(millis(t.elapsed()));
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let p50 = times[RUNS / 2];
    let p95 = times[(RUNS * 95).div_ceil(100) - 1];
    println!("{name:<58} p50 {p50:>7.2} ms   p95 {p95:>7.2} ms");
    Ok((p50, p95))
}

/// Organizations, their meters and keys; the first is the big one.
async fn organizations(db: &PgPool, now: OffsetDateTime) -> anyhow::Result<(Vec<Uuid>, Vec<Uuid>)> {
    let orgs: Vec<Uuid> = (0..ORGS).map(|_| Uuid::now_v7()).collect();
    for (i, org) in orgs.iter().enumerate() {
        sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $3)")
            .bind(org)
            .bind(format!("Bench {i}"))
            .bind(format!("bench-{i}-{org}"))
            .execute(db)
            .await?;
        sqlx::query("INSERT INTO org_meters (org_id, period_start, included_expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(org)
            .bind(now - time::Duration::days(10))
            .bind(now + time::Duration::days(20))
            .execute(db)
            .await?;
    }
    let mut keys = Vec::new();
    for k in 0..KEYS {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, mode, prefix, last4, token_hash, scopes, created_at)
             VALUES ($1, $2, $3, $4, 'tg_live_bnch', $5, $6, ARRAY['*'], $7)",
        )
        .bind(id)
        .bind(orgs[0])
        .bind(format!("bench key {k}"))
        .bind(if k == KEYS - 1 { "test" } else { "live" })
        .bind(format!("{k:04}"))
        .bind(crate::crypto::sha256(id.as_bytes()).to_vec())
        .bind(now)
        .execute(db)
        .await?;
        keys.push(id);
    }
    Ok((orgs, keys))
}

/// `n` events for `org` spread evenly over the 90 days before `now`:
/// five keys, six endpoints, 93% answered, 3% 402 (two codes), 2% 429,
/// 1% 404, 1% 500.
async fn load(db: &PgPool, org: Uuid, keys: &[Uuid], n: i64, now: OffsetDateTime, tag: &str) -> anyhow::Result<()> {
    const CHUNK: i64 = 500_000;
    let span_us: i64 = 90 * 86_400 * 1_000_000;
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        sqlx::query(
            "INSERT INTO usage_events (request_id, org_id, api_key_id, mode, endpoint, method, status, problem_code, credits,
                                       credits_purchased, latency_us, problem_body, at)
             SELECT $7 || i, $1, ($2::uuid[])[1 + (i / 100) % 5], CASE WHEN (i / 100) % 5 = 4 THEN 'test' ELSE 'live' END,
                    (ARRAY['ping', 'text.sentiment', 'text.summarize', 'chat', 'embed', 'search'])[1 + (i / 7) % 6],
                    CASE WHEN i % 6 = 0 THEN 'GET' ELSE 'POST' END, s.status, s.code,
                    CASE WHEN s.status = 200 THEN 1 ELSE 0 END, CASE WHEN s.status = 200 AND i % 10 = 0 THEN 1 ELSE 0 END,
                    300 + (i * 7919) % 40000,
                    CASE WHEN s.status = 402 THEN jsonb_build_object('code', s.code, 'status', 402) END,
                    $3::timestamptz - make_interval(secs => ((i * ($4::int8 / $5::int8)) % $4::int8) / 1e6)
               FROM generate_series($6::int8, $8::int8 - 1) i,
                    LATERAL (SELECT CASE WHEN i % 100 < 93 THEN 200::int2 WHEN i % 100 < 95 THEN 402::int2 WHEN i % 100 = 95 THEN 402::int2
                                         WHEN i % 100 < 98 THEN 429::int2 WHEN i % 100 = 98 THEN 404::int2 ELSE 500::int2 END AS status,
                                    CASE WHEN i % 100 BETWEEN 93 AND 94 THEN 'insufficient_credits' WHEN i % 100 = 95 THEN 'plan_upgrade_required'
                                         WHEN i % 100 BETWEEN 96 AND 97 THEN 'rate_limited' WHEN i % 100 = 98 THEN 'not_found' END AS code) s",
        )
        .bind(org)
        .bind(keys)
        .bind(now)
        .bind(span_us)
        .bind(n.max(1))
        .bind(from)
        .bind(tag)
        .bind(to)
        .execute(db)
        .await?;
        from = to;
    }
    Ok(())
}

pub async fn run(db: &PgPool, events: i64) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    println!("loading: {ORGS} organizations, {events} usage events for one of them over 90 days (others 10,000 each)");
    let t = Instant::now();
    // Partitions for the 90 days (and the week ahead).
    for d in -92..=super::partitions::AHEAD_DAYS {
        let day = now.date() + time::Duration::days(d);
        sqlx::query("SELECT usage_partition_ensure($1)").bind(day).execute(db).await?;
    }
    let (orgs, keys) = organizations(db, now).await?;
    load(db, orgs[0], &keys, events, now, "req_big_").await?;
    for (i, org) in orgs.iter().enumerate().skip(1) {
        load(db, *org, &keys, 10_000, now, &format!("req_o{i}_")).await?;
    }
    sqlx::query("ANALYZE").execute(db).await?;
    println!("loaded in {:.0} s (through the rollup triggers)", t.elapsed().as_secs_f64());
    let big = orgs[0];
    let all = Filter::default();
    let by_key = Filter { key: Some(keys[1]), mode: None };

    println!("\n/account/usage, 90 days, {RUNS} runs each:");
    let mut page_p95 = 0.0;
    page_p95 += timed("series (daily, all keys)", || rollups::series(db, big, Span::Days(90), &all, now)).await?.1;
    page_p95 += timed("endpoints (calls, 402s, credits, p50/p95)", || rollups::endpoints(db, big, Span::Days(90), &all, now)).await?.1;
    page_p95 += timed("outlook (balances, included used, forecast)", || super::outlook::outlook(db, big, now)).await?.1;
    timed("series, filtered by one key", || rollups::series(db, big, Span::Days(90), &by_key, now)).await?;
    timed("endpoints, filtered by one key", || rollups::endpoints(db, big, Span::Days(90), &by_key, now)).await?;
    timed("series (hourly, 24 h)", || rollups::series(db, big, Span::Hours24, &all, now)).await?;
    timed("CSV export (90 days)", || rollups::export(db, big, Span::Days(90), &all, now)).await?;
    timed("dashboard: today's calls and 402s", || rollups::today(db, big, now)).await?;
    timed("dashboard: last refused call", || log::last_refused(db, big)).await?;
    println!("{:<58} p95 sum {page_p95:.2} ms", "the page's three queries together");

    println!("\n/account/logs:");
    timed("first page", || async { log::page(db, big, &LogFilter::default(), None, log::PAGE).await.map(|_| ()) }).await?;
    let filter = LogFilter { class: Some(Class::PaymentRequired), key: Some(keys[2]), ..Default::default() };
    let deep = hundred_pages(db, big, &filter).await?;
    timed("filtered (402, one key), 100 pages deep", || async {
        log::page(db, big, &filter, deep.as_ref(), log::PAGE).await.map(|_| ())
    })
    .await?;
    let by_code = LogFilter { code: Some("plan_upgrade_required".into()), ..Default::default() };
    let deep = hundred_pages(db, big, &by_code).await?;
    timed("filtered (one problem code), 100 pages deep", || async {
        log::page(db, big, &by_code, deep.as_ref(), log::PAGE).await.map(|_| ())
    })
    .await?;
    // The worst case: filters that match nothing read every refused call
    // of the retention window to say so.
    let none = LogFilter { class: Some(Class::PaymentRequired), endpoint: Some("ping".into()), mode: Some(crate::api_keys::Mode::Test), ..Default::default() };
    timed("filtered, matching nothing (402 of a test key on ping)", || async {
        log::page(db, big, &none, None, log::PAGE).await.map(|_| ())
    })
    .await?;

    println!("\nrollups (the usage writer, batches of up to 500):");
    for (label, enabled) in [("with rollups", true), ("without rollups", false), ("with rollups", true), ("without rollups", false)] {
        let toggle = if enabled { "ENABLE" } else { "DISABLE" };
        sqlx::query(&format!("ALTER TABLE usage_events {toggle} TRIGGER usage_rollup_insert")).execute(db).await?;
        let rate = flat_out(db, orgs[1], &keys, 100_000).await?;
        println!("{:<58} {rate:>9.0} events/s", format!("writer flat out, {label}"));
    }
    sqlx::query("ALTER TABLE usage_events ENABLE TRIGGER usage_rollup_insert").execute(db).await?;
    let lag = at_rate(db, orgs[2], &keys, 5_000, 10).await?;
    println!("{:<58} {lag:>9.0} ms", "lag at 5,000 events/s for 10 s (last event to its rollup)");
    Ok(())
}

/// The cursor 100 pages into the log under `filter`.
async fn hundred_pages(db: &PgPool, org: Uuid, filter: &LogFilter) -> anyhow::Result<Option<log::Cursor>> {
    let mut cursor = None;
    for page in 0..100 {
        let (_, next) = log::page(db, org, filter, cursor.as_ref(), log::PAGE).await?;
        anyhow::ensure!(next.is_some(), "the filter has only {page} pages");
        cursor = next;
    }
    Ok(cursor)
}

fn event(org: Uuid, keys: &[Uuid], i: u64, at: OffsetDateTime) -> UsageEvent {
    UsageEvent {
        request_id: format!("req_w_{}_{i}", Uuid::now_v7().simple()),
        org_id: org,
        api_key_id: Some(keys[(i % 4) as usize]),
        mode: "live".into(),
        endpoint: ["ping", "text.sentiment", "chat"][(i % 3) as usize].into(),
        method: "POST".into(),
        status: if i % 50 == 0 { 402 } else { 200 },
        problem_code: (i % 50 == 0).then(|| "insufficient_credits".into()),
        credits: 0,
        latency_us: 500 + (i % 5000) as i64,
        problem_body: None,
        at,
        settles_hold: false,
    }
}

/// Events a second the writer stores when fed as fast as it takes them.
async fn flat_out(db: &PgPool, org: Uuid, keys: &[Uuid], n: u64) -> anyhow::Result<f64> {
    let sink = UsageSink::start(db.clone());
    let t = Instant::now();
    let now = OffsetDateTime::now_utc();
    for i in 0..n {
        sink.record(event(org, keys, i, now)).await;
    }
    sink.flush().await;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Feeds `rate` events a second for `secs` seconds; returns how long after
/// the last one its rollup shows all of them.
async fn at_rate(db: &PgPool, org: Uuid, keys: &[Uuid], rate: u64, secs: u64) -> anyhow::Result<f64> {
    let before: Option<i64> = sqlx::query_scalar("SELECT sum(calls)::int8 FROM usage_hourly WHERE org_id = $1").bind(org).fetch_one(db).await?;
    let sink = UsageSink::start(db.clone());
    let tick = Duration::from_millis(10);
    let per_tick = rate / 100;
    let start = Instant::now();
    let mut i = 0;
    for t in 0..secs * 100 {
        let now = OffsetDateTime::now_utc();
        for _ in 0..per_tick {
            sink.record(event(org, keys, i, now)).await;
            i += 1;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + tick * (t as u32 + 1))).await;
    }
    let last = Instant::now();
    let want = before.unwrap_or(0) + i as i64;
    loop {
        let seen: Option<i64> = sqlx::query_scalar("SELECT sum(calls)::int8 FROM usage_hourly WHERE org_id = $1").bind(org).fetch_one(db).await?;
        if seen.unwrap_or(0) >= want {
            return Ok(millis(last.elapsed()));
        }
        if last.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the rollups fell behind by more than a minute");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
