//! Time, injected. Only handlers and jobs read the clock; everything below
//! them takes `now` as a parameter, so tests can move time.

use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// The system clock moved forward by a fixed duration
    /// (`TOLLGATE_CLOCK_OFFSET`, for demos and tests of time-driven
    /// journeys: renewals, grace periods, trials).
    Offset(Duration),
    Manual(Arc<Mutex<OffsetDateTime>>),
}

impl Clock {
    pub fn manual(start: OffsetDateTime) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    /// Now, to the microsecond: what PostgreSQL's `timestamptz` keeps, so
    /// a time written and read back is the same time (keys built from it,
    /// such as a period's grant, name one thing whichever side built them).
    pub fn now(&self) -> OffsetDateTime {
        micros(match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Offset(by) => OffsetDateTime::now_utc() + *by,
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        })
    }

    /// Moves a manual clock forward; a system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            let mut t = t.lock().expect("clock lock");
            *t += by;
        }
    }
}

/// `t` truncated to the microsecond, as PostgreSQL stores it.
pub fn micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).expect("a truncated nanosecond is in range")
}

/// Parses a duration such as "31d", "12h", "90m", "45s" or "1d12h".
pub fn parse_offset(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("\"{text}\": a number must come before each unit"))?;
        digits.clear();
        total += match c {
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            'm' => Duration::minutes(n),
            's' => Duration::seconds(n),
            _ => return Err(format!("\"{text}\": units are d, h, m and s")),
        };
    }
    if !digits.is_empty() {
        return Err(format!("\"{text}\": the last number has no unit (d, h, m or s)"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_to_the_microsecond_like_the_database() {
        for clock in [Clock::System, Clock::Offset(Duration::days(31)), Clock::manual(OffsetDateTime::now_utc())] {
            for _ in 0..20 {
                assert_eq!(clock.now().nanosecond() % 1_000, 0);
            }
        }
        let t = time::macros::datetime!(2026-11-23 07:46:28.123456789 UTC);
        assert_eq!(micros(t), time::macros::datetime!(2026-11-23 07:46:28.123456 UTC));
    }

    #[test]
    fn offsets_parse_from_days_hours_minutes_and_seconds() {
        assert_eq!(parse_offset("31d"), Ok(Duration::days(31)));
        assert_eq!(parse_offset("1d12h"), Ok(Duration::hours(36)));
        assert_eq!(parse_offset("90m"), Ok(Duration::minutes(90)));
        assert!(parse_offset("31").is_err());
        assert!(parse_offset("3w").is_err());
        assert!(parse_offset("").is_err());
    }

    #[test]
    fn an_offset_clock_runs_ahead_of_the_system_clock() {
        let ahead = Clock::Offset(Duration::days(31)).now() - OffsetDateTime::now_utc();
        assert!(ahead > Duration::days(30) && ahead <= Duration::days(31));
    }
}
