//! Metrics in Prometheus's text format, at `GET /metrics` behind a bearer
//! token from configuration (`TOLLGATE_METRICS_TOKEN`; unset, the route
//! answers 404). One registry per process, of counters and histograms kept
//! in atomics (the gateway's hot path takes no lock to count: a labelled
//! series is looked up under a read lock and created once), and gauges read
//! when scraped (the pools). The README's "Metrics" lists every series.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// The sum in microseconds (an integer, so it adds atomically).
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}

/// Batch-size buckets, in calls.
const SIZES: [u64; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];

#[derive(Default)]
struct Sizes {
    buckets: [AtomicU64; SIZES.len()],
    count: AtomicU64,
    sum: AtomicU64,
}

impl Sizes {
    fn observe(&self, n: u64) {
        for (i, le) in SIZES.iter().enumerate() {
            if n <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(n, Ordering::Relaxed);
    }
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its help, its type, and its series by labels.
struct Family<T> {
    help: &'static str,
    series: RwLock<BTreeMap<Labels, T>>,
}

impl<T: Default> Family<T> {
    fn new(help: &'static str) -> Self {
        Family { help, series: RwLock::new(BTreeMap::new()) }
    }

    fn with<R>(&self, labels: &[(&'static str, &str)], f: impl Fn(&T) -> R) -> R {
        let key: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(t) = self.series.read().expect("metrics lock").get(&key) {
            return f(t);
        }
        let mut w = self.series.write().expect("metrics lock");
        f(w.entry(key).or_default())
    }
}

pub struct Metrics {
    decisions: Family<AtomicU64>,
    latency: Family<Histogram>,
    upstream: Family<Histogram>,
    rate_claims: Family<AtomicU64>,
    job_runs: Family<AtomicU64>,
    job_duration: Family<Histogram>,
    cache: Family<AtomicU64>,
    leases: Family<AtomicU64>,
    lease_credits: AtomicU64,
    batch_sizes: Sizes,
    batch_commit: Family<Histogram>,
}

/// The process's registry.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        decisions: Family::new("Gateway answers, by outcome (served, refused, failed) and problem code (empty when served)."),
        latency: Family::new("Time from a /v1 request's arrival to its answer, by outcome."),
        upstream: Family::new("Time a provider route's upstream took to answer (headers), by route endpoint."),
        rate_claims: Family::new("Blocks of rate-limit tokens claimed from the shared limiter, by outcome (granted, refused)."),
        job_runs: Family::new("Periodic job runs, by job and result (ok, failed, skipped: another instance ran it)."),
        job_duration: Family::new("Time a periodic job's run took, by job."),
        cache: Family::new("Decisions in memory, by event: hit, miss (read from the database), invalidated (a change was announced)."),
        leases: Family::new("Credit leases, by event: taken, returned, reclaimed (expired, closed by any instance)."),
        lease_credits: AtomicU64::new(0),
        batch_sizes: Sizes::default(),
        batch_commit: Family::new("Time the journal took to commit a batch of charges (on disk), retries included."),
    })
}

impl Metrics {
    /// A gateway answer.
    pub fn decision(&self, outcome: &str, code: &str, took: Duration) {
        self.decisions.with(&[("outcome", outcome), ("code", code)], |c| c.fetch_add(1, Ordering::Relaxed));
        self.latency.with(&[("outcome", outcome)], |h| h.observe(took));
    }

    pub fn upstream(&self, endpoint: &str, took: Duration) {
        self.upstream.with(&[("endpoint", endpoint)], |h| h.observe(took));
    }

    pub fn rate_claim(&self, granted: bool) {
        let outcome = if granted { "granted" } else { "refused" };
        self.rate_claims.with(&[("outcome", outcome)], |c| c.fetch_add(1, Ordering::Relaxed));
    }

    pub fn job(&self, job: &str, result: &str, took: Duration) {
        self.job_runs.with(&[("job", job), ("result", result)], |c| c.fetch_add(1, Ordering::Relaxed));
        if result != "skipped" {
            self.job_duration.with(&[("job", job)], |h| h.observe(took));
        }
    }

    pub fn cache(&self, event: &str) {
        self.cache.with(&[("event", event)], |c| c.fetch_add(1, Ordering::Relaxed));
    }

    /// A lease event; `credits`: what a taken lease moved into escrow.
    pub fn lease(&self, event: &str, credits: i64) {
        self.lease_n(event, 1);
        if credits > 0 {
            self.lease_credits.fetch_add(credits as u64, Ordering::Relaxed);
        }
    }

    pub fn lease_n(&self, event: &str, n: u64) {
        self.leases.with(&[("event", event)], |c| c.fetch_add(n, Ordering::Relaxed));
    }

    /// A batch of `calls` charges committed by the journal in `took`.
    pub fn journal(&self, calls: usize, took: Duration) {
        self.batch_sizes.observe(calls as u64);
        self.batch_commit.with(&[], |h| h.observe(took));
    }

