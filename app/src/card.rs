//! Card-number checks shared by the server and the UI (no secrets here).

/// The Luhn checksum every card number carries.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// Whether a typed number could be a card's: 12 to 19 digits (spaces and
/// dashes aside) with a good checksum.
pub fn plausible(typed: &str) -> bool {
    let digits: String = typed.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    (12..=19).contains(&digits.len()) && luhn(&digits)
}
