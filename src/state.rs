//! The state every handler and the portal backend share: the database, the
//! gateway's parts, the configuration, the clock and the Leptos options.

use crate::clock::Clock;
use crate::config::Config;
use crate::billing::processor::sandbox::Sandbox;
use crate::billing::processor::Processor;
use crate::gateway::Gateway;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub gateway: Gateway,
    /// Billing's narrow handle (the processor below, links, policy, clock).
    pub billing: crate::billing::Billing,
    /// The payment processor billing charges through: Stripe when
    /// configured, else the sandbox.
    pub processor: Arc<dyn Processor>,
    /// The sandbox processor (the default), whose webhook deliveries a job
    /// retries; idle when another processor takes the payments.
    pub sandbox: Arc<Sandbox>,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub leptos_options: LeptosOptions,
    /// The docs, rendered once and again when a file changes.
    pub docs: Arc<crate::docs::Docs>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    pub fn new(db: PgPool, gateway: Gateway, config: Config, clock: Clock) -> Self {
        // The build names the script and wasm by their digests and lists
        // them in `hash.txt` (src/http/assets.rs caches them for a year).
        let hash_file = crate::http::assets::hash_file(&config.site_root);
        let leptos_options = LeptosOptions::builder()
            .output_name("tollgate")
            .hash_files(hash_file.is_some())
            .hash_file(std::sync::Arc::<str>::from(hash_file.unwrap_or_else(|| "hash.txt".into())))
            .site_root(config.site_root.clone())
            .site_addr(config.listen_addr)
            .env(match std::env::var("LEPTOS_ENV").as_deref() {
                Ok("DEV") => leptos::config::Env::DEV,
                _ => leptos::config::Env::PROD,
            })
            .build();
        let sandbox = Sandbox::new(
            db.clone(),
            config.webhook_secret.clone(),
            config.sandbox_webhook_url.clone(),
        );
        // Stripe when it is configured, else the sandbox.
        let processor: Arc<dyn Processor> = match &config.stripe {
            Some(stripe) => crate::billing::processor::stripe::Stripe::new(db.clone(), stripe.clone()),
            None => sandbox.clone(),
        };
        let billing = crate::billing::Billing {
            db: db.clone(),
            processor: processor.clone(),
            links: crate::billing::Links::new(&config.public_url),
            policy: crate::billing::Policy { grace_days: config.grace_days },
            clock: clock.clone(),
        };
        Self {
            billing,
            docs: Arc::new(crate::docs::Docs::new(config.content_dir.clone())),
            processor,
            sandbox,
            db,
            gateway,
            config: Arc::new(config),
            clock,
            leptos_options,
        }
    }

    /// Where the sandbox processor delivers its webhooks.
    pub fn sandbox_target(&self) -> Option<url::Url> {
        self.sandbox.target()
    }

    /// A state with its gateway started on `db` (inside a Tokio runtime).
    pub fn start(db: PgPool, config: Config, clock: Clock) -> Self {
        let gateway = Gateway::start(&db, &clock);
        Self::new(db, gateway, config, clock)
    }
}
