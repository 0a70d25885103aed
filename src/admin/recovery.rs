//! 402 recovery: for each 402 code over a range, how many refusals led to a
//! fix page, a completed fix and a successful call afterwards, how long that
//! took, what the fixes brought in, and which organizations never recovered.
//!
//! Every step is attributed by record, never by guesswork:
//! - *visited*: the refusal's own `ref` (its request id, in every resolution
//!   link) opened a fix page of its organization (`fix_visits`,
//!   src/portal/visits.rs);
//! - *fixed*: visited, and at or after that visit the organization completed
//!   a fix that lifts the refusal's code ([`lifts`]): a paid invoice (top-up,
//!   plan, renewal) or an audited action (card added, spend cap raised or
//!   removed, trial started, approval granted, plan changed, renewed). The
//!   first such fix is the refusal's;
//! - *recovered*: fixed, and the organization made a successful live call
//!   after the fix.
//!
//! Time to recovery is per episode: the run of an organization's refusals
//! of one code up to the fix that recovered one of them, from the run's first
//! 402 to the first successful call after the fix. Revenue is each fix's
//! invoice counted once per code. It reads the live tables when asked (the
//! usage writer's batch is the only delay, well under 60 s), live mode only:
//! test keys and simulated refusals are not customers' money.

use crate::audit::Action;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// What completes a fix, as the funnel names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    TopUp,
    PlanPaid,
    RenewalPaid,
    CardAdded,
    CapRaised,
    ApprovalGranted,
    TrialStarted,
    PlanChanged,
    Renewed,
}

impl Fix {
    pub fn as_str(self) -> &'static str {
        match self {
            Fix::TopUp => "top_up",
            Fix::PlanPaid => "plan_paid",
            Fix::RenewalPaid => "renewal_paid",
            Fix::CardAdded => "card_added",
            Fix::CapRaised => "cap_raised",
            Fix::ApprovalGranted => "approval_granted",
            Fix::TrialStarted => "trial_started",
            Fix::PlanChanged => "plan_changed",
            Fix::Renewed => "renewed",
        }
    }

    /// The audited actions that complete a fix.
    const AUDITED: [(Action, Fix); 6] = [
        (Action::BillingCardAdded, Fix::CardAdded),
        (Action::BillingLimitsChanged, Fix::CapRaised),
        (Action::SubscriptionApproved, Fix::ApprovalGranted),
        (Action::SubscriptionTrialStarted, Fix::TrialStarted),
        (Action::SubscriptionUpgraded, Fix::PlanChanged),
        (Action::SubscriptionRenewed, Fix::Renewed),
    ];
}

/// The fixes that lift a 402 code.
pub fn lifts(code: &str) -> &'static [Fix] {
    use Fix::*;
    match code {
        "insufficient_credits" => &[TopUp, PlanPaid, PlanChanged],
        "plan_upgrade_required" => &[PlanPaid, PlanChanged, TrialStarted, ApprovalGranted],
        "subscription_pending_approval" => &[ApprovalGranted],
        "subscription_past_due" => &[RenewalPaid, PlanPaid],
        "subscription_expired" => &[PlanPaid, RenewalPaid, Renewed, PlanChanged],
        "payment_method_required" => &[CardAdded],
        "spend_cap_reached" => &[CapRaised],
        _ => &[],
    }
}

/// The funnel of one code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Funnel {
    pub code: String,
    pub refused: i64,
    pub visited: i64,
    pub fixed: i64,
    pub recovered: i64,
    /// Episodes that recovered, and their median and p90 time (seconds).
    pub episodes: i64,
    pub median_secs: Option<i64>,
    pub p90_secs: Option<i64>,
    /// (currency, minor units) the fixes brought in.
    pub revenue: Vec<(String, i64)>,
}

/// An organization whose last run of refusals of a code has not recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecovered {
    pub org: Uuid,
    pub name: String,
    pub code: String,
    pub refused: i64,
    pub visited: bool,
    pub last_refused: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub funnels: Vec<Funnel>,
    pub unrecovered: Vec<Unrecovered>,
}

