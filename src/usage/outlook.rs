//! An organization's outlook: what it has left, how much of the period's
//! included credits it used, when its credits run out at the recent rate,
//! and which of its warning thresholds it has crossed. The dashboard, the
//! usage page, the billing page and the warning notices all read this one
//! value, so they never disagree.

use super::forecast::{self, Forecast};
use super::rollups::{self, IncludedUse};
use crate::billing::ledger::Balances;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    /// A threshold an organization sets on `/billing/limits`; its text is
    /// also the notice's reason (one notice per crossing).
    pub enum Warning {
        LowBalance = "low_balance",
        IncludedUsed = "included_used",
        SpendCapUsed = "spend_cap_used",
    }
}

/// The thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Warn below this many live credits.
    pub low_balance_at: i64,
    /// Warn once this share (percent) of the period's included credits is used.
    pub included_pct: Option<i16>,
    /// Warn once this share (percent) of the spend cap is spent.
    pub spend_cap_pct: Option<i16>,
    pub spend_cap: Option<i64>,
    pub period_spent: i64,
    /// Credits reserved by calls still running (their holds): a call that
    /// reserves more than it finally costs must not cross a threshold and
    /// clear it again, so the thresholds read the balances as if every
    /// reservation were given back. Live calls' holds only.
    pub held: i64,
    /// Of `held`, what came from the included credits.
    pub held_included: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outlook {
    pub balances: Balances,
    pub included: IncludedUse,
    pub forecast: Forecast,
    pub thresholds: Thresholds,
    /// The thresholds crossed now.
    pub crossed: Vec<Warning>,
}

/// How far back past a threshold a value must come before the threshold is
/// armed again (percent of the threshold, or percentage points): a balance
/// that hovers at the line warns once, not on every call.
pub const REARM_MARGIN_PCT: i64 = 5;

impl Thresholds {
    /// The thresholds crossed; with `margin`, those crossed or not yet back
    /// by the re-arm margin (a warning sent stays until this is false).
    fn check(&self, balances: &Balances, included: &IncludedUse, margin: bool) -> Vec<Warning> {
        let mut out = Vec::new();
        let live = balances.live() + self.held;
        let low_line = if margin { self.low_balance_at + (self.low_balance_at * REARM_MARGIN_PCT / 100).max(1) } else { self.low_balance_at };
        if live < low_line {
            out.push(Warning::LowBalance);
        }
        // The line a share must stay above to keep a warning raised: the
        // threshold, less the margin (at most half the threshold, so a low
        // one still re-arms, in a new period at the latest).
        let line = |pct: i16| {
            let pct = i64::from(pct);
            if margin { pct - REARM_MARGIN_PCT.min(pct / 2) } else { pct }
        };
        if let Some(pct) = self.included_pct {
            let used = (included.used - self.held_included).max(0);
            if !included.lapsed && included.of > 0 && used > 0 && used * 100 >= line(pct) * included.of {
                out.push(Warning::IncludedUsed);
            }
        }
        if let (Some(pct), Some(cap)) = (self.spend_cap_pct, self.spend_cap) {
            let spent = (self.period_spent - self.held).max(0);
            if cap > 0 && spent > 0 && spent * 100 >= line(pct) * cap {
                out.push(Warning::SpendCapUsed);
            }
        }
        out
    }

    pub fn crossed(&self, balances: &Balances, included: &IncludedUse) -> Vec<Warning> {
        self.check(balances, included, false)
    }

    /// The warnings that stay raised (crossed, or not back by the margin).
    pub fn still_raised(&self, balances: &Balances, included: &IncludedUse) -> Vec<Warning> {
        self.check(balances, included, true)
    }
}

