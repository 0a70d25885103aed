//! The latency histogram the rollups keep: twenty buckets with these upper
//! bounds (microseconds; the last bucket has none). The database function
//! `usage_latency_bounds()` holds the same numbers; a test keeps them equal.

pub const BOUNDS_US: [i64; 19] = [
    250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 75_000, 100_000,
    250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Counts per bucket.
pub type Histogram = [i64; BUCKETS];

/// The latency under which a share `q` (0 < q ≤ 1) of the calls fall,
/// interpolated linearly within its bucket (the open last bucket answers
/// its lower bound); `None` without calls.
pub fn percentile(hist: &Histogram, q: f64) -> Option<i64> {
    let total: i64 = hist.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let mut seen = 0i64;
    for (i, &n) in hist.iter().enumerate() {
        if n <= 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lo = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
            let Some(&hi) = BOUNDS_US.get(i) else { return Some(lo) };
            let within = (rank - seen as f64) / n as f64;
            return Some(lo + ((hi - lo) as f64 * within).round() as i64);
        }
        seen += n;
    }
    Some(BOUNDS_US[BOUNDS_US.len() - 1])
}

/// "0.8 ms", "12 ms", "1.2 s".
pub fn describe(us: i64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us < 1_000_000 {
        format!("{} ms", (us + 500) / 1000)
    } else {
        format!("{:.1} s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_fall_in_the_right_bucket() {
        let mut h = [0; BUCKETS];
        h[2] = 90; // 500 µs – 1 ms
        h[10] = 10; // 25 – 50 ms
        let p50 = percentile(&h, 0.5).unwrap();
        assert!((500..=1000).contains(&p50), "{p50}");
        let p95 = percentile(&h, 0.95).unwrap();
        assert!((25_000..=50_000).contains(&p95), "{p95}");
        assert_eq!(percentile(&[0; BUCKETS], 0.5), None);
        let mut slow = [0; BUCKETS];
        slow[BUCKETS - 1] = 3;
        assert_eq!(percentile(&slow, 0.99), Some(10_000_000));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(describe(800), "0.8 ms");
        assert_eq!(describe(12_400), "12 ms");
        assert_eq!(describe(1_250_000), "1.2 s");
    }
}
