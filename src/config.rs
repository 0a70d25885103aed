//! Configuration, read once from environment variables at start-up. The
//! README's configuration table lists every variable; keep the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

#[derive(Clone, Debug, PartialEq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl LogFormat {
    pub fn from_env() -> Self {
        match std::env::var("TOLLGATE_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Pretty,
        }
    }
}

/// SMTP delivery for the email outbox. The URL holds the credentials, so the
/// struct's `Debug` leaves it out.
#[derive(Clone)]
pub struct SmtpConfig {
    pub url: String,
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &"[redacted]")
            .field("from", &self.from)
            .finish()
    }
}

/// The webhook signing secret; `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    pub fn random() -> Self {
        use rand::Rng;
        let bytes: [u8; 32] = rand::thread_rng().gen();
        WebhookSecret(format!("whsec_{}", hex::encode(bytes)))
    }
}

/// Stripe's secret API key; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(pub String);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The Stripe processor's settings (README, "Payments with Stripe"). When
/// they are set, Stripe takes the payments; without them the sandbox does.
#[derive(Clone, Debug)]
pub struct StripeConfig {
    pub secret_key: SecretKey,
    pub publishable_key: String,
    /// The signing secret of the webhook endpoint registered at Stripe.
    pub webhook_secret: WebhookSecret,
    /// Stripe's API (an emulator's in tests).
    pub api_base: Url,
    /// Stripe.js, loaded by the payment pages.
    pub js_url: Url,
}