/// The numbers behind an outlook, for one organization or all, in one
/// statement: balances as the gateway spends them (included credits are 0
/// once lapsed), the period's grants from the ledger (through the partial
/// index of non-usage transactions), the thresholds.
const NUMBERS: &str = "
    SELECT m.org_id, o.created_at,
           CASE WHEN m.included_expires_at IS NOT NULL AND m.included_expires_at <= $1 THEN 0 ELSE m.included + l.included END AS included,
           m.included + l.included AS included_projected,
           -- Live calls' reservations still held, and what of them came
           -- from the included credits (test calls' holds are the sandbox's).
           (SELECT coalesce(sum(h.amount), 0)::int8 FROM gateway_holds h
              JOIN ledger_transactions t ON t.idempotency_key = 'usage:' || h.request_id
             WHERE h.org_id = m.org_id AND t.kind = 'usage') AS held,
           (SELECT coalesce(-sum(e.amount), 0)::int8 FROM gateway_holds h
              JOIN ledger_transactions t ON t.idempotency_key = 'usage:' || h.request_id
              JOIN ledger_entries e ON e.transaction_id = t.id AND e.account = 'included'
             WHERE h.org_id = m.org_id AND t.kind = 'usage') AS held_included,
           m.purchased + l.purchased AS purchased, m.sandbox, m.included_expires_at, m.low_balance_at, m.warn_included_pct, m.warn_spend_cap_pct,
           m.spend_cap, greatest(m.period_spent - l.included - l.purchased, 0)::int8 AS period_spent,
           (SELECT coalesce(sum(e.amount), 0)::int8 FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
             WHERE t.org_id = m.org_id AND t.created_at >= m.period_start
               AND t.kind NOT IN ('usage', 'sandbox_usage', 'refund', 'sandbox_refund', 'lease', 'lease_return', 'usage_batch')
               AND e.account = 'included' AND e.amount > 0) AS granted,
           -- Taken from the period's included credits otherwise than by
           -- calls: lapsed at its end (the gateway's expiry; the expiry of
           -- the previous period, posted as this one begins, is not this
           -- period's), or removed by an adjustment.
           (SELECT coalesce(-sum(e.amount), 0)::int8 FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
             WHERE t.org_id = m.org_id AND t.created_at >= m.period_start
               AND t.kind NOT IN ('usage', 'sandbox_usage', 'refund', 'sandbox_refund', 'lease', 'lease_return', 'usage_batch')
               AND t.idempotency_key NOT LIKE 'expiry:%:roll:%'
               AND e.account = 'included' AND e.amount < 0) AS taken
      FROM org_meters m JOIN organizations o ON o.id = m.org_id, LATERAL org_leased(m.org_id) l";

/// One organization's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbers {
    pub org: Uuid,
    pub created: OffsetDateTime,
    pub balances: Balances,
    pub included: IncludedUse,
    pub thresholds: Thresholds,
}

fn numbers(r: &sqlx::postgres::PgRow, now: OffsetDateTime) -> Numbers {
    let balances = Balances { included: r.get("included"), purchased: r.get("purchased"), sandbox: r.get("sandbox") };
    let granted: i64 = r.get("granted");
    // What is left of the period's credits (lapsed or not), and what left
    // them otherwise than by calls: neither is "used".
    let left: i64 = r.get("included_projected");
    let taken: i64 = r.get("taken");
    let period_end: Option<OffsetDateTime> = r.get("included_expires_at");
    let lapsed = period_end.is_some_and(|end| end <= now);
    Numbers {
        org: r.get("org_id"),
        created: r.get("created_at"),
        included: IncludedUse {
            used: (granted - left - taken).max(0),
            of: granted.max(left),
            period_end,
            lapsed,
        },
        balances,
        thresholds: Thresholds {
            low_balance_at: r.get("low_balance_at"),
            included_pct: r.get("warn_included_pct"),
            spend_cap_pct: r.get("warn_spend_cap_pct"),
            spend_cap: r.get("spend_cap"),
            period_spent: r.get("period_spent"),
            held: r.get("held"),
            held_included: r.get("held_included"),
        },
    }
}

/// Every organization's numbers (for the warnings job).
pub async fn all_numbers(db: &PgPool, now: OffsetDateTime) -> Result<Vec<Numbers>, sqlx::Error> {
    Ok(sqlx::query(NUMBERS).bind(now).fetch_all(db).await?.iter().map(|r| numbers(r, now)).collect())
}

pub async fn outlook(db: &PgPool, org: Uuid, now: OffsetDateTime) -> Result<Outlook, sqlx::Error> {
    let r = sqlx::query(&format!("{NUMBERS} WHERE m.org_id = $2")).bind(now).bind(org).fetch_optional(db).await?;
    let n = match r {
        Some(r) => numbers(&r, now),
        None => Numbers {
            org,
            created: now,
            balances: Balances::default(),
            included: IncludedUse { used: 0, of: 0, period_end: None, lapsed: false },
            thresholds: Thresholds { low_balance_at: 0, included_pct: None, spend_cap_pct: None, spend_cap: None, period_spent: 0, held: 0, held_included: 0 },
        },
    };
    outlook_of(db, n, now).await
}