    /// The text exposition of every series, with the pools' gauges.
    pub fn render(&self, pools: &[(&str, &sqlx::PgPool)]) -> String {
        let mut out = String::new();
        counters(&mut out, "tollgate_gateway_decisions_total", &self.decisions);
        histograms(&mut out, "tollgate_gateway_latency_seconds", &self.latency);
        histograms(&mut out, "tollgate_upstream_latency_seconds", &self.upstream);
        counters(&mut out, "tollgate_rate_limit_claims_total", &self.rate_claims);
        counters(&mut out, "tollgate_job_runs_total", &self.job_runs);
        histograms(&mut out, "tollgate_job_duration_seconds", &self.job_duration);
        counters(&mut out, "tollgate_decision_cache_total", &self.cache);
        counters(&mut out, "tollgate_credit_leases_total", &self.leases);
        let _ = writeln!(out, "# HELP tollgate_credit_leased_credits_total Credits moved into escrow by the leases taken.");
        let _ = writeln!(out, "# TYPE tollgate_credit_leased_credits_total counter");
        let _ = writeln!(out, "tollgate_credit_leased_credits_total {}", self.lease_credits.load(Ordering::Relaxed));
        let b = &self.batch_sizes;
        let _ = writeln!(out, "# HELP tollgate_journal_batch_calls Calls per batch the journal committed.");
        let _ = writeln!(out, "# TYPE tollgate_journal_batch_calls histogram");
        for (i, le) in SIZES.iter().enumerate() {
            let _ = writeln!(out, "tollgate_journal_batch_calls_bucket{{le=\"{le}\"}} {}", b.buckets[i].load(Ordering::Relaxed));
        }
        let count = b.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "tollgate_journal_batch_calls_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "tollgate_journal_batch_calls_sum {}", b.sum.load(Ordering::Relaxed));
        let _ = writeln!(out, "tollgate_journal_batch_calls_count {count}");
        histograms(&mut out, "tollgate_journal_commit_seconds", &self.batch_commit);
        let _ = writeln!(out, "# HELP tollgate_db_pool_connections Database connections of a pool, by pool and state.");
        let _ = writeln!(out, "# TYPE tollgate_db_pool_connections gauge");
        for (name, pool) in pools {
            let size = pool.size() as usize;
            let idle = pool.num_idle();
            let _ = writeln!(out, "tollgate_db_pool_connections{{pool=\"{name}\",state=\"idle\"}} {idle}");
            let _ = writeln!(out, "tollgate_db_pool_connections{{pool=\"{name}\",state=\"busy\"}} {}", size.saturating_sub(idle));
            let _ = writeln!(out, "tollgate_db_pool_connections{{pool=\"{name}\",state=\"max\"}} {}", pool.options().get_max_connections());
        }
        out
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn counters(out: &mut String, name: &str, family: &Family<AtomicU64>) {
    let _ = writeln!(out, "# HELP {name} {}", family.help);
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, c) in family.series.read().expect("metrics lock").iter() {
        let _ = writeln!(out, "{name}{} {}", label_text(labels, None), c.load(Ordering::Relaxed));
    }
}

fn histograms(out: &mut String, name: &str, family: &Family<Histogram>) {
    let _ = writeln!(out, "# HELP {name} {}", family.help);
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in family.series.read().expect("metrics lock").iter() {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{} {}", label_text(labels, Some(("le", le.to_string()))), h.buckets[i].load(Ordering::Relaxed));
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{} {count}", label_text(labels, Some(("le", "+Inf".into()))));
        let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{} {count}", label_text(labels, None));
    }
}

/// Whether `header` (an `Authorization` value) carries `token`, compared in
/// constant time.
pub fn authorized(token: &str, header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    use subtle::ConstantTimeEq;
    let a = crate::crypto::sha256(given.trim().as_bytes());
    let b = crate::crypto::sha256(token.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_label_values_escaped() {
        let m = Metrics {
            decisions: Family::new("d"),
            latency: Family::new("l"),
            upstream: Family::new("u"),
            rate_claims: Family::new("r"),
            job_runs: Family::new("j"),
            job_duration: Family::new("jd"),
            cache: Family::new("c"),
            leases: Family::new("le"),
            lease_credits: AtomicU64::new(0),
            batch_sizes: Sizes::default(),
            batch_commit: Family::new("b"),
        };
        m.journal(3, Duration::from_millis(2));
        m.lease("taken", 500);
        m.decision("refused", "insufficient_credits", Duration::from_micros(1500));
        m.decision("refused", "insufficient_credits", Duration::from_millis(30));
        m.upstream("we\"ird\\", Duration::from_millis(1));
        let text = m.render(&[]);
        assert!(text.contains("tollgate_gateway_decisions_total{outcome=\"refused\",code=\"insufficient_credits\"} 2"), "{text}");
        assert!(text.contains("tollgate_gateway_latency_seconds_bucket{outcome=\"refused\",le=\"0.001\"} 0"));
        assert!(text.contains("tollgate_gateway_latency_seconds_bucket{outcome=\"refused\",le=\"0.002\"} 1"));
        assert!(text.contains("tollgate_gateway_latency_seconds_bucket{outcome=\"refused\",le=\"0.05\"} 2"));
        assert!(text.contains("tollgate_gateway_latency_seconds_bucket{outcome=\"refused\",le=\"+Inf\"} 2"));
        assert!(text.contains("tollgate_gateway_latency_seconds_sum{outcome=\"refused\"} 0.0315"));
        assert!(text.contains("endpoint=\"we\\\"ird\\\\\""), "{text}");
        assert!(text.contains("tollgate_journal_batch_calls_bucket{le=\"2\"} 0\ntollgate_journal_batch_calls_bucket{le=\"5\"} 1"), "{text}");
        assert!(text.contains("tollgate_credit_leases_total{event=\"taken\"} 1") && text.contains("tollgate_credit_leased_credits_total 500"), "{text}");
    }

    #[test]
    fn the_token_is_needed_exactly() {
        assert!(authorized("s3cret-token", Some("Bearer s3cret-token")));
        assert!(!authorized("s3cret-token", Some("Bearer s3cret-tokenx")));
        assert!(!authorized("s3cret-token", Some("s3cret-token")));
        assert!(!authorized("s3cret-token", None));
    }
}