impl StripeConfig {
    fn from_env() -> Result<Option<StripeConfig>, ConfigError> {
        let Some(secret) = var("TOLLGATE_STRIPE_SECRET_KEY") else {
            return Ok(None);
        };
        let required = |name: &'static str| {
            var(name).ok_or(ConfigError { name, message: "is needed with TOLLGATE_STRIPE_SECRET_KEY".into() })
        };
        let url = |name: &'static str, default: &str| -> Result<Url, ConfigError> {
            let v = var(name).unwrap_or_else(|| default.into());
            let u: Url = v.parse().map_err(|e: url::ParseError| ConfigError { name, message: e.to_string() })?;
            // The secret key travels to the API, and the payment pages run
            // Stripe.js: plain http only on this machine (an emulator).
            let loopback = matches!(u.host(), Some(url::Host::Ipv4(a)) if a.is_loopback())
                || matches!(u.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
                || u.host_str() == Some("localhost");
            if !(u.scheme() == "https" || (u.scheme() == "http" && loopback)) {
                return Err(ConfigError { name, message: "must be an https URL (plain http only for localhost)".into() });
            }
            Ok(u)
        };
        let publishable_key = required("TOLLGATE_STRIPE_PUBLISHABLE_KEY")?;
        if !secret.starts_with("sk_") && !secret.starts_with("rk_") {
            return Err(ConfigError { name: "TOLLGATE_STRIPE_SECRET_KEY", message: "is a secret key (sk_…) or restricted key (rk_…)".into() });
        }
        if !publishable_key.starts_with("pk_") {
            return Err(ConfigError { name: "TOLLGATE_STRIPE_PUBLISHABLE_KEY", message: "is a publishable key (pk_…)".into() });
        }
        Ok(Some(StripeConfig {
            secret_key: SecretKey(secret),
            publishable_key,
            webhook_secret: WebhookSecret(required("TOLLGATE_STRIPE_WEBHOOK_SECRET")?),
            api_base: url("TOLLGATE_STRIPE_API_URL", "https://api.stripe.com")?,
            js_url: url("TOLLGATE_STRIPE_JS_URL", "https://js.stripe.com/v3/")?,
        }))
    }

    /// The origins the payment pages must let Stripe.js load from, frame
    /// and talk to (their Content-Security-Policy).
    pub fn browser_origins(&self) -> Vec<String> {
        let mut origins = vec![self.js_url.origin().ascii_serialization()];
        if self.js_url.host_str() == Some("js.stripe.com") {
            origins.extend(["https://api.stripe.com".to_string(), "https://hooks.stripe.com".to_string()]);
        }
        origins.dedup();
        origins
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Unset: the embedded PostgreSQL under `data_dir` is used.
    pub database_url: Option<String>,
    pub db_pool_size: u32,
    pub data_dir: PathBuf,
    pub embedded_pg_port: u16,
    pub listen_addr: SocketAddr,
    /// The address customers reach the portal at; links in emails and
    /// problem bodies are built from it.
    pub public_url: Url,
    /// Cookies get `Secure` when the public URL is https.
    pub secure_cookies: bool,
    /// The operator's proxies in front of Tollgate (`TOLLGATE_TRUSTED_PROXIES`:
    /// how many, or their addresses and networks); see `http::proxies`.
    pub trusted_proxies: crate::http::proxies::TrustedProxies,
    pub content_dir: PathBuf,
    pub site_root: String,
    pub smtp: Option<SmtpConfig>,
    pub support_contact: String,
    pub session_idle_days: i64,
    /// Signs and verifies the payment processor's webhooks
    /// (`TOLLGATE_WEBHOOK_SECRET`; a random one per process when unset,
    /// which is enough for the sandbox processor delivering to itself).
    pub webhook_secret: WebhookSecret,
    /// Where the sandbox processor delivers its webhooks
    /// (`TOLLGATE_SANDBOX_WEBHOOK_URL`); unset: this instance's own address.
    pub sandbox_webhook_url: Option<Url>,
    /// Stripe takes the payments when set (`TOLLGATE_STRIPE_*`).
    pub stripe: Option<StripeConfig>,
    /// The bearer token `/metrics` asks for; unset, there are no metrics.
    pub metrics_token: Option<SecretKey>,
    /// Days a subscription whose renewal failed keeps working
    /// (`TOLLGATE_GRACE_DAYS`, default 3).
    pub grace_days: i64,
    /// Moves the whole server's clock forward (`TOLLGATE_CLOCK_OFFSET`,
    /// for demos and tests only).
    pub clock_offset: Option<time::Duration>,
    /// Serves `/bench/unmetered/ping` (the ping handler without the gateway),
    /// for the benchmarks only.
    pub bench_routes: bool,
    /// Serves routes that panic (`/__tests/panic`, `/v1/__tests/panic`):
    /// set by the tests' configuration only, never from the environment.
    pub panic_routes: bool,
    /// Live keys need a confirmed email address
    /// (`TOLLGATE_LIVE_KEYS_NEED_VERIFIED_EMAIL`, default false).
    pub live_keys_need_verified_email: bool,
    /// A page that has not rendered in this long answers 500
    /// (`TOLLGATE_PAGE_TIMEOUT_SECS`, default 30).
    pub page_timeout: std::time::Duration,
    /// How many days usage events (the request log) are kept
    /// (`TOLLGATE_USAGE_RETENTION_DAYS`, default 90); rollups stay 13 months.
    pub usage_retention_days: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {name}: {message}")]
pub struct ConfigError {
    name: &'static str,
    message: String,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError {
            name,
            message: e.to_string(),
        }),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let listen_addr: SocketAddr = match var("TOLLGATE_ADDR").or_else(|| var("LEPTOS_SITE_ADDR"))
        {
            None => "127.0.0.1:3000".parse().expect("literal address"),
            Some(v) => v
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError {
                    name: "TOLLGATE_ADDR",
                    message: e.to_string(),
                })?,
        };
        let default_public = format!("http://{listen_addr}");
        let public_url: Url = var("TOLLGATE_PUBLIC_URL")
            .unwrap_or(default_public)
            .parse()
            .map_err(|e: url::ParseError| ConfigError {
                name: "TOLLGATE_PUBLIC_URL",
                message: e.to_string(),
            })?;
        let smtp = match (var("TOLLGATE_SMTP_URL"), var("TOLLGATE_SMTP_FROM")) {
            (Some(url), from) => Some(SmtpConfig {
                url,
                from: from.unwrap_or_else(|| "Tollgate <no-reply@localhost>".into()),
            }),
            (None, _) => None,
        };
        Ok(Config {
            database_url: var("DATABASE_URL"),
            db_pool_size: parsed("TOLLGATE_DB_POOL_SIZE", 20)?,
            data_dir: var("TOLLGATE_DATA_DIR")
                .unwrap_or_else(|| ".tollgate".into())
                .into(),
            embedded_pg_port: parsed("TOLLGATE_PG_PORT", 54329)?,
            listen_addr,
            secure_cookies: parsed("TOLLGATE_SECURE_COOKIES", public_url.scheme() == "https")?,
            public_url,
            trusted_proxies: match var("TOLLGATE_TRUSTED_PROXIES") {
                Some(v) => crate::http::proxies::TrustedProxies::parse(&v).ok_or_else(|| ConfigError {
                    name: "TOLLGATE_TRUSTED_PROXIES",
                    message: format!("{v:?} is neither a number of proxies nor addresses and networks like 10.0.0.0/8, 2001:db8::/32"),
                })?,
                // The older switch: one proxy.
                None => crate::http::proxies::TrustedProxies::Count(usize::from(parsed("TOLLGATE_TRUST_PROXY", false)?)),
            },
            content_dir: var("TOLLGATE_CONTENT_DIR")
                .unwrap_or_else(|| "content".into())
                .into(),
            site_root: var("LEPTOS_SITE_ROOT").unwrap_or_else(|| "target/site".into()),
            smtp,
            support_contact: var("TOLLGATE_SUPPORT")
                .unwrap_or_else(|| "support@example.com".into()),
            session_idle_days: parsed("TOLLGATE_SESSION_IDLE_DAYS", 14)?,
            bench_routes: var("TOLLGATE_BENCH").is_some_and(|v| v == "1"),
            panic_routes: false,
            live_keys_need_verified_email: parsed("TOLLGATE_LIVE_KEYS_NEED_VERIFIED_EMAIL", false)?,
            page_timeout: std::time::Duration::from_secs(parsed("TOLLGATE_PAGE_TIMEOUT_SECS", 30u64)?.max(1)),
            // At least the 7 days the ledger's recovery of lost events looks
            // back, so it never writes again an event the retention dropped.
            usage_retention_days: parsed("TOLLGATE_USAGE_RETENTION_DAYS", 90i64)?.clamp(8, 400),
            webhook_secret: var("TOLLGATE_WEBHOOK_SECRET")
                .map(WebhookSecret)
                .unwrap_or_else(WebhookSecret::random),
            sandbox_webhook_url: match var("TOLLGATE_SANDBOX_WEBHOOK_URL") {
                None => None,
                Some(v) => Some(v.parse().map_err(|e: url::ParseError| ConfigError {
                    name: "TOLLGATE_SANDBOX_WEBHOOK_URL",
                    message: e.to_string(),
                })?),
            },
            stripe: StripeConfig::from_env()?,
            metrics_token: match var("TOLLGATE_METRICS_TOKEN") {
                Some(t) if t.trim().len() < 16 => {
                    return Err(ConfigError { name: "TOLLGATE_METRICS_TOKEN", message: "is at least 16 characters".into() })
                }
                t => t.map(|t| SecretKey(t.trim().to_string())),
            },
            grace_days: parsed("TOLLGATE_GRACE_DAYS", 3)?,
            clock_offset: match var("TOLLGATE_CLOCK_OFFSET") {
                None => None,
                Some(v) => Some(crate::clock::parse_offset(&v).map_err(|message| ConfigError {
                    name: "TOLLGATE_CLOCK_OFFSET",
                    message,
                })?),
            },
        })
    }

    /// A configuration for tests: no SMTP, fixed addresses, one trusted
    /// proxy so tests can speak for several client addresses.
    pub fn for_tests() -> Self {
        Config {
            database_url: None,
            db_pool_size: 5,
            data_dir: ".tollgate-test".into(),
            embedded_pg_port: 54329,
            listen_addr: "127.0.0.1:3000".parse().expect("literal address"),
            public_url: "http://portal.test".parse().expect("literal url"),
            secure_cookies: false,
            trusted_proxies: crate::http::proxies::TrustedProxies::Count(1),
            content_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/content").into(),
            site_root: "target/site".into(),
            smtp: None,
            support_contact: "support@example.com".into(),
            session_idle_days: 14,
            bench_routes: false,
            panic_routes: true,
            live_keys_need_verified_email: false,
            page_timeout: std::time::Duration::from_secs(30),
            usage_retention_days: 90,
            webhook_secret: WebhookSecret("whsec_tests".into()),
            sandbox_webhook_url: None,
            stripe: None,
            metrics_token: None,
            grace_days: 3,
            clock_offset: None,
        }
    }

    /// The clock the server runs on: the system's, moved forward by
    /// `TOLLGATE_CLOCK_OFFSET` when set.
    pub fn clock(&self) -> crate::clock::Clock {
        match self.clock_offset {
            Some(by) => crate::clock::Clock::Offset(by),
            None => crate::clock::Clock::System,
        }
    }

    /// An absolute URL on the portal for `path` (which starts with '/').
    pub fn url(&self, path: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}