/// The outlook from its numbers (reads the recent rate from the rollups).
pub async fn outlook_of(db: &PgPool, n: Numbers, now: OffsetDateTime) -> Result<Outlook, sqlx::Error> {
    let since = (now - forecast::WINDOW).max(n.created);
    let (spent, from) = rollups::live_credits_since(db, n.org, since).await?;
    let forecast = forecast::forecast(now, spent, now - from, n.balances.included, n.balances.purchased, n.included.period_end);
    let crossed = n.thresholds.crossed(&n.balances, &n.included);
    Ok(Outlook { balances: n.balances, included: n.included, forecast, thresholds: n.thresholds, crossed })
}

/// "25 Dec 2026".
pub fn day(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let month = &t.month().to_string()[..3];
    format!("{} {month} {}", t.day(), t.year())
}

/// The forecast as a sentence, for pages and emails.
pub fn forecast_sentence(f: &Forecast) -> String {
    match f {
        Forecast::NoRecentUse => "No live credits were spent in the last 7 days, so there is nothing to forecast.".into(),
        Forecast::RunsOut { per_day, included_out, at } => {
            let inc = included_out.map(|t| format!("your included credits run out on {} and ", day(t))).unwrap_or_default();
            format!(
                "At the recent rate ({} credits a day), {inc}all your credits run out on {} (UTC); calls are then refused with 402 insufficient_credits.",
                super::group(*per_day),
                day(*at)
            )
        }
        Forecast::Lasts { per_day, included_out, reset } => {
            let inc = included_out
                .map(|t| format!("your included credits run out on {}, then purchased credits carry you; ", day(t)))
                .unwrap_or_default();
            let reset = reset.map(|t| format!(" to the reset on {}", day(t))).unwrap_or_default();
            let reset = if reset.is_empty() { " for years".to_string() } else { reset };
            format!("At the recent rate ({} credits a day), {inc}your credits last{reset}.", super::group(*per_day))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(low: i64, held: i64) -> Thresholds {
        Thresholds { low_balance_at: low, included_pct: Some(80), spend_cap_pct: Some(80), spend_cap: Some(1000), period_spent: 0, held, held_included: held }
    }
    fn balances(live: i64) -> Balances {
        Balances { included: live, purchased: 0, sandbox: 0 }
    }
    const UNUSED: IncludedUse = IncludedUse { used: 0, of: 1000, period_end: None, lapsed: false };

    #[test]
    fn a_reservation_still_held_is_not_spent() {
        // 95 left after a call reserved 10 that may cost 1: not below 90.
        assert_eq!(thresholds(90, 10).crossed(&balances(95), &UNUSED), vec![]);
        assert_eq!(thresholds(90, 0).crossed(&balances(85), &UNUSED), vec![Warning::LowBalance]);
    }

    #[test]
    fn a_warning_is_armed_again_only_past_the_margin() {
        let t = thresholds(100, 0);
        // Crossed at 99; back at 101 it stays raised; at 105 it is armed again.
        assert!(t.crossed(&balances(99), &UNUSED).contains(&Warning::LowBalance));
        assert!(!t.crossed(&balances(101), &UNUSED).contains(&Warning::LowBalance));
        assert!(t.still_raised(&balances(101), &UNUSED).contains(&Warning::LowBalance));
        assert!(!t.still_raised(&balances(105), &UNUSED).contains(&Warning::LowBalance));
        let used = |u| IncludedUse { used: u, of: 1000, period_end: None, lapsed: false };
        assert!(t.crossed(&balances(500), &used(800)).contains(&Warning::IncludedUsed));
        assert!(t.still_raised(&balances(500), &used(760)).contains(&Warning::IncludedUsed));
        assert!(!t.still_raised(&balances(500), &used(740)).contains(&Warning::IncludedUsed));
    }

    #[test]
    fn a_low_threshold_is_armed_again_in_a_new_period() {
        let mut t = thresholds(0, 0);
        t.included_pct = Some(2);
        let fresh = IncludedUse { used: 0, of: 1000, period_end: None, lapsed: false };
        assert!(!t.still_raised(&balances(1000), &fresh).contains(&Warning::IncludedUsed));
    }

    #[test]
    fn included_credits_that_lapsed_are_not_used() {
        let lapsed = IncludedUse { used: 100, of: 1000, period_end: None, lapsed: true };
        assert!(!thresholds(0, 0).crossed(&balances(0), &lapsed).contains(&Warning::IncludedUsed));
    }
}
