//! API keys: `tg_live_…` or `tg_test_…` followed by 32 base62 characters.
//! Shown once at creation; stored as SHA-256 under a unique index, so the
//! gateway finds a key by its hash and never compares secrets itself. Keys
//! never reach logs: [`Secret`]'s `Debug` is redacted.

pub mod store;

use rand::Rng;
use std::fmt;

pub const LIVE_PREFIX: &str = "tg_live_";
pub const TEST_PREFIX: &str = "tg_test_";
const BODY_LEN: usize = 32;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Scopes a key can hold; `*` is every scope.
pub const SCOPES: [(&str, &str); 2] = [
    ("ping", "GET /v1/ping"),
    ("text", "POST /v1/text/sentiment and /v1/text/summarize"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Live,
    Test,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "live" => Some(Mode::Live),
            "test" => Some(Mode::Test),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Mode::Live => LIVE_PREFIX,
            Mode::Test => TEST_PREFIX,
        }
    }
}

/// Why a key could not be created, revoked or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// (field, message) pairs.
    #[error("invalid input")]
    Invalid(Vec<(&'static str, String)>),
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("no such key")]
    NotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl KeyError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        KeyError::Invalid(vec![(field, message.into())])
    }
}

crate::text_sqlx!(Mode);

/// A whole API key. Only its creator ever sees it, once.
#[derive(Clone)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    pub fn generate(mode: Mode) -> Self {
        let mut rng = rand::rngs::OsRng;
        let body: String = (0..BODY_LEN)
            .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
            .collect();
        Secret(format!("{}{body}", mode.prefix()))
    }

    /// Accepts only the exact shape of a key; anything else is not looked up.
    pub fn parse(raw: &str) -> Option<(Self, Mode)> {
        let (mode, body) = if let Some(b) = raw.strip_prefix(LIVE_PREFIX) {
            (Mode::Live, b)
        } else {
            (Mode::Test, raw.strip_prefix(TEST_PREFIX)?)
        };
        (body.len() == BODY_LEN && body.bytes().all(|c| c.is_ascii_alphanumeric()))
            .then(|| (Secret(raw.to_string()), mode))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> Vec<u8> {
        crate::crypto::sha256(self.0.as_bytes())
    }

    /// "tg_live_AbCd" — what lists show before the ellipsis.
    pub fn display_prefix(&self) -> String {
        self.0[..LIVE_PREFIX.len() + 4].to_string()
    }

    pub fn last4(&self) -> String {
        self.0[self.0.len() - 4..].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_parse_back() {
        let live = Secret::generate(Mode::Live);
        assert!(live.expose().starts_with("tg_live_"));
        assert_eq!(live.expose().len(), 8 + 32);
        let (parsed, mode) = Secret::parse(live.expose()).unwrap();
        assert_eq!(mode, Mode::Live);
        assert_eq!(parsed.hash(), live.hash());
        let test = Secret::generate(Mode::Test);
        assert_eq!(Secret::parse(test.expose()).unwrap().1, Mode::Test);
        assert_ne!(Secret::generate(Mode::Live).expose(), live.expose());
        assert_eq!(format!("{live:?}"), "Secret([redacted])");
    }

    #[test]
    fn malformed_keys_are_rejected_without_a_lookup() {
        for bad in [
            "",
            "tg_live_",
            "tg_live_short",
            "sk_live_0123456789abcdef0123456789abcdef",
            "tg_live_0123456789abcdef0123456789abcde!",
        ] {
            assert!(Secret::parse(bad).is_none(), "{bad}");
        }
    }
}
