//! The operator's console's reads and writes that are not another area's:
//! finding organizations and what they hold ([`orgs`]), suspending their
//! keys, the audit log's queries ([`audit_log`]), the console's overview
//! ([`overview`]) and the 402 recovery funnel ([`recovery`]). Every caller
//! is a platform admin: the ports (`src/portal/admin.rs`) check that before
//! calling here; nothing here checks who asks.

pub mod audit_log;
pub mod orgs;
pub mod overview;
pub mod recovery;

/// A search term as a LIKE pattern that matches it anywhere, with LIKE's
/// own characters taken literally.
pub fn contains_pattern(term: &str) -> String {
    let mut p = String::from("%");
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// An id as typed: trimmed, any case, with or without hyphens or braces,
/// percent-encoded or not. `None` when it is no id.
pub fn parse_id(raw: &str) -> Option<uuid::Uuid> {
    let decoded = percent_decode(raw.trim());
    uuid::Uuid::parse_str(decoded.trim().trim_matches(|c| c == '{' || c == '}')).ok()
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_characters_are_literal() {
        assert_eq!(contains_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn ids_parse_in_every_spelling() {
        let id = uuid::Uuid::parse_str("0192a8f0-1c2d-7e3f-8a4b-5c6d7e8f9a0b").unwrap();
        for s in [
            "0192a8f0-1c2d-7e3f-8a4b-5c6d7e8f9a0b",
            "0192A8F0-1C2D-7E3F-8A4B-5C6D7E8F9A0B",
            "  0192a8f0-1c2d-7e3f-8a4b-5c6d7e8f9a0b ",
            "0192a8f01c2d7e3f8a4b5c6d7e8f9a0b",
            "%30192a8f0-1c2d-7e3f-8a4b-5c6d7e8f9a0b",
        ] {
            assert_eq!(parse_id(s), Some(id), "{s}");
        }
        assert_eq!(parse_id("0192a8f0"), None);
        assert_eq!(parse_id(""), None);
    }
}