#[derive(sqlx::FromRow)]
struct Row {
    org_id: Uuid,
    org_name: String,
    code: String,
    at: OffsetDateTime,
    visited_at: Option<OffsetDateTime>,
    fix_id: Option<String>,
    fixed_at: Option<OffsetDateTime>,
    revenue: Option<i64>,
    currency: Option<String>,
    recovered_at: Option<OffsetDateTime>,
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The funnel for the 402s of `[from, to)`, of one organization or all.
pub async fn load(db: &PgPool, from: OffsetDateTime, to: OffsetDateTime, org: Option<Uuid>) -> Result<Recovery, sqlx::Error> {
    let mut codes: Vec<&str> = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    for code in crate::gateway::catalogue::ALL {
        for fix in lifts(code.as_str()) {
            codes.push(code.as_str());
            kinds.push(fix.as_str());
        }
    }
    let actions: Vec<&str> = Fix::AUDITED.iter().map(|(a, _)| a.as_str()).collect();
    let action_kinds: Vec<&str> = Fix::AUDITED.iter().map(|(_, f)| f.as_str()).collect();
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = '10s'").execute(&mut *tx).await?;
    let rows: Vec<Row> = sqlx::query_as(
        "WITH refusals AS (
             SELECT e.request_id, e.org_id, e.problem_code AS code, e.at FROM usage_events e
              WHERE e.status = 402 AND e.mode = 'live' AND e.problem_code IS NOT NULL AND e.at >= $1 AND e.at < $2
                AND ($7::uuid IS NULL OR e.org_id = $7)
         ),
         fixes AS (
             SELECT i.org_id, CASE i.purpose WHEN 'top_up' THEN 'top_up' WHEN 'auto_top_up' THEN 'top_up'
                                              WHEN 'renewal' THEN 'renewal_paid' ELSE 'plan_paid' END AS kind,
                    i.paid_at AS at, i.total_minor AS revenue, i.currency::text AS currency, 'invoice:' || i.id AS fix_id
               FROM invoices i
              WHERE i.status = 'paid' AND i.paid_at >= $1 AND i.org_id IN (SELECT org_id FROM refusals)
             UNION ALL
             SELECT a.org_id, m.kind, a.at, NULL, NULL, 'audit:' || a.id
               FROM audit_log a JOIN unnest($5::text[], $6::text[]) AS m(action, kind) ON m.action = a.action
              WHERE a.at >= $1 AND a.org_id IN (SELECT org_id FROM refusals)
                -- Limits changed lift a spend cap only when the cap went up
                -- or away (entries from before limits kept their state count).
                AND (a.action <> $8 OR a.before IS NULL OR a.after->'spend_cap' = 'null'::jsonb
                     OR (a.after->>'spend_cap')::bigint > coalesce((a.before->>'spend_cap')::bigint, -1))
         )
         SELECT r.org_id, o.name AS org_name, r.code, r.at, v.visited_at, f.fix_id, f.at AS fixed_at, f.revenue,
                f.currency, s.at AS recovered_at
           FROM refusals r
           JOIN organizations o ON o.id = r.org_id
           LEFT JOIN fix_visits v ON v.request_id = r.request_id AND v.org_id = r.org_id AND v.visited_at >= r.at
           LEFT JOIN LATERAL (
                SELECT x.* FROM fixes x
                 WHERE x.org_id = r.org_id AND x.at >= v.visited_at
                   AND EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS l(code, kind) WHERE l.code = r.code AND l.kind = x.kind)
                 ORDER BY x.at, x.fix_id LIMIT 1) f ON v.visited_at IS NOT NULL
           LEFT JOIN LATERAL (
                SELECT e.at FROM usage_events e
                 WHERE e.org_id = r.org_id AND e.mode = 'live' AND e.status < 400 AND e.at > f.at
                 ORDER BY e.at LIMIT 1) s ON f.fix_id IS NOT NULL
          ORDER BY r.org_id, r.code, r.at",
    )
    .bind(from)
    .bind(to)
    .bind(&codes)
    .bind(&kinds)
    .bind(&actions)
    .bind(&action_kinds)
    .bind(org)
    .bind(Action::BillingLimitsChanged.as_str())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(summarize(rows))
}

