//! Billing policy: the numbers the gateway and the billing pages share, in
//! one place. The gateway reads them; it does not own them.

/// Credit packs, smallest first (product.md): credits bought per pack.
pub const PACKS: [i64; 3] = [1000, 5000, 20_000];

/// What each pack costs, in minor units of the plans' currency (product.md):
/// 1,000 for $10, 5,000 for $45, 20,000 for $160.
pub const PACK_PRICES: [(i64, i64); 3] = [(1000, 1000), (5000, 4500), (20_000, 16_000)];

/// A custom top-up: this many minor units per credit, within these bounds.
pub const CUSTOM_UNIT_MINOR: i64 = 1;
pub const CUSTOM_MIN: i64 = 100;
pub const CUSTOM_MAX: i64 = 1_000_000;

/// The price of `credits`: a pack's price when it is a pack, else the
/// custom rate. `None` outside the custom bounds.
pub fn top_up_price(credits: i64) -> Option<i64> {
    if let Some((_, price)) = PACK_PRICES.iter().find(|(c, _)| *c == credits) {
        return Some(*price);
    }
    (CUSTOM_MIN..=CUSTOM_MAX)
        .contains(&credits)
        .then_some(credits * CUSTOM_UNIT_MINOR)
}

/// The one rounding rule for money split by time: `amount × part / whole`,
/// rounded half up to whole minor units (integers only, never floats).
pub fn prorate(amount_minor: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let part = part.clamp(0, whole);
    let sign = amount_minor.signum();
    let n = i128::from(amount_minor.abs()) * i128::from(part) * 2 + i128::from(whole);
    sign * (n / (2 * i128::from(whole))) as i64
}


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

/// How many free sandbox refills an organization gets within a day; and
/// only while its subscription is in good standing (active, trialing, or
/// canceled with its period still running), so test keys are no free way to
/// use an API the live plan no longer pays for.
pub const SANDBOX_REFILLS_PER_DAY: i64 = 3;

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
    fn packs_have_their_price_and_custom_amounts_a_bounded_rate() {
        assert_eq!(top_up_price(5000), Some(4500));
        assert_eq!(top_up_price(1234), Some(1234));
        assert_eq!(top_up_price(99), None);
        assert_eq!(top_up_price(1_000_001), None);
    }

    #[test]
    fn proration_rounds_half_up_in_whole_minor_units() {
        assert_eq!(prorate(2900, 15, 30), 1450);
        assert_eq!(prorate(2900, 1, 30), 97); // 96.67
        assert_eq!(prorate(100, 1, 8), 13); // 12.5 rounds up
        assert_eq!(prorate(-100, 1, 8), -13);
        assert_eq!(prorate(2900, 40, 30), 2900);
        assert_eq!(prorate(2900, 3, 0), 0);
    }

    #[test]
    fn the_spend_cap_warns_from_four_fifths() {
        assert!(!near_spend_cap(79, 100));
        assert!(near_spend_cap(80, 100));
        assert!(!near_spend_cap(10, 0));
    }
}
