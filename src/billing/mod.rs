//! Billing: plans, subscriptions and the credit ledger. Top-ups, the payment
//! processor and dunning build on these tables.

pub mod ledger;
pub mod plans;
pub mod policy;
pub mod subscriptions;

/// Formats integer minor units for display, for example 2900 USD → "$29.00".
pub fn format_money(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let (major, minor) = (abs / 100, abs % 100);
    match currency.trim() {
        "USD" => format!("{sign}${major}.{minor:02}"),
        "EUR" => format!("{sign}€{major}.{minor:02}"),
        other => format!("{sign}{major}.{minor:02} {other}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_formats_from_minor_units() {
        assert_eq!(super::format_money(2900, "USD"), "$29.00");
        assert_eq!(super::format_money(5, "USD"), "$0.05");
        assert_eq!(super::format_money(-1050, "EUR"), "-€10.50");
        assert_eq!(super::format_money(100, "GBP"), "1.00 GBP");
    }
}