fn summarize(rows: Vec<Row>) -> Recovery {
    let mut funnels: BTreeMap<String, Funnel> = BTreeMap::new();
    let mut durations: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut revenue: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut counted: HashSet<(String, String)> = HashSet::new();
    let mut unrecovered = Vec::new();
    // Rows come grouped by (organization, code), oldest first.
    let mut i = 0;
    while i < rows.len() {
        let (org, code) = (rows[i].org_id, rows[i].code.clone());
        let mut j = i;
        let mut start: Option<OffsetDateTime> = None;
        let mut closed_until: Option<OffsetDateTime> = None;
        let (mut open_count, mut open_visited) = (0i64, false);
        let mut last = rows[i].at;
        while j < rows.len() && rows[j].org_id == org && rows[j].code == code {
            let r = &rows[j];
            let f = funnels.entry(code.clone()).or_insert_with(|| Funnel { code: code.clone(), ..Default::default() });
            f.refused += 1;
            f.visited += r.visited_at.is_some() as i64;
            if let Some(fix) = &r.fix_id {
                f.fixed += 1;
                if counted.insert((code.clone(), fix.clone())) {
                    if let (Some(minor), Some(cur)) = (r.revenue, &r.currency) {
                        *revenue.entry(code.clone()).or_default().entry(cur.clone()).or_default() += minor;
                    }
                }
            }
            f.recovered += r.recovered_at.is_some() as i64;
            last = r.at;
            // Refusals up to a closed episode's fix belong to that episode.
            let in_closed = closed_until.is_some_and(|c| r.at <= c);
            if !in_closed {
                let s = *start.get_or_insert(r.at);
                open_count += 1;
                open_visited |= r.visited_at.is_some();
                if let (Some(done), Some(fixed)) = (r.recovered_at, r.fixed_at) {
                    durations.entry(code.clone()).or_default().push((done - s).whole_seconds());
                    closed_until = Some(fixed);
                    start = None;
                    open_count = 0;
                    open_visited = false;
                }
            }
            j += 1;
        }
        if open_count > 0 {
            unrecovered.push(Unrecovered { org, name: rows[i].org_name.clone(), code: code.clone(), refused: open_count, visited: open_visited, last_refused: last });
        }
        i = j;
    }
    for (code, mut d) in durations {
        d.sort_unstable();
        if let Some(f) = funnels.get_mut(&code) {
            f.episodes = d.len() as i64;
            f.median_secs = percentile(&d, 50);
            f.p90_secs = percentile(&d, 90);
        }
    }
    for (code, by_currency) in revenue {
        if let Some(f) = funnels.get_mut(&code) {
            f.revenue = by_currency.into_iter().collect();
        }
    }
    unrecovered.sort_by(|a, b| b.last_refused.cmp(&a.last_refused).then(a.name.cmp(&b.name)));
    Recovery { funnels: funnels.into_values().collect(), unrecovered }
}

/// Records the first visit of `page` for the refusal `rid` when it is a live
/// 402 of `org`; `false` when there is no such refusal (yet).
pub async fn record_visit(
    db: &PgPool,
    org: Uuid,
    user: Option<Uuid>,
    rid: &str,
    page: &str,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let found: bool = sqlx::query_scalar(
        "WITH refusal AS (
             SELECT 1 FROM usage_events
              WHERE request_id = $1 AND org_id = $2 AND status = 402 AND mode = 'live' AND problem_code IS NOT NULL
              LIMIT 1
         ), saved AS (
             INSERT INTO fix_visits (request_id, org_id, page, user_id, visited_at)
             SELECT $1, $2, $3, $4, $5 FROM refusal
             ON CONFLICT (request_id, org_id) DO NOTHING
         )
         SELECT EXISTS (SELECT 1 FROM refusal)",
    )
    .bind(rid)
    .bind(org)
    .bind(page)
    .bind(user)
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok(found)
}

/// The range the console shows by default: the last 30 days.
pub fn default_range(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    (now - Duration::days(30), now + Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn every_402_code_has_a_fix_and_nothing_else_does() {
        for code in crate::gateway::catalogue::ALL {
            let is_402 = code.status() == axum::http::StatusCode::PAYMENT_REQUIRED;
            assert_eq!(!lifts(code.as_str()).is_empty(), is_402, "{}", code.as_str());
        }
    }
}
