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

impl Thresholds {
    pub fn crossed(&self, balances: &Balances, included: &IncludedUse) -> Vec<Warning> {
        let mut out = Vec::new();
        if balances.live() < self.low_balance_at {
            out.push(Warning::LowBalance);
        }
        if let Some(pct) = self.included_pct {
            if included.of > 0 && included.used * 100 >= i64::from(pct) * included.of {
                out.push(Warning::IncludedUsed);
            }
        }
        if let (Some(pct), Some(cap)) = (self.spend_cap_pct, self.spend_cap) {
            if cap > 0 && self.period_spent * 100 >= i64::from(pct) * cap {
                out.push(Warning::SpendCapUsed);
            }
        }
        out
    }
}

/// The numbers behind an outlook, for one organization or all, in one
/// statement: balances as the gateway spends them (included credits are 0
/// once lapsed), the period's grants from the ledger (through the partial
/// index of non-usage transactions), the thresholds.
const NUMBERS: &str = "
    SELECT m.org_id, o.created_at,
           CASE WHEN m.included_expires_at IS NOT NULL AND m.included_expires_at <= $1 THEN 0 ELSE m.included END AS included,
           m.purchased, m.sandbox, m.included_expires_at, m.low_balance_at, m.warn_included_pct, m.warn_spend_cap_pct,
           m.spend_cap, m.period_spent,
           (SELECT coalesce(sum(e.amount), 0)::int8 FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
             WHERE t.org_id = m.org_id AND t.created_at >= m.period_start
               AND t.kind NOT IN ('usage', 'sandbox_usage', 'refund', 'sandbox_refund')
               AND e.account = 'included' AND e.amount > 0) AS granted
      FROM org_meters m JOIN organizations o ON o.id = m.org_id";

/// One organization's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbers {
    pub org: Uuid,
    pub created: OffsetDateTime,
    pub balances: Balances,
    pub included: IncludedUse,
    pub thresholds: Thresholds,
}

fn numbers(r: &sqlx::postgres::PgRow) -> Numbers {
    let balances = Balances { included: r.get("included"), purchased: r.get("purchased"), sandbox: r.get("sandbox") };
    let granted: i64 = r.get("granted");
    Numbers {
        org: r.get("org_id"),
        created: r.get("created_at"),
        included: IncludedUse {
            used: (granted - balances.included).max(0),
            of: granted.max(balances.included),
            period_end: r.get("included_expires_at"),
        },
        balances,
        thresholds: Thresholds {
            low_balance_at: r.get("low_balance_at"),
            included_pct: r.get("warn_included_pct"),
            spend_cap_pct: r.get("warn_spend_cap_pct"),
            spend_cap: r.get("spend_cap"),
            period_spent: r.get("period_spent"),
        },
    }
}

/// Every organization's numbers (for the warnings job).
pub async fn all_numbers(db: &PgPool, now: OffsetDateTime) -> Result<Vec<Numbers>, sqlx::Error> {
    Ok(sqlx::query(NUMBERS).bind(now).fetch_all(db).await?.iter().map(numbers).collect())
}

pub async fn outlook(db: &PgPool, org: Uuid, now: OffsetDateTime) -> Result<Outlook, sqlx::Error> {
    let r = sqlx::query(&format!("{NUMBERS} WHERE m.org_id = $2")).bind(now).bind(org).fetch_optional(db).await?;
    let n = match r {
        Some(r) => numbers(&r),
        None => Numbers {
            org,
            created: now,
            balances: Balances::default(),
            included: IncludedUse { used: 0, of: 0, period_end: None },
            thresholds: Thresholds { low_balance_at: 0, included_pct: None, spend_cap_pct: None, spend_cap: None, period_spent: 0 },
        },
    };
    outlook_of(db, n, now).await
}

/// The outlook from its numbers (reads the recent rate from the rollups).
pub async fn outlook_of(db: &PgPool, n: Numbers, now: OffsetDateTime) -> Result<Outlook, sqlx::Error> {
    let since = (now - forecast::WINDOW).max(n.created);
    let spent = rollups::live_credits_since(db, n.org, since).await?;
    let forecast = forecast::forecast(now, spent, now - since, n.balances.included, n.balances.purchased, n.included.period_end);
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
            format!("At the recent rate ({} credits a day), {inc}your credits last{reset}.", super::group(*per_day))
        }
    }
}
