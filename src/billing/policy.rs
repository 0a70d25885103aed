//! Billing policy: the numbers the gateway and the billing pages share, in
//! one place. The gateway reads them; it does not own them.

/// Credit packs, smallest first (product.md): credits bought per pack.
pub const PACKS: [i64; 3] = [1000, 5000, 20_000];

/// The smallest pack that covers `missing` credits (whole thousands beyond
/// the largest).
pub fn pack_covering(missing: i64) -> i64 {
    PACKS
        .into_iter()
        .find(|p| *p >= missing)
        .unwrap_or_else(|| (missing + 999) / 1000 * 1000)
}

/// The low-balance alert threshold of an organization that has not chosen
/// one (`org_meters.low_balance_at` defaults to it too): below this many
/// credits, metered responses warn that the balance is low.
pub const LOW_BALANCE_DEFAULT: i64 = 10;

/// Past this share of the monthly spend cap, metered responses warn.
pub const SPEND_CAP_WARNING: (i64, i64) = (4, 5);

/// Whether `spent` is past the warning share of a (positive) `cap`.
pub fn near_spend_cap(spent: i64, cap: i64) -> bool {
    let (num, den) = SPEND_CAP_WARNING;
    cap > 0 && spent.saturating_mul(den) >= cap.saturating_mul(num)
}

/// Credits a test key's sandbox starts with (and is refilled to). The
/// migration that gave organizations existing then their sandbox used the
/// same number once; every later sandbox starts from here.
pub const SANDBOX_START: i64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_ups_suggest_the_smallest_covering_pack() {
        assert_eq!(pack_covering(3), 1000);
        assert_eq!(pack_covering(1000), 1000);
        assert_eq!(pack_covering(1001), 5000);
        assert_eq!(pack_covering(20_001), 21_000);
    }

    #[test]
    fn the_spend_cap_warns_from_four_fifths() {
        assert!(!near_spend_cap(79, 100));
        assert!(near_spend_cap(80, 100));
        assert!(!near_spend_cap(10, 0));
    }
}
