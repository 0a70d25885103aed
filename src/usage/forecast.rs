//! When the live credits run out at the recent rate: the credits spent in
//! the last seven days (fewer for a younger organization, at least a day)
//! per day, against the included credits (which lapse at the period's end,
//! and are spent first) and the purchased ones (which never lapse).

use time::{Duration, OffsetDateTime};

/// The rate is read over this window.
pub const WINDOW: Duration = Duration::days(7);
/// Forecasts look no further ahead than this (a large balance spent slowly
/// would otherwise land past the calendar's end).
pub const HORIZON: Duration = Duration::days(3650);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forecast {
    /// No live credits were spent in the window.
    NoRecentUse,
    /// All credits run out at `at`: calls get 402 `insufficient_credits`
    /// from then on. `included_out` is when the included ones go first.
    RunsOut {
        per_day: i64,
        included_out: Option<OffsetDateTime>,
        at: OffsetDateTime,
    },
    /// The credits outlast the period: included ones reset at `reset`.
    /// `included_out` is when the included ones run out before it, if so.
    Lasts {
        per_day: i64,
        included_out: Option<OffsetDateTime>,
        reset: Option<OffsetDateTime>,
    },
}

/// `spent` credits over `observed` (the window, or the organization's age
/// if shorter) and the balances now.
pub fn forecast(
    now: OffsetDateTime,
    spent: i64,
    observed: Duration,
    included: i64,
    purchased: i64,
    period_end: Option<OffsetDateTime>,
) -> Forecast {
    if spent <= 0 {
        return Forecast::NoRecentUse;
    }
    let (included, purchased) = (included.max(0), purchased.max(0));
    // A period that has ended (not renewed yet) has no reset ahead.
    let period_end = period_end.filter(|end| *end > now);
    // The window starts on an hour: up to an hour more than seven days.
    let observed = observed.clamp(Duration::DAY, WINDOW + Duration::HOUR);
    let per_second = spent as f64 / observed.as_seconds_f64();
    let horizon = HORIZON.as_seconds_f64();
    // Never past the horizon (nor past the calendar's end).
    let far = now.checked_add(HORIZON).unwrap_or(now);
    let plus = |from: OffsetDateTime, credits: i64| {
        from.checked_add(Duration::seconds_f64((credits as f64 / per_second).min(horizon))).unwrap_or(far).min(far)
    };
    let per_day = (((spent as f64) * 86_400.0 / observed.as_seconds_f64()).round() as i64).max(1);
    let included_out = (included > 0).then(|| plus(now, included));
    let included_out_in_period = included_out.filter(|t| period_end.is_none_or(|end| *t < end));
    // Included credits that outlast the period lapse at its end, so what
    // is left after it is the purchased balance alone.
    let at = match (period_end, included_out_in_period) {
        (Some(end), None) if included > 0 => plus(end.min(far), purchased),
        _ => plus(now, included.saturating_add(purchased)),
    };
    match period_end {
        Some(end) if at >= end => Forecast::Lasts { per_day, included_out: included_out_in_period, reset: Some(end) },
        _ if at >= far => Forecast::Lasts { per_day, included_out: included_out_in_period, reset: None },
        _ => Forecast::RunsOut { per_day, included_out: included_out_in_period, at },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-10 12:00 UTC);

    #[test]
    fn no_use_no_forecast() {
        assert_eq!(forecast(NOW, 0, WINDOW, 100, 0, None), Forecast::NoRecentUse);
    }

    #[test]
    fn included_then_purchased_run_out_before_the_reset() {
        // 700 a week = 100 a day; 300 included, 200 purchased: out in 5 days.
        let f = forecast(NOW, 700, WINDOW, 300, 200, Some(datetime!(2026-12-31 0:00 UTC)));
        assert_eq!(
            f,
            Forecast::RunsOut { per_day: 100, included_out: Some(NOW + Duration::days(3)), at: NOW + Duration::days(5) }
        );
    }

    #[test]
    fn credits_that_outlast_the_period_reset() {
        let end = datetime!(2026-12-12 0:00 UTC);
        let f = forecast(NOW, 700, WINDOW, 1_000, 0, Some(end));
        assert_eq!(f, Forecast::Lasts { per_day: 100, included_out: None, reset: Some(end) });
    }

    #[test]
    fn lapsing_included_credits_do_not_carry_purchased_ones_past_the_reset() {
        // 1,000 included last past the reset on the 12th; then 50 purchased
        // last half a day more, then the next period's grant would come.
        let end = datetime!(2026-12-12 0:00 UTC);
        let f = forecast(NOW, 700, WINDOW, 1_000, 50, Some(end));
        assert_eq!(f, Forecast::Lasts { per_day: 100, included_out: None, reset: Some(end) });
    }

    #[test]
    fn a_huge_balance_spent_slowly_lasts_without_leaving_the_calendar() {
        // 1,000,000 credits at 1 a week: 19,000 years; no panic, no date.
        let f = forecast(NOW, 1, WINDOW, 0, 1_000_000, None);
        assert_eq!(f, Forecast::Lasts { per_day: 1, included_out: None, reset: None });
        let f = forecast(NOW, 1, WINDOW, i64::MAX / 2, i64::MAX / 2, Some(datetime!(9999-12-31 0:00 UTC)));
        assert!(matches!(f, Forecast::Lasts { .. }), "{f:?}");
        // Whatever comes in, no panic.
        let end = datetime!(9999-12-31 23:59 UTC);
        for (spent, inc, pur) in [(i64::MAX, i64::MAX, i64::MAX), (1, i64::MIN, i64::MIN), (1, -1_000_000_000, 5), (i64::MAX, 0, 0)] {
            for now in [NOW, end] {
                let _ = forecast(now, spent, Duration::MAX, inc, pur, Some(end));
                let _ = forecast(now, spent, Duration::MIN, inc, pur, None);
            }
        }
    }

    #[test]
    fn an_ended_period_has_no_reset_ahead() {
        let f = forecast(NOW, 700, WINDOW, 0, 0, Some(NOW - Duration::days(1)));
        assert_eq!(f, Forecast::RunsOut { per_day: 100, included_out: None, at: NOW });
    }

    #[test]
    fn a_young_organization_is_measured_over_a_day_at_least() {
        let f = forecast(NOW, 10, Duration::minutes(5), 0, 100, None);
        assert_eq!(f, Forecast::RunsOut { per_day: 10, included_out: None, at: NOW + Duration::days(10) });
    }
}
